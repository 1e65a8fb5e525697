//! "No event lost between the simulator and the hub", by counting: the events
//! the players' actions must produce (the [`Ledger`](crate::players::Ledger),
//! in order) against the events the hubs accepted (the Redis stream, in `seq`
//! order).
//!
//! Both are sequences of the same events in the same order when nothing is lost
//! or duplicated, so they are walked together: each stream entry is matched to
//! the next expected event with the same key within [`LOOKAHEAD`] events; the
//! expected events it skipped are **lost** (unless collapsible, see
//! [`Expected::collapsible`]), and an entry that matches nothing is an
//! **unexpected** event (a duplicate, or an event no action caused) — unless it
//! equals a collapsible event, which a re-identified worker's diff may emit in
//! another order (**tolerated**).

use std::collections::BTreeSet;

use crate::model::EventKey;
use crate::players::Expected;

/// How far ahead in the expectation a stream entry may match.
const LOOKAHEAD: usize = 256;

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
    /// Stream entries equal to a collapsible event, out of order.
    pub tolerated: usize,
    /// Expected events after the last match (not yet arrived).
    pub pending: usize,
}

/// Walks `expected` and `stream` together (see the module docs).
pub fn reconcile(expected: &[Expected], stream: &[(u64, EventKey)]) -> Reconciled {
    let collapsible: BTreeSet<&EventKey> = expected
        .iter()
        .filter(|e| e.collapsible)
        .map(|e| &e.key)
        .collect();
    let mut out = Reconciled::default();
    let mut next = 0;
    for (seq, key) in stream {
        let window = next..(next + LOOKAHEAD).min(expected.len());
        match window.clone().find(|&i| expected[i].key == *key) {
            Some(found) => {
                for (i, skipped) in expected.iter().enumerate().take(found).skip(next) {
                    if skipped.collapsible {
                        out.collapsed += 1;
                    } else {
                        out.lost.push((i, skipped.key.clone()));
                    }
                }
                out.matched += 1;
                next = found + 1;
            }
            None if collapsible.contains(key) => out.tolerated += 1,
            None => out.unexpected.push((*seq, key.clone())),
        }
    }
    out.pending = expected.len() - next;
    out
}

/// Checks the walk on small cases before the soak relies on it (a bench has no
/// test harness): a loss, a duplicate, a collapse and a pending event are counted.
pub fn self_test() {
    let key = |user: u64| EventKey::voice("voice.joined", 1, user, 0);
    let expected = |users: &[u64], collapsible: bool| -> Vec<Expected> {
        users
            .iter()
            .map(|&u| Expected {
                key: key(u),
                collapsible,
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
    assert_eq!((r.lost.len(), r.unexpected.len(), r.tolerated), (0, 0, 1));
    let r = reconcile(&expected(&[1, 2], false), &stream(&[1]));
    assert_eq!(r.pending, 1);
}
