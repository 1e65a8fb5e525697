//! The durable outbox on its own: order, stable ids, persistence across reopen,
//! dead letters and the configured bounds (of the outbox and of the dead letters).

use coven_contract::{Event, RoomDeleted, Snowflake};
use coven_worker::VoiceView;
use coven_worker::{LocalStore, StoredSession};

fn event(channel: u64) -> Event {
    Event::RoomDeleted(RoomDeleted {
        channel_id: Snowflake::new(channel).unwrap(),
        guild_id: Snowflake::new(1).unwrap(),
    })
}

fn session(sequence: u64) -> StoredSession {
    StoredSession {
        id: "abc".into(),
        sequence,
        resume_url: Some("ws://127.0.0.1:1".into()),
        bot_user_id: Snowflake::new(42),
    }
}

#[test]
fn events_come_out_in_order_with_stable_ids_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.redb");
    let (first_id, second_id);
    {
        let outbox = LocalStore::open(&path, 100).unwrap();
        outbox
            .commit(&[event(10), event(11)], None, Some(&session(7)))
            .unwrap();
        outbox
            .commit(&[event(12)], Some(&VoiceView::default()), Some(&session(9)))
            .unwrap();
        assert_eq!(outbox.gauges().depth(), 3);
        let head = outbox.peek().unwrap().unwrap();
        assert_eq!(head.body, event(10).to_webhook_body());
        first_id = head.event_id.clone();
        outbox.ack(head.id).unwrap();
        second_id = outbox.peek().unwrap().unwrap().event_id;
    }
    let outbox = LocalStore::open(&path, 100).unwrap();
    let (stored, view) = outbox.load().unwrap();
    assert_eq!(stored, Some(session(9)));
    assert_eq!(view, Some(VoiceView::default()));
    let head = outbox.peek().unwrap().unwrap();
    assert_eq!(head.event_id, second_id, "ids survive a reopen");
    assert_ne!(head.event_id, first_id);
    assert_eq!(outbox.gauges().depth(), 2);
    outbox.ack(head.id).unwrap();
    assert_eq!(
        outbox.peek().unwrap().unwrap().body,
        event(12).to_webhook_body()
    );
    outbox.commit(&[event(13)], None, None).unwrap();
    let ids: Vec<u64> = std::iter::from_fn(|| {
        let next = outbox.peek().unwrap()?;
        outbox.ack(next.id).unwrap();
        Some(next.id)
    })
    .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids[0] < ids[1], "ids keep increasing after acks: {ids:?}");
    assert_eq!(outbox.gauges().depth(), 0);
}

#[test]
fn a_new_state_file_never_reuses_event_ids() {
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    let a = LocalStore::open(&one.path().join("w.redb"), 10).unwrap();
    let b = LocalStore::open(&two.path().join("w.redb"), 10).unwrap();
    a.commit(&[event(1)], None, None).unwrap();
    b.commit(&[event(1)], None, None).unwrap();
    // Same position, different files: the hub must not take one for the other.
    assert_ne!(
        a.peek().unwrap().unwrap().event_id,
        b.peek().unwrap().unwrap().event_id
    );
}

#[test]
fn past_the_bound_events_go_to_dead_letters_not_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = LocalStore::open(&dir.path().join("w.redb"), 5).unwrap();
    assert!(!outbox.gauges().near_full());
    let overflowed = outbox
        .commit(&(1..=7).map(event).collect::<Vec<_>>(), None, None)
        .unwrap();
    assert_eq!(overflowed, 2);
    assert_eq!(outbox.gauges().depth(), 5);
    assert!(outbox.gauges().near_full());
    let letters = outbox.dead_letters().unwrap();
    assert_eq!(letters.len(), 2);
    assert!(letters.iter().all(|l| l.reason == "outbox full"));
    assert!(letters[1].body.contains("\"7\""));
    assert_eq!(outbox.gauges().dead_letter_count(), 2);
}

#[test]
fn burying_moves_an_event_out_of_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.redb");
    let outbox = LocalStore::open(&path, 10).unwrap();
    outbox.commit(&[event(1), event(2)], None, None).unwrap();
    let head = outbox.peek().unwrap().unwrap();
    outbox.bury(&head, "hub answered 400 Bad Request").unwrap();
    assert_eq!(
        outbox.peek().unwrap().unwrap().body,
        event(2).to_webhook_body()
    );
    drop(outbox);
    let outbox = LocalStore::open(&path, 10).unwrap();
    assert_eq!(
        outbox.gauges().dead_letter_count(),
        1,
        "dead letters are counted after a reopen"
    );
    assert_eq!(outbox.gauges().depth(), 1);
    assert_eq!(outbox.dead_letters().unwrap()[0].event_id, head.event_id);
}

/// `coven_worker_dead_letters_dropped_total` as `/metrics` renders it (0 before
/// the first drop).
fn dropped_total() -> u64 {
    coven_worker::prometheus()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix("coven_worker_dead_letters_dropped_total "))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[test]
fn the_dead_letters_keep_the_newest_within_their_bound() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.redb");
    let before = dropped_total();
    let outbox = LocalStore::open(&path, 2)
        .unwrap()
        .with_dead_letter_capacity(3);
    // 2 queued, 5 overflow into dead letters bounded at 3: the 2 oldest go.
    let overflowed = outbox
        .commit(&(1..=7).map(event).collect::<Vec<_>>(), None, None)
        .unwrap();
    assert_eq!(overflowed, 5);
    let bodies = |outbox: &LocalStore| -> Vec<String> {
        outbox
            .dead_letters()
            .unwrap()
            .into_iter()
            .map(|l| l.body)
            .collect()
    };
    let kept = bodies(&outbox);
    assert_eq!(kept.len(), 3);
    for (body, channel) in kept.iter().zip(5..=7) {
        assert!(body.contains(&format!("\"{channel}\"")), "{body}");
    }
    assert_eq!(outbox.gauges().dead_letter_count(), 3);
    assert_eq!(dropped_total() - before, 2);

    // A burial and a raw payload each push the oldest out too.
    let head = outbox.peek().unwrap().unwrap();
    outbox.bury(&head, "hub answered 400 Bad Request").unwrap();
    outbox
        .bury_raw(r#"{"t":"VOICE_STATE_UPDATE"}"#, "unreadable: missing field")
        .unwrap();
    let letters = outbox.dead_letters().unwrap();
    assert_eq!(letters.len(), 3);
    assert!(letters[0].body.contains("\"7\""));
    assert_eq!(letters[1].event_id, head.event_id);
    assert_eq!(letters[2].reason, "unreadable: missing field");
    assert_eq!(letters[2].body, r#"{"t":"VOICE_STATE_UPDATE"}"#);
    assert_ne!(letters[2].event_id, letters[1].event_id);
    assert_eq!(dropped_total() - before, 4);
    assert_eq!(outbox.gauges().depth(), 1);

    // The bound holds after a reopen; the queue was untouched.
    drop(outbox);
    let outbox = LocalStore::open(&path, 2)
        .unwrap()
        .with_dead_letter_capacity(3);
    assert_eq!(outbox.gauges().dead_letter_count(), 3);
    assert_eq!(
        outbox.peek().unwrap().unwrap().body,
        event(2).to_webhook_body()
    );
}
