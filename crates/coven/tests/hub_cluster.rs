//! Two real `coven hub` processes sharing one real `redis-server` (`REDIS_URL`),
//! with the simulator as Discord: events posted to either hub reach browsers on
//! both with the same `seq`; a browser resumes on the other hub; rooms are created
//! once across hubs; a killed hub and a restarted Redis lose nothing.

mod process;

use std::time::Duration;

use coven_contract::Secret;
use coven_contract::signature::EVENT_ID_HEADER;
use coven_testkit::{
    KillOnDrop, RedisServer, SECRET, eventually, free_port, now_secs, sign_webhook, sim_login,
    simulator,
};
use futures_util::StreamExt;
use process::{Ws, next_json};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Every hub shares the issuer name: a token of one is a token of all.
const ISSUER: &str = "http://coven-cluster.test";

/// One `coven hub` process.
struct HubProcess {
    port: u16,
    child: Option<KillOnDrop>,
    _state: tempfile::TempDir,
}

impl HubProcess {
    async fn start(sim: &coven_sim::Simulator, redis_url: &str) -> Self {
        Self::start_with(sim, redis_url, None).await
    }

    /// A hub whose OAuth2 redirect URI is `redirect_uri` (like every hub behind
    /// one load balancer) instead of its own `/auth/callback`.
    async fn start_with(
        sim: &coven_sim::Simulator,
        redis_url: &str,
        redirect_uri: Option<&str>,
    ) -> Self {
        let state = tempfile::tempdir().unwrap();
        let port = free_port();
        let redirect_uri = redirect_uri.map_or_else(
            || format!("http://127.0.0.1:{port}/auth/callback"),
            str::to_owned,
        );
        let child = process::login_hub_command(sim, state.path(), port, &redirect_uri)
            .arg("hub")
            .env("JWT_ISSUER", ISSUER)
            .env("REDIS_URL", redis_url)
            .spawn()
            .unwrap();
        let hub = Self {
            port,
            child: Some(KillOnDrop::new(child)),
            _state: state,
        };
        hub.health(|h| h["status"] == "ok" && h["redis"] == "up")
            .await;
        hub
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Polls `/health` until `ready` accepts it (always HTTP 200 here).
    async fn health(&self, ready: impl Fn(&Value) -> bool) -> Value {
        let url = self.url("/health");
        eventually(&format!("{url} to be ready"), async || {
            let response = reqwest::get(&url).await.ok()?;
            if response.status() != 200 {
                return None;
            }
            let body: Value = response.json().await.ok()?;
            ready(&body).then_some(body)
        })
        .await
    }

    fn kill(&mut self) {
        drop(self.child.take());
    }

    fn is_running(&mut self) -> bool {
        let child = self.child.take().expect("running");
        let mut child = child.into_inner();
        let running = child.try_wait().unwrap().is_none();
        self.child = Some(KillOnDrop::new(child));
        running
    }

    /// Signs in through the simulator's OAuth2 and returns the hub's JWT.
    async fn login(&self) -> String {
        sim_login(&self.url("")).await
    }

    /// Posts one signed webhook event; returns the HTTP status.
    async fn post(&self, id: &str, event: &Value) -> u16 {
        let body = event.to_string();
        let request = reqwest::Client::new()
            .post(self.url("/api/internal/events"))
            .header(EVENT_ID_HEADER, id);
        sign_webhook(request, SECRET, now_secs(), body.as_bytes())
            .send()
            .await
            .map_or(0, |r| r.status().as_u16())
    }

    /// Posts until the hub acknowledges (like the worker's retries).
    async fn deliver(&self, id: &str, event: &Value) {
        eventually(&format!("event {id} to be accepted"), async || {
            (self.post(id, event).await == 200).then_some(())
        })
        .await;
    }

    /// Opens a socket, authenticates (resuming after `last_seq`) and returns it
    /// with the ack.
    async fn browser(&self, token: &str, last_seq: Option<u64>) -> (Ws, Value) {
        process::browser(self.port, token, last_seq).await
    }
}

/// The next `count` events as `(seq, userId)`.
async fn events(ws: &mut Ws, count: usize) -> Vec<(u64, String)> {
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let frame = next_json(ws).await;
        assert_eq!(frame["type"], "event", "{frame}");
        out.push((
            frame["seq"].as_u64().unwrap(),
            frame["payload"]["userId"]
                .as_str()
                .or(frame["payload"]["channelId"].as_str())
                .unwrap()
                .to_owned(),
        ));
    }
    out
}

/// Asserts nothing more arrives for a moment (the only fixed wait: proving an
/// absence needs one).
async fn nothing_more(ws: &mut Ws) {
    if let Ok(Some(Ok(Message::Text(text)))) =
        tokio::time::timeout(Duration::from_millis(300), ws.next()).await
    {
        panic!("unexpected frame {text}");
    }
}

fn joined(guild: u64, user: u64) -> Value {
    json!({"event": "voice.joined", "payload": {
        "guildId": guild.to_string(), "channelId": "77", "userId": user.to_string()}})
}

/// The first `seq` of a new stream is derived from the clock (Unix ms × 1000): a
/// stream started during these tests begins above this.
const CLOCK_2023: u64 = 1_700_000_000_000_000;

/// `seq` of the first of `events`, checked to come from a clock-derived stream.
fn first_seq(events: &[(u64, String)]) -> u64 {
    let first = events[0].0;
    assert!(
        first > CLOCK_2023,
        "{first}: a stream starts from the clock"
    );
    first
}

fn expected(seqs: std::ops::RangeInclusive<u64>, first_user: u64) -> Vec<(u64, String)> {
    seqs.clone()
        .map(|seq| (seq, (first_user + seq - seqs.start()).to_string()))
        .collect()
}

struct Cluster {
    sim: coven_sim::Simulator,
    redis: RedisServer,
    a: HubProcess,
    b: HubProcess,
}

async fn cluster() -> Cluster {
    let sim = simulator().await;
    let redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap();
    let a = HubProcess::start(&sim, &redis.url()).await;
    let b = HubProcess::start(&sim, &redis.url()).await;
    Cluster { sim, redis, a, b }
}

#[tokio::test]
async fn events_posted_to_one_hub_reach_browsers_on_both_in_order_with_one_seq() {
    let Cluster {
        sim,
        redis: _redis,
        a,
        b,
    } = cluster().await;
    let guild = sim.guild_id();
    // A token issued by hub A is accepted by hub B: the issuer's keys are shared.
    let token = a.login().await;
    let (mut on_a, _) = a.browser(&token, None).await;
    let (mut on_b, _) = b.browser(&token, None).await;

    for i in 0..20u64 {
        let hub = if i % 3 == 0 { &a } else { &b };
        hub.deliver(&format!("e{i}"), &joined(guild, 1000 + i))
            .await;
    }
    let got = events(&mut on_a, 20).await;
    let first = first_seq(&got);
    let want = expected(first..=first + 19, 1000);
    assert_eq!(got, want);
    assert_eq!(events(&mut on_b, 20).await, want);

    // A redelivery to the other hub is acknowledged and not broadcast again.
    assert_eq!(a.post("e5", &joined(guild, 1005)).await, 200);
    b.deliver("e20", &joined(guild, 1020)).await;
    let next = expected(first + 20..=first + 20, 1020);
    assert_eq!(events(&mut on_a, 1).await, next);
    assert_eq!(events(&mut on_b, 1).await, next);
    nothing_more(&mut on_a).await;
}

#[tokio::test]
async fn a_login_started_on_one_hub_completes_on_the_other() {
    let sim = simulator().await;
    let redis = RedisServer::start();
    // Both hubs are behind one (imaginary) load balancer: one redirect URI.
    let balancer = format!("http://127.0.0.1:{}/auth/callback", free_port());
    let a = HubProcess::start_with(&sim, &redis.url(), Some(&balancer)).await;
    let b = HubProcess::start_with(&sim, &redis.url(), Some(&balancer)).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // The login goes to A; Discord's redirect back to the balancer lands on B.
    let start = http.get(a.url("/auth/login")).send().await.unwrap();
    assert!(start.status().is_redirection(), "{}", start.status());
    let cookie = start.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let authorize = start.headers()["location"].to_str().unwrap().to_owned();
    let consent = http.get(&authorize).send().await.unwrap();
    let back = consent.headers()["location"].to_str().unwrap().to_owned();
    let query = back
        .strip_prefix(balancer.as_str())
        .expect("Discord redirects to the balancer");
    let done = http
        .get(b.url(&format!("/auth/callback{query}")))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert!(done.status().is_redirection(), "{}", done.status());
    let target = done.headers()["location"].to_str().unwrap();
    let token = target.strip_prefix("/#token=").expect("a token").to_owned();
    // The token opens sockets on both hubs (`browser` checks the `auth.ok`).
    for hub in [&a, &b] {
        hub.browser(&token, None).await;
    }
    // The flow was taken once: the same callback on A is refused.
    let again = http
        .get(a.url(&format!("/auth/callback{query}")))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 400);
}

#[tokio::test]
async fn a_browser_resumes_on_the_other_hub_with_exactly_the_missed_events() {
    let Cluster {
        sim,
        redis: _redis,
        a,
        b,
    } = cluster().await;
    let guild = sim.guild_id();
    let token = b.login().await;
    let (mut on_a, _) = a.browser(&token, None).await;
    for i in 0..5u64 {
        a.deliver(&format!("r{i}"), &joined(guild, 2000 + i)).await;
    }
    let got = events(&mut on_a, 5).await;
    let first = first_seq(&got);
    assert_eq!(got, expected(first..=first + 4, 2000));
    drop(on_a);
    for i in 5..12u64 {
        let hub = if i % 2 == 0 { &a } else { &b };
        hub.deliver(&format!("r{i}"), &joined(guild, 2000 + i))
            .await;
    }
    // From B's ring here; a hub that never saw them replays from Redis (next test).
    let (mut on_b, ack) = b.browser(&token, Some(first + 4)).await;
    assert_ne!(ack["resumed"], false, "{ack}");
    assert_eq!(
        events(&mut on_b, 7).await,
        expected(first + 5..=first + 11, 2005)
    );
    a.deliver("r12", &joined(guild, 2012)).await;
    assert_eq!(
        events(&mut on_b, 1).await,
        expected(first + 12..=first + 12, 2012)
    );
    nothing_more(&mut on_b).await;
}

#[tokio::test]
async fn a_hub_started_later_replays_from_redis_and_refuses_a_gap_it_cannot_fill() {
    let Cluster {
        sim, redis, a, b, ..
    } = cluster().await;
    let guild = sim.guild_id();
    let token = a.login().await;
    let (mut on_a, _) = a.browser(&token, None).await;
    for i in 0..6u64 {
        b.deliver(&format!("l{i}"), &joined(guild, 3000 + i)).await;
    }
    let first = first_seq(&events(&mut on_a, 6).await);
    a.health(|h| h["replay"]["headSeq"] == first + 5).await;
    // Hub C never saw these events: its ring is empty, the stream has them.
    let c = HubProcess::start(&sim, &redis.url()).await;
    let (mut on_c, ack) = c.browser(&token, Some(first + 1)).await;
    assert_ne!(ack["resumed"], false, "{ack}");
    assert_eq!(
        events(&mut on_c, 4).await,
        expected(first + 2..=first + 5, 3002)
    );
    // Ahead of everything Redis ever assigned, or below this stream's start
    // (a position in an earlier stream): not resumable.
    for last in [first + 499, 2] {
        let (_, ack) = c.browser(&token, Some(last)).await;
        assert_eq!(ack["resumed"], false, "{last}: {ack}");
    }
}

#[tokio::test]
async fn rooms_are_created_once_across_hubs_and_announced_once() {
    let Cluster {
        sim,
        redis: _redis,
        a,
        b,
    } = cluster().await;
    let guild = sim.guild_id();
    let token = a.login().await;
    let (mut on_b, _) = b.browser(&token, None).await;

    let create = |hub: &HubProcess| {
        reqwest::Client::new()
            .post(hub.url("/api/create-room"))
            .bearer_auth(&token)
            .header("Idempotency-Key", "cluster-key-1")
            .json(&json!({"name": "Cluster Table"}))
            .send()
    };
    let (first, second) = tokio::join!(create(&a), create(&b));
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.status(), 201);
    assert_eq!(second.status(), 201);
    let first: Value = first.json().await.unwrap();
    let second: Value = second.json().await.unwrap();
    assert_eq!(first, second, "one answer for one Idempotency-Key");
    let channel = first["channelId"].as_str().unwrap().to_owned();
    // A later retry on either hub gets the same answer too.
    let again: Value = create(&b).await.unwrap().json().await.unwrap();
    assert_eq!(again, first);

    // The gateway's webhook announces the same room through the other hub: still
    // exactly one room.created reaches the browser.
    let created = json!({"event": "room.created", "payload": {
        "channelId": channel, "name": "Cluster Table", "guildId": guild.to_string(),
        "parentId": null, "userLimit": 4}});
    assert_eq!(b.post("gw-room-1", &created).await, 200);
    assert_eq!(a.post("gw-room-1-again", &created).await, 200);
    let frame = next_json(&mut on_b).await;
    assert_eq!(frame["event"], "room.created", "{frame}");
    assert_eq!(frame["payload"]["channelId"], channel.as_str());
    nothing_more(&mut on_b).await;

    // Exactly one channel with that name exists in the (simulated) guild.
    let rest = coven_discord::DiscordRestClient::new(coven_discord::RestSettings {
        api_url: sim.api_url().parse().unwrap(),
        bot_token: Secret::new(sim.bot_token()),
        max_retries: 1,
    })
    .unwrap();
    let named = rest
        .guild_channels(coven_contract::Snowflake::new(guild).unwrap())
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.name == "Cluster Table")
        .count();
    assert_eq!(named, 1);
}

#[tokio::test]
async fn browsers_of_a_killed_hub_resume_on_the_other_without_loss() {
    let Cluster {
        sim,
        redis: _redis,
        mut a,
        b,
    } = cluster().await;
    let guild = sim.guild_id();
    let token = a.login().await;
    let (mut on_a, _) = a.browser(&token, None).await;
    for i in 0..3u64 {
        b.deliver(&format!("k{i}"), &joined(guild, 4000 + i)).await;
    }
    let seen = events(&mut on_a, 3).await;
    let first = first_seq(&seen);
    assert_eq!(seen, expected(first..=first + 2, 4000));
    a.kill();
    for i in 3..8u64 {
        b.deliver(&format!("k{i}"), &joined(guild, 4000 + i)).await;
    }
    let last = seen.last().unwrap().0;
    let (mut on_b, ack) = b.browser(&token, Some(last)).await;
    assert_ne!(ack["resumed"], false, "{ack}");
    assert_eq!(
        events(&mut on_b, 5).await,
        expected(first + 3..=first + 7, 4003)
    );
    nothing_more(&mut on_b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_mid_stream_loses_nothing_acknowledged() {
    let Cluster {
        sim,
        redis,
        mut a,
        mut b,
    } = cluster().await;
    let guild = sim.guild_id();
    let token = a.login().await;
    let (mut on_a, _) = a.browser(&token, None).await;
    let (mut on_b, _) = b.browser(&token, None).await;
    for i in 0..5u64 {
        a.deliver(&format!("x{i}"), &joined(guild, 5000 + i)).await;
    }

    let mut redis = tokio::task::spawn_blocking(move || {
        let mut redis = redis;
        redis.kill();
        redis
    })
    .await
    .unwrap();
    a.health(|h| h["redis"] == "down").await;
    b.health(|h| h["redis"] == "down").await;
    // While down: refused with 503 (so the worker keeps it), never acknowledged.
    let refused = b.post("x5", &joined(guild, 5005)).await;
    assert_eq!(refused, 503);
    let create = reqwest::Client::new()
        .post(a.url("/api/create-room"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "while-down")
        .send()
        .await
        .unwrap();
    assert_eq!(create.status(), 503);
    assert!(create.headers().contains_key("retry-after"));
    // New sockets still authenticate (live events will follow once Redis is back).
    let (mut late, _) = a.browser(&token, None).await;

    redis = tokio::task::spawn_blocking(move || {
        redis.restart();
        redis
    })
    .await
    .unwrap();
    a.health(|h| h["redis"] == "up").await;
    b.health(|h| h["redis"] == "up").await;
    // The refused event is accepted on retry; the stream continues.
    for i in 5..10u64 {
        let hub = if i % 2 == 0 { &a } else { &b };
        hub.deliver(&format!("x{i}"), &joined(guild, 5000 + i))
            .await;
    }
    let got = events(&mut on_a, 10).await;
    let first = first_seq(&got);
    let want = expected(first..=first + 9, 5000);
    assert_eq!(got, want);
    assert_eq!(events(&mut on_b, 10).await, want);
    assert_eq!(
        events(&mut late, 5).await,
        expected(first + 5..=first + 9, 5005)
    );
    assert!(a.is_running() && b.is_running(), "no hub crashed");
    drop(redis);
}
