//! "No event lost between the simulator and the hub", by counting: the events
//! the players' actions must produce (the [`Ledger`](crate::players::Ledger),
//! in order) against the events the hubs accepted (the Redis stream, in `seq`
//! order).
//!
//! Both are sequences of the same events in the same order when nothing is lost
//! or duplicated, so they are walked together. When they disagree, the walk
//! looks (within [`LOOKAHEAD`] expected events) for where the stream goes on:
//! [`ANCHOR`] consecutive equal events. The expected events jumped over are
//! **lost**; a stream entry with no such continuation is **unexpected** (a
//! duplicate, or an event no action caused). A run of collapsible expected events
//! (see [`Expected::collapsible`]) may appear in any order and in part: the ones
//! that do not appear are **collapsed**, a collapsible event outside its run is
//! **tolerated**.
//!
//! Within a run the worker's diff of the new `GUILD_CREATE` may also emit the
//! **net** change of a user between two states the run passes through, which need
//! not be one of the run's events: a player muted in a room who leaves and comes
//! back unmuted is `voice.left` + `voice.joined` one by one, but `voice.state`
//! with no flag as a diff. Such an entry is **merged**, not unexpected.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{EventKey, State, expected_events};
use crate::players::{Change, Expected};

/// How far ahead in the expectation the walk looks for where the stream goes on.
const LOOKAHEAD: usize = 512;
/// How many consecutive equal events mark where the stream goes on.
const ANCHOR: usize = 4;

/// The outcome of walking the expectation and the stream together.
#[derive(Debug, Default)]
pub struct Reconciled {
    /// Expected events found in the stream, in order.
    pub matched: usize,
    /// Expected (not collapsible) events missing from the stream: index, key.
    pub lost: Vec<(usize, EventKey)>,
    /// Collapsible expected events that did not arrive one by one.
    pub collapsed: usize,
    /// Stream entries no expected event explains: `seq`, key.
    pub unexpected: Vec<(u64, EventKey)>,
    /// Stream entries a collapsible run's net change explains (see the module docs).
    pub merged: usize,
    /// Stream entries equal to a collapsible event, or to a run's net change, out
    /// of order.
    pub tolerated: usize,
    /// Expected events after the last match (not yet arrived).
    pub pending: usize,
    /// Index of the first expected event not yet walked.
    pub next: usize,
}

/// Whether `stream[i..]` and `expected[q..]` agree on their next [`ANCHOR`]
/// events (fewer at the end of either).
fn anchored(expected: &[Expected], q: usize, stream: &[(u64, EventKey)], i: usize) -> bool {
    let n = ANCHOR.min(expected.len() - q).min(stream.len() - i);
    n > 0 && (0..n).all(|k| expected[q + k].key == stream[i + k].1)
}

/// The events a diff may emit for `run`: for each user, the events from any
/// state the run passes through (the one before it included) to any later one.
fn net_changes(run: &[Expected]) -> BTreeSet<EventKey> {
    let mut states: BTreeMap<u64, Vec<State>> = BTreeMap::new();
    for change in run.iter().map(|e| e.change) {
        let passed = states
            .entry(change.user)
            .or_insert_with(|| vec![change.before]);
        if passed.last() != Some(&change.after) {
            passed.push(change.after);
        }
    }
    let mut out = BTreeSet::new();
    for (user, passed) in states {
        for (i, &from) in passed.iter().enumerate() {
            for &to in &passed[i + 1..] {
                out.extend(expected_events(user, from, to));
            }
        }
    }
    out
}

/// The end of the collapsible run that starts at `start`.
fn run_end_from(expected: &[Expected], start: usize) -> usize {
    expected[start..]
        .iter()
        .position(|e| !e.collapsible)
        .map_or(expected.len(), |n| start + n)
}

/// Walks `expected` and `stream` together (see the module docs).
pub fn reconcile(expected: &[Expected], stream: &[(u64, EventKey)]) -> Reconciled {
    // What a collapsible event or a run's net change may leave anywhere.
    let mut collapsible: BTreeSet<EventKey> = BTreeSet::new();
    let mut start = 0;
    while start < expected.len() {
        if expected[start].collapsible {
            let end = run_end_from(expected, start);
            collapsible.extend(expected[start..end].iter().map(|e| e.key.clone()));
            collapsible.extend(net_changes(&expected[start..end]));
            start = end;
        } else {
            start += 1;
        }
    }
    let mut out = Reconciled::default();
    let (mut next, mut i) = (0, 0);
    // The collapsible run being walked: its end, the events not seen yet and
    // its net changes.
    let (mut run_end, mut run): (usize, Vec<&EventKey>) = (0, Vec::new());
    let mut merges = BTreeSet::new();
    while i < stream.len() {
        let (seq, key) = &stream[i];
        if next < run_end {
            // Inside a run: its events in any order, until the stream continues
            // with what follows the run.
            if run.is_empty() || anchored(expected, run_end, stream, i) {
                out.collapsed += run.len();
                run.clear();
                next = run_end;
            } else if let Some(at) = run.iter().position(|k| *k == key) {
                run.swap_remove(at);
                out.matched += 1;
                i += 1;
            } else if merges.contains(key) {
                out.merged += 1;
                i += 1;
            } else {
                out.unexpected.push((*seq, key.clone()));
                i += 1;
            }
            continue;
        }
        if next < expected.len() && expected[next].collapsible {
            run_end = run_end_from(expected, next);
            run = expected[next..run_end].iter().map(|e| &e.key).collect();
            merges = net_changes(&expected[next..run_end]);
            continue;
        }
        if next < expected.len() && expected[next].key == *key {
            out.matched += 1;
            next += 1;
            i += 1;
            continue;
        }
        // Out of step: find where the stream continues in the expectation.
        let ahead = next + 1..(next + LOOKAHEAD).min(expected.len());
        if let Some(resume) = ahead
            .into_iter()
            .find(|&q| anchored(expected, q, stream, i))
        {
            for (index, skipped) in expected.iter().enumerate().take(resume).skip(next) {
                if skipped.collapsible {
                    out.collapsed += 1;
                } else {
                    out.lost.push((index, skipped.key.clone()));
                }
            }
            next = resume;
        } else {
            if collapsible.contains(key) {
                out.tolerated += 1;
            } else {
                out.unexpected.push((*seq, key.clone()));
            }
            i += 1;
        }
    }
    if next < run_end {
        out.collapsed += run.len();
        next = run_end;
    }
    out.next = next;
    out.pending = expected.len() - next;
    out
}

/// Checks the walk on small cases before the soak relies on it (a bench has no
/// test harness): a loss, a duplicate, a collapse, a merge and a pending event
/// are counted.
pub fn self_test() {
    let key = |user: u64| EventKey::voice("voice.joined", 1, user, 0);
    let joins = |user: u64| Change {
        user,
        before: None,
        after: Some((1, 0)),
    };
    let expected = |users: &[u64], collapsible: bool| -> Vec<Expected> {
        users
            .iter()
            .map(|&u| Expected {
                key: key(u),
                collapsible,
                change: joins(u),
                at: std::time::Instant::now(),
            })
            .collect()
    };
    let stream = |users: &[u64]| -> Vec<(u64, EventKey)> {
        users.iter().zip(1..).map(|(&u, s)| (s, key(u))).collect()
    };
    let r = reconcile(&expected(&[1, 2, 3, 4], false), &stream(&[1, 3, 3, 4]));
    assert_eq!((r.matched, r.lost.len(), r.unexpected.len()), (3, 1, 1));
    let mut e = expected(&[1], false);
    e.extend(expected(&[2, 3], true));
    e.extend(expected(&[4], false));
    let r = reconcile(&e, &stream(&[1, 3, 2, 4]));
    assert_eq!((r.lost.len(), r.unexpected.len(), r.collapsed), (0, 0, 0));
    let r = reconcile(&e, &stream(&[1, 3, 4]));
    assert_eq!((r.lost.len(), r.unexpected.len(), r.collapsed), (0, 0, 1));
    let r = reconcile(&expected(&[1, 2], false), &stream(&[1]));
    assert_eq!(r.pending, 1);
    // Muted user 5 leaves and comes back unmuted while the session is replaced:
    // the diff's `voice.state` with no flag is that run's net change.
    let mut e = expected(&[1], false);
    let (muted, unmuted) = (Some((1, 1)), Some((1, 0)));
    for (key, before, after) in [
        (EventKey::voice("voice.left", 1, 5, 0), muted, None),
        (key(5), None, unmuted),
    ] {
        let change = Change {
            user: 5,
            before,
            after,
        };
        e.push(Expected {
            key,
            collapsible: true,
            change,
            at: std::time::Instant::now(),
        });
    }
    e.extend(expected(&[4], false));
    let diff = EventKey::voice("voice.state", 1, 5, 0);
    let mut merged = stream(&[1, 4]);
    merged.insert(1, (9, diff));
    let r = reconcile(&e, &merged);
    assert_eq!((r.unexpected.len(), r.merged, r.collapsed), (0, 1, 2));
    // The same entry with no run to explain it is unexpected.
    let r = reconcile(&expected(&[1, 4], false), &merged);
    assert_eq!((r.unexpected.len(), r.merged), (1, 0));
    // One loss among many repeated keys does not throw the walk out of step.
    let users: Vec<u64> = (0..200).map(|i| i % 3).collect();
    let mut delivered = users.clone();
    delivered.remove(50);
    let r = reconcile(&expected(&users, false), &stream(&delivered));
    assert_eq!((r.lost.len(), r.unexpected.len(), r.pending), (1, 0, 0));
}
