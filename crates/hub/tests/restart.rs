//! A hub (without Redis) restarted over the same `STATE_DIR` (docs/spec.md §4, §6): its
//! new stream goes on above every `seq` the old process handed out, a browser
//! that resumes with an old `lastSeq` gets `resumed:false` (never a silent hole),
//! and a room announced before the restart is not announced again when the
//! gateway's webhook for it arrives afterwards.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use jsonwebtoken::Algorithm;
use serde_json::json;

/// A fresh state dir, removed when dropped.
struct StateDir(PathBuf);

impl StateDir {
    fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("coven-hub-restart-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    async fn hub(&self) -> TestHub {
        let dir = self.0.clone();
        TestHub::start_with(move |s| s.state_dir = Some(dir))
            .await
            .0
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn head_seq(health: &serde_json::Value) -> u64 {
    health["replay"]["headSeq"].as_u64().unwrap()
}

#[tokio::test]
async fn after_a_restart_seq_goes_on_above_and_an_old_last_seq_is_not_resumed() {
    let state = StateDir::new();
    let mut before = state.hub().await;
    let (mut away, _) = before.authed(None).await;
    for user in 1..=3 {
        before.post_event(&joined(user), &format!("a{user}")).await;
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next_event(&mut away).await.seq);
    }
    let last_seq = seen[2];
    drop(away); // the browser goes away; two more events it misses
    for user in 4..=5 {
        before.post_event(&joined(user), &format!("a{user}")).await;
    }
    let old_head = head_seq(&before.health().await);
    assert_eq!(old_head, last_seq + 2);
    before.stop().await;
    drop(before);
    tokio::time::sleep(Duration::from_millis(2)).await;

    let after = state.hub().await;
    let (mut watching, _) = after.authed(None).await;
    for user in 6..=10 {
        after.post_event(&joined(user), &format!("b{user}")).await;
    }
    let mut new_seqs = Vec::new();
    for _ in 0..5 {
        new_seqs.push(next_event(&mut watching).await.seq);
    }
    assert!(new_seqs[0] > old_head, "{new_seqs:?} after {old_head}");
    assert!(
        new_seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "{new_seqs:?}"
    );

    // The browser comes back with the lastSeq of the old stream.
    let (mut back, ack) = after.authed(Some(last_seq)).await;
    assert_eq!(ack["resumed"], false, "{ack}");
    after.post_event(&joined(11), "b11").await;
    let event = next_event(&mut back).await;
    assert_eq!(
        (event.seq, event.event),
        (new_seqs[4] + 1, joined(11)),
        "live only: nothing of the new stream passed off as the missed events"
    );
    // Also the old head itself, and a lastSeq ahead of the new stream.
    for last in [old_head, new_seqs[4] + 100] {
        let (_ws, ack) = after.authed(Some(last)).await;
        assert_eq!(ack["resumed"], false, "{last}: {ack}");
    }
    // A lastSeq of the new stream still resumes.
    let (mut ws, ack) = after.authed(Some(new_seqs[3])).await;
    assert_eq!(ack["resumed"], true);
    assert_eq!(next_event(&mut ws).await.seq, new_seqs[4]);
}

#[tokio::test]
async fn a_room_announced_before_a_restart_is_not_announced_again() {
    let state = StateDir::new();
    let mut before = state.hub().await;
    let response = before
        .http
        .post(before.url("/api/create-room"))
        .bearer_auth(token(Algorithm::RS256, "rsa-1", &claims()))
        .json(&json!({"name": "Table"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    let channel: u64 = body["channelId"].as_str().unwrap().parse().unwrap();
    before.stop().await;
    drop(before);
    assert!(state.0.join(coven_hub::ONCE_KEYS_FILE_NAME).exists());

    let after = state.hub().await;
    let (mut ws, _) = after.authed(None).await;
    let base = head_seq(&after.health().await);
    // The gateway's webhook for the channel, delivered (retried) after the restart.
    after
        .post_event(&room_created(channel, "Table"), "gw-1")
        .await;
    after.post_event(&joined(5), "gw-2").await;
    let next = next_event(&mut ws).await;
    assert_eq!(
        (next.seq, next.event),
        (base + 1, joined(5)),
        "exactly one room.created per channel"
    );
}
