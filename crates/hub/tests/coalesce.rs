//! Issue 18, docs/benchmarks.md "Hub fan-out": frames queued to a socket while
//! its browser is not reading leave in far fewer writes than frames (one vectored
//! write carries up to 64), and in exactly the order they were published.
//!
//! The browser pauses with a fixed 64 KiB receive buffer; events are published
//! until the kernel buffers between it and the hub are full and the rest queue in
//! the hub. Once the hub's writes have stopped, the counters are read; the browser
//! reads again and the queued frames must leave in at most one write per 8.
//!
//! Alone in its test binary: it compares the hub's process-wide write and frame
//! counters (`hub_ws_writes_total`, `hub_ws_frames_total`) before and after.

mod common;

use common::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

/// A counter's value in the hub's `/metrics` (0 before its first increment).
async fn counter(hub: &TestHub, name: &str) -> u64 {
    coven_testkit::metric_sum(hub.addr, name).await
}

#[tokio::test]
async fn frames_queued_behind_a_paused_reader_leave_in_few_writes_in_order() {
    // Room for everything queued here: the 1013 overflow is not what is tested.
    let (hub, _) = TestHub::start_with(|s| s.max_unsent_bytes = 64 * 1024 * 1024).await;
    let base = hub.base_seq().await;
    // The paused browser: a tiny receive buffer, not read while events queue.
    let mut ws = hub.authed_with_receive_buffer(64 * 1024).await;

    // ~280 bytes each, in rounds of 2,000, until the kernel buffers are full (the
    // hub's writes stop) and at least 2,000 frames wait in the hub.
    let broker = hub.hub.broker();
    let name = "x".repeat(100);
    let mut events = 0;
    let (frames_before, writes_before) = loop {
        assert!(events < 100_000, "the kernel buffers never filled up");
        for _ in 0..2_000 {
            events += 1;
            broker
                .publish(room_created(1_000_000 + events, &name), vec![])
                .await
                .unwrap();
        }
        let mut previous = u64::MAX;
        let frames = eventually("the hub's writes to stop", async || {
            let frames = counter(&hub, "hub_ws_frames_total").await;
            let stable = frames == previous;
            previous = frames;
            stable.then_some(frames)
        })
        .await;
        if frames + 2_000 <= events {
            break (frames, counter(&hub, "hub_ws_writes_total").await);
        }
    };
    // The browser reads again: every event, in order.
    let mut last = base;
    while last < base + events {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("in time")
        {
            Some(Ok(Message::Text(text))) => {
                let value: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert_eq!(value["seq"].as_u64().unwrap(), last + 1, "in order");
                last += 1;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("unexpected {other:?} after seq {last}"),
        }
    }
    let total = eventually("the writes to be counted", async || {
        let total = counter(&hub, "hub_ws_frames_total").await;
        (total > events).then_some(total)
    })
    .await;
    // The ack, the events and the session's own frames (pings, pongs).
    let frames = total - frames_before;
    let writes = counter(&hub, "hub_ws_writes_total").await - writes_before;
    eprintln!("{frames_before} frames before the pause; {frames} queued frames in {writes} writes");
    assert!(
        writes * 8 <= frames,
        "{frames} queued frames took {writes} writes: not coalesced"
    );
}
