//! docs/spec.md §6 items 4 and 5, the socket's edges, from the outside: a frame over
//! 16 KiB or a message over 4 KiB gets `INVALID_MESSAGE` then close 1009; a silent
//! browser is dropped on its own timer, not on the next ping; a browser that stops
//! reading is dropped once the hub's writes stall for the idle timeout; and a socket
//! is closed 4401 once its token's `exp` (plus the leeway) passes.
//!
//! Timings are checked one way only: never earlier than the deadline (which the hub
//! guarantees), and within a generous bound that the old behaviour would miss.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::Algorithm;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// Expects `INVALID_MESSAGE`, then close 1009.
async fn expect_too_big(ws: &mut Ws) {
    let (code, texts) = close_code(ws).await;
    assert_eq!(code, 1009, "{texts:?}");
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert_eq!(texts[0]["type"], "error");
    assert_eq!(texts[0]["v"], 1);
    assert_eq!(texts[0]["error"]["code"], "INVALID_MESSAGE");
}

/// A text message sent as `parts` frames of `size` bytes each.
async fn send_fragmented(ws: &mut Ws, parts: usize, size: usize) {
    for part in 0..parts {
        let opcode = if part == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let frame = Frame::message("a".repeat(size), opcode, part + 1 == parts);
        ws.send(Message::Frame(frame)).await.unwrap();
    }
}

#[tokio::test]
async fn oversized_frames_and_messages_close_1009() {
    let (hub, _) = TestHub::start().await;
    let over_4k = format!(r#"{{"type":"auth","token":"{}"}}"#, "a".repeat(5000));
    let too_big = [
        // A message over 4 KiB in one frame.
        Message::text(over_4k),
        // A frame over 16 KiB: refused from its header.
        Message::text("a".repeat(20 * 1024)),
        Message::binary(vec![0; 5000]),
    ];
    for message in too_big {
        let mut ws = hub.connect().await;
        ws.send(message.clone()).await.unwrap();
        expect_too_big(&mut ws).await;

        let (mut ws, _) = hub.authed(None).await;
        ws.send(message).await.unwrap();
        expect_too_big(&mut ws).await;
    }
    // Fragments under 16 KiB each: 6 KiB in all is over 4 KiB; 21 KiB in all is
    // refused while being reassembled.
    for (parts, size) in [(2, 3 * 1024), (3, 7 * 1024)] {
        let mut ws = hub.connect().await;
        send_fragmented(&mut ws, parts, size).await;
        expect_too_big(&mut ws).await;

        let (mut ws, _) = hub.authed(None).await;
        send_fragmented(&mut ws, parts, size).await;
        expect_too_big(&mut ws).await;
    }
    // A message of exactly 4 KiB is still read (and, not being JSON, refused 1008).
    let (mut ws, _) = hub.authed(None).await;
    ws.send(Message::text("a".repeat(4 * 1024))).await.unwrap();
    assert_eq!(close_code(&mut ws).await.0, 1008);
}

#[tokio::test]
async fn a_silent_browser_is_dropped_on_its_own_timer() {
    // The next ping is 30 s away: the drop must not wait for it.
    let (hub, _) = TestHub::start_with(|s| {
        s.ping_interval = Duration::from_secs(30);
        s.idle_timeout = Duration::from_secs(2);
    })
    .await;
    let mut ws = hub.connect().await;
    let start = Instant::now();
    send_auth(&mut ws, &token(Algorithm::RS256, "rsa-1", &claims()), None).await;
    assert_eq!(next_json(&mut ws).await["event"], "auth.ok");
    // The browser sends nothing more; the hub drops the connection (no close frame).
    let end = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("dropped long before the first ping at 30 s");
    assert!(!matches!(end, Some(Ok(_))), "{end:?}");
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_secs(2),
        "dropped after {elapsed:?}, before the idle timeout"
    );
}

#[tokio::test]
async fn a_browser_that_stops_reading_is_dropped_when_writes_stall() {
    let (hub, _) = TestHub::start_with(|s| {
        s.ping_interval = Duration::from_secs(30);
        s.idle_timeout = Duration::from_secs(2);
        // Far above what is published here: the 1013 overflow is not what ends it.
        s.max_unsent_bytes = 512 * 1024 * 1024;
    })
    .await;
    // A tiny receive buffer, never read.
    let ws = hub.authed_with_receive_buffer(4096).await;
    // Not silent: it keeps sending pings, it just never reads.
    let (mut sink, mut stream) = ws.split();
    let pinger = tokio::spawn(async move {
        while sink.send(Message::Ping(Vec::new().into())).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });

    // Publish (~2.7 MB a round) until every buffer between the hub and the browser
    // is full and the hub gives up on the stalled write.
    let broker = hub.hub.broker();
    let name = "x".repeat(100);
    let mut published = 0;
    while hub.health().await["replay"]["subscribers"] != 0 {
        assert!(published < 400_000, "the stalled socket was never dropped");
        for _ in 0..10_000 {
            published += 1;
            broker
                .publish(room_created(1_000_000 + published, &name), vec![])
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    pinger.abort();
    // Dropped, not closed 1013: some events, then the connection just ends.
    loop {
        match tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("the end in time")
        {
            Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(frame))) => panic!("closed with {frame:?}, not dropped"),
            Some(Ok(other)) => panic!("unexpected {other:?}"),
            Some(Err(_)) | None => break,
        }
    }
}

#[tokio::test]
async fn a_socket_is_closed_4401_when_its_token_expires() {
    let (hub, _) = TestHub::start_with(|s| s.jwt_leeway = Duration::from_secs(1)).await;
    let exp = now_secs() + 2;
    let mut claims = claims();
    claims["exp"] = json!(exp);
    let base = hub.base_seq().await;
    let mut ws = hub.connect().await;
    send_auth(&mut ws, &token(Algorithm::RS256, "rsa-1", &claims), None).await;
    assert_eq!(next_json(&mut ws).await["event"], "auth.ok");
    // Live until then.
    hub.post_event(&joined(1), "before-exp").await;
    assert_eq!(next_event(&mut ws).await.seq, base + 1);

    // The error first, then 4401, once `exp` plus the 1 s leeway has passed.
    let message = expect_unauthorized(&mut ws).await;
    assert_eq!(message, "token expired");
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    // 100 ms for the drift between the hub's monotonic clock and the wall clock.
    assert!(
        now_ms + 100 >= u128::from(exp + 1) * 1000,
        "closed at {now_ms} ms, before exp + leeway ({exp} s + 1 s)"
    );
    // The browser signs in again and resumes.
    let (_ws, ack) = hub.authed(Some(base + 1)).await;
    assert_eq!(ack["resumed"], true);
}
