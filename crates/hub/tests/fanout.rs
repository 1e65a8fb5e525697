//! docs/spec.md §6 fan-out from the outside: resume with `lastSeq` delivers exactly the
//! missed events then live ones, a gap older than the ring answers
//! `"resumed":false`, a stalled browser is closed 1013 while a reading one gets
//! everything, a silent one is dropped, and shutdown closes everyone with 1001.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn resume_delivers_exactly_the_missed_events() {
    let (hub, _) = TestHub::start().await;
    let base = hub.base_seq().await;
    let (mut ws, _) = hub.authed(None).await;
    for user in 1..=3 {
        hub.post_event(&joined(user), &format!("e{user}")).await;
    }
    for n in 1..=3 {
        assert_eq!(next_event(&mut ws).await.seq, base + n);
    }
    drop(ws);
    for user in 4..=7 {
        hub.post_event(&joined(user), &format!("e{user}")).await;
    }
    let (mut ws, ack) = hub.authed(Some(base + 3)).await;
    assert_eq!(ack["resumed"], true);
    for n in 4..=7 {
        let event = next_event(&mut ws).await;
        assert_eq!((event.seq, event.event), (base + n, joined(n)));
    }
    hub.post_event(&joined(8), "e8").await;
    assert_eq!(
        next_event(&mut ws).await.seq,
        base + 8,
        "live after replay, no duplicate"
    );

    // Up to date: resumed, nothing replayed.
    let (mut ws, ack) = hub.authed(Some(base + 8)).await;
    assert_eq!(ack["resumed"], true);
    hub.post_event(&joined(9), "e9").await;
    assert_eq!(next_event(&mut ws).await.seq, base + 9);
}

#[tokio::test]
async fn gap_older_than_the_ring_is_not_resumed() {
    let (hub, _) = TestHub::start_with(|s| s.replay_capacity = 5).await;
    let base = hub.base_seq().await;
    for user in 1..=20 {
        hub.post_event(&joined(user), &format!("e{user}")).await;
    }
    let health = hub.health().await;
    assert_eq!(health["replay"]["headSeq"], base + 20);
    assert_eq!(health["replay"]["oldestSeq"], base + 16);
    assert_eq!(health["replay"]["len"], 5);

    let (mut ws, ack) = hub.authed(Some(base + 2)).await;
    assert_eq!(ack["resumed"], false);
    hub.post_event(&joined(21), "e21").await;
    assert_eq!(
        next_event(&mut ws).await.seq,
        base + 21,
        "live only, no partial replay"
    );

    // The ring's oldest event right after lastSeq: still resumable.
    let (mut ws, ack) = hub.authed(Some(base + 16)).await;
    assert_eq!(ack["resumed"], true);
    for n in 17..=21 {
        assert_eq!(next_event(&mut ws).await.seq, base + n);
    }
    // A client ahead of the hub: not resumed.
    let (_ws, ack) = hub.authed(Some(base + 500)).await;
    assert_eq!(ack["resumed"], false);
    // A client of an earlier stream (a restarted hub): not resumed.
    let (_ws, ack) = hub.authed(Some(20)).await;
    assert_eq!(ack["resumed"], false);
}

#[tokio::test]
async fn resume_while_events_flow_has_no_gap_and_no_duplicate() {
    let (hub, _) = TestHub::start().await;
    let base = hub.base_seq().await;
    let broker = hub.hub.broker();
    for user in 1..=50 {
        broker.publish(joined(user), vec![]).await.unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let stop = stop.clone();
        let broker = broker.clone();
        tokio::spawn(async move {
            let mut user = 1000;
            while !stop.load(Ordering::Relaxed) {
                broker.publish(joined(user), vec![]).await.unwrap();
                user += 1;
                tokio::task::yield_now().await;
            }
        })
    };
    for last in [base + 10, base + 30, base + 45] {
        let (mut ws, ack) = hub.authed(Some(last)).await;
        assert_eq!(ack["resumed"], true);
        let mut expected = last + 1;
        while expected < last + 300 {
            assert_eq!(next_event(&mut ws).await.seq, expected);
            expected += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    publisher.await.unwrap();
}

#[tokio::test]
async fn a_stalled_browser_is_closed_1013_and_delays_no_one() {
    let (hub, _) = TestHub::start().await;
    let base = hub.base_seq().await;
    let (mut fast, _) = hub.authed(None).await;

    // The stalled browser: a tiny receive buffer, and it never reads.
    let mut slow = hub.authed_with_receive_buffer(4096).await;

    let fast_seen = Arc::new(AtomicU64::new(base));
    let reader = {
        let fast_seen = fast_seen.clone();
        tokio::spawn(async move {
            loop {
                let event = next_event(&mut fast).await;
                let previous = fast_seen.swap(event.seq, Ordering::SeqCst);
                assert_eq!(
                    event.seq,
                    previous + 1,
                    "the reading browser misses nothing"
                );
            }
        })
    };

    // Publish ~270-byte events until the slow socket overflows (its subscription
    // ends), well past 1 MiB of unsent data.
    let broker = hub.hub.broker();
    let name = "x".repeat(100);
    let mut published = 0_u64;
    loop {
        for _ in 0..500 {
            published += 1;
            broker
                .publish(room_created(1_000_000 + published, &name), vec![])
                .await
                .unwrap();
        }
        let subscribers = hub.health().await["replay"]["subscribers"]
            .as_u64()
            .unwrap();
        if subscribers == 1 {
            break;
        }
        assert!(published < 200_000, "the stalled socket never overflowed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A little more after the overflow: the reading browser still gets all of it.
    for _ in 0..100 {
        published += 1;
        broker
            .publish(room_created(1_000_000 + published, &name), vec![])
            .await
            .unwrap();
    }
    eventually("the reading browser to receive everything", async || {
        fast_seen.load(Ordering::SeqCst) == base + published
    })
    .await;
    assert!(!reader.is_finished(), "the reader never failed");
    reader.abort();
    eprintln!("stalled socket overflowed after {published} events");

    // The stalled browser finally reads: a prefix of events, then close 1013.
    let mut last = base;
    let code = loop {
        match tokio::time::timeout(WAIT, slow.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Text(text))) => {
                let value: serde_json::Value = serde_json::from_str(&text).unwrap();
                let seq = value["seq"].as_u64().unwrap();
                assert_eq!(seq, last + 1);
                last = seq;
            }
            Some(Ok(Message::Close(Some(frame)))) => break u16::from(frame.code),
            Some(Ok(_)) => {}
            other => panic!("unexpected {other:?} after seq {last}"),
        }
    };
    assert_eq!(code, 1013);
    assert!(last < base + published);
    let metrics = hub
        .http
        .get(hub.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("hub_ws_overloaded_closes_total"));
}

#[tokio::test]
async fn silent_browsers_are_dropped_and_pings_keep_readers_alive() {
    let (hub, _) = TestHub::start_with(|s| {
        s.ping_interval = Duration::from_millis(100);
        s.idle_timeout = Duration::from_millis(400);
    })
    .await;
    // A reading client answers pings (tungstenite does it while reading).
    let (mut alive, _) = hub.authed(None).await;
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        let mut pings = 0;
        while let Some(frame) = alive.next().await {
            match frame.unwrap() {
                Message::Ping(_) => pings += 1,
                Message::Text(text) => events_tx.send((pings, text.to_string())).unwrap(),
                other => panic!("unexpected {other:?}"),
            }
        }
        panic!("the reading socket was closed");
    });
    let base = hub.base_seq().await;
    // A silent one never reads, so never answers.
    let (_silent, _) = hub.authed(None).await;
    eventually("the silent socket to be dropped", async || {
        hub.health().await["connections"] == 1
    })
    .await;
    // The reader outlives several idle periods.
    tokio::time::sleep(Duration::from_millis(900)).await;
    hub.post_event(&joined(1), "after-idle").await;
    let (pings, text) = tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap()
        .unwrap();
    let first = format!(r#""seq":{}"#, base + 1);
    assert!(text.contains(&first), "{text}");
    assert!(pings >= 5, "pinged every 100 ms: {pings}");
    assert!(!reader.is_finished());
    reader.abort();
}

#[tokio::test]
async fn shutdown_closes_browsers_1001_and_turns_health_503() {
    let (mut hub, _) = TestHub::start().await;
    let (mut a, _) = hub.authed(None).await;
    let (mut b, _) = hub.authed(Some(0)).await;
    let status = hub
        .http
        .get(hub.url("/health"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    hub.hub.begin_shutdown();
    let status = hub
        .http
        .get(hub.url("/health"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 503);
    assert_eq!(close_code(&mut a).await.0, 1001);
    assert_eq!(close_code(&mut b).await.0, 1001);
    hub.stop().await;
    assert_eq!(hub.hub.connections(), 0);
}
