//! Compact views of delivered events and the delivery guarantee check (in order,
//! at least once) that the worker and process tests assert.

use std::collections::HashMap;

use coven_contract::Event;

/// Checks what a hub received against what was expected: after collapsing
/// redeliveries (same event id), exactly `expected`, in order; every event id
/// is first seen in increasing order (no reorder), and a redelivery only
/// repeats an id already seen.
pub fn assert_in_order_at_least_once(
    accepted: &[(String, Event)],
    expected: &[(&'static str, u64, u64)],
) {
    let mut seen = HashMap::new();
    let mut first: Vec<(String, Event)> = Vec::new();
    for (id, event) in accepted {
        if let Some(earlier) = seen.get(id) {
            assert_eq!(earlier, event, "a redelivery of {id} carried another event");
            continue;
        }
        seen.insert(id.clone(), event.clone());
        first.push((id.clone(), event.clone()));
    }
    let ids: Vec<&String> = first.iter().map(|(id, _)| id).collect();
    assert!(
        ids.windows(2).all(|pair| pair[0] < pair[1]),
        "event ids out of order: {ids:?}"
    );
    let events: Vec<Event> = first.into_iter().map(|(_, event)| event).collect();
    assert_eq!(summary(&events), expected, "every event, once, in order");
}

/// Names, rooms and users of events (0 for room events), for compact assertions.
pub fn summary(events: &[Event]) -> Vec<(&'static str, u64, u64)> {
    events
        .iter()
        .map(|event| {
            let user = match event {
                Event::VoiceJoined(p) => p.user_id.get(),
                Event::VoiceLeft(p) => p.user_id.get(),
                Event::VoiceState(p) => p.user_id.get(),
                Event::VoiceSpeaking(p) => p.user_id.get(),
                Event::RoomCreated(_) | Event::RoomDeleted(_) => 0,
            };
            (event.name(), event.channel_id().get(), user)
        })
        .collect()
}
