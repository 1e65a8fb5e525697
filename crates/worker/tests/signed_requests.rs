//! The hub's requests to the worker from the outside (docs/spec.md §8): a captured
//! `/commands/join` sent again, re-aimed at `/commands/leave` or sent with another
//! method is refused; a request signed only like the webhook (docs/spec.md §5) is
//! refused; a freshly signed request is accepted.

mod support;

use axum::http::HeaderMap;
use coven_contract::Secret;
use coven_contract::internal::{BotCommand, VOICE_VIEW_PATH, sign_request};
use coven_contract::signature::Signer;
use coven_testkit::{FakeHub, SECRET, WAIT, now_secs, sign_webhook, signed, simulator};
use reqwest::Method;
use serde_json::{Value, json};
use support::RunningWorker;

/// Sends `method {worker}{path}` with exactly `headers` and `body`; returns the
/// status and the JSON answer (`null` when there is none).
async fn send(
    worker: &RunningWorker,
    method: Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> (u16, Value) {
    let response = reqwest::Client::new()
        .request(method, format!("http://{}{path}", worker.health))
        .headers(headers.clone())
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn hub_signs(method: &Method, path: &str, body: &[u8]) -> HeaderMap {
    sign_request(&Signer::new(Secret::new(SECRET)), method, path, body)
}

/// Joins `body`'s room with fresh signatures until the voice client is ready;
/// returns the headers of the join that was accepted.
async fn join(worker: &RunningWorker, body: &[u8]) -> HeaderMap {
    let join = BotCommand::Join.path();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let headers = hub_signs(&Method::POST, join, body);
        let (status, answer) = send(worker, Method::POST, join, &headers, body).await;
        if status == 200 {
            assert_eq!(answer, json!({"ok": true}));
            return headers;
        }
        assert_eq!(status, 503, "join answered {status}: {answer}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bot never joined"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_captured_command_is_refused_replayed_re_aimed_or_with_another_method() {
    // The bot's voice connection must trust the simulator's voice server.
    if !support::trusts_the_voice_ca_or_reruns(
        "a_captured_command_is_refused_replayed_re_aimed_or_with_another_method",
    ) {
        return;
    }
    let sim = simulator().await;
    let hub = FakeHub::start(FakeHub::accepting()).await;
    let dir = tempfile::tempdir().unwrap();
    let worker = RunningWorker::start(&sim, &hub, dir.path()).await;
    worker.wait_for_health(200).await;
    let room = sim.handle().seed().voice_channel_ids[0];
    let body = json!({"channelId": room.to_string()}).to_string();
    let body = body.as_bytes();
    let (join_path, leave_path) = (BotCommand::Join.path(), BotCommand::Leave.path());

    let captured = join(&worker, body).await;
    let forbidden = json!({"message": "forbidden", "code": "FORBIDDEN"});

    // The same request again, inside the window: refused.
    let replayed = send(&worker, Method::POST, join_path, &captured, body).await;
    assert_eq!(replayed, (403, forbidden.clone()), "replayed join");
    // The same headers and body aimed at leave (the bot is in the room, so a
    // genuine leave would succeed): refused.
    let re_aimed = send(&worker, Method::POST, leave_path, &captured, body).await;
    assert_eq!(re_aimed, (403, forbidden.clone()), "re-aimed at leave");
    // Another method on the command's path is not a command at all.
    let (status, _) = send(&worker, Method::PUT, join_path, &captured, body).await;
    assert_eq!(status, 405, "PUT /commands/join");

    // A leave signed only like the webhook (timestamp.body, no method, path or id)
    // is refused, with a fresh timestamp and the right secret.
    let webhook_signed = sign_webhook(
        reqwest::Client::new().post(format!("http://{}{leave_path}", worker.health)),
        SECRET,
        now_secs(),
        body,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(webhook_signed.status(), 403, "a webhook signature");

    // A freshly signed leave is accepted; its own replay is not.
    let leave = hub_signs(&Method::POST, leave_path, body);
    let left = send(&worker, Method::POST, leave_path, &leave, body).await;
    assert_eq!(left, (200, json!({"ok": true})), "fresh leave");
    let again = send(&worker, Method::POST, leave_path, &leave, body).await;
    assert_eq!(again, (403, forbidden), "replayed leave");
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn a_captured_voice_view_request_is_refused_replayed_or_with_another_method() {
    let sim = simulator().await;
    let hub = FakeHub::start(FakeHub::accepting()).await;
    let dir = tempfile::tempdir().unwrap();
    let worker = RunningWorker::start(&sim, &hub, dir.path()).await;
    worker.wait_for_health(200).await;

    // Signed for GET, sent as HEAD (which the route also serves): refused, and
    // the refusal does not use the id up.
    let captured = hub_signs(&Method::GET, VOICE_VIEW_PATH, b"");
    let (status, _) = send(&worker, Method::HEAD, VOICE_VIEW_PATH, &captured, b"").await;
    assert_eq!(status, 403, "HEAD with a GET's signature");
    let (status, view) = send(&worker, Method::GET, VOICE_VIEW_PATH, &captured, b"").await;
    assert_eq!(status, 200, "{view}");
    assert!(view["rooms"].is_object(), "{view}");

    let (status, answer) = send(&worker, Method::GET, VOICE_VIEW_PATH, &captured, b"").await;
    assert_eq!(
        (status, answer),
        (403, json!({"message": "forbidden"})),
        "replayed"
    );
    let fresh = signed(Method::GET, worker.health, VOICE_VIEW_PATH, b"")
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 200, "a fresh request");
    worker.stop().await.unwrap();
}
