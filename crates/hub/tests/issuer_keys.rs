//! The own issuer's keys in Redis (docs/security.md, "Keys and JWKS"), against a real
//! `redis-server`: the stored value holds no key material, a hub with the right
//! `HUB_SECRET` reads it and one without refuses it (not ready, no panic), a secret
//! rotation keeps every step readable, a plaintext set left by an older hub is
//! resealed, and a key the shared set retired does not come back from a key file.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{GUILD, OLD_SECRET, SECRET, TestHub, eventually};
use coven_contract::Secret;
use coven_hub::HubSettings;
use coven_testkit::RedisServer;
use serde_json::{Value, json};

/// Where the hubs of [`GUILD`] keep the issuer's keys in Redis (docs/scaling.md).
fn redis_key() -> String {
    format!("coven:{{{GUILD}}}:hub:jwt-keys")
}

async fn stored(redis: &RedisServer) -> Option<String> {
    let mut conn = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("GET")
        .arg(redis_key())
        .query_async(&mut conn)
        .await
        .unwrap()
}

fn temp_dir(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!("coven-hub-{what}-{:016x}", rand::random::<u64>()))
}

/// A hub signing its own tokens, sharing its keys through `redis`, with `secrets`.
fn own_issuer<'a>(
    redis: &RedisServer,
    secrets: &'a [&'a str],
    state_dir: Option<&'a Path>,
) -> impl FnOnce(&mut HubSettings) + 'a {
    let url = redis.url();
    move |s: &mut HubSettings| {
        s.jwt_public_jwk_url = None;
        s.redis_url = Some(Secret::new(url));
        s.hub_secrets = secrets.iter().map(|s| Secret::new(*s)).collect();
        s.state_dir = state_dir.map(Path::to_path_buf);
    }
}

/// The key file's seeds (the private keys), base64url.
fn seeds_in(dir: &Path) -> Vec<String> {
    let file: Value =
        serde_json::from_slice(&std::fs::read(dir.join(coven_hub::KEY_FILE_NAME)).unwrap())
            .unwrap();
    file["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["d"].as_str().unwrap().to_owned())
        .collect()
}

/// Asserts `value` carries none of `seeds`, in any of the usual encodings.
fn assert_no_key_material(value: &str, seeds: &[String]) {
    assert!(!value.contains("\"keys\""), "a plaintext key set: {value}");
    for seed in seeds {
        let raw = URL_SAFE_NO_PAD.decode(seed).unwrap();
        let standard = base64::engine::general_purpose::STANDARD.encode(&raw);
        let hex = raw.iter().fold(String::new(), |mut hex, b| {
            use std::fmt::Write;
            let _ = write!(hex, "{b:02x}");
            hex
        });
        for form in [seed.as_str(), standard.trim_end_matches('='), hex.as_str()] {
            assert!(
                !value.contains(form),
                "the key material is readable in Redis"
            );
        }
        assert!(
            !value.as_bytes().windows(raw.len()).any(|w| w == raw),
            "the raw seed is in Redis"
        );
    }
}

/// A hub that did not become ready within a few seconds, and still answers.
async fn stays_not_ready(hub: &TestHub) {
    tokio::time::sleep(Duration::from_secs(3)).await;
    let response = hub.http.get(hub.url("/health")).send().await.unwrap();
    assert_eq!(
        response.status(),
        503,
        "a hub that cannot read the keys is not ready"
    );
}

#[tokio::test]
async fn the_keys_in_redis_are_sealed_and_only_the_right_secret_opens_them() {
    let redis = RedisServer::start_volatile();
    let dir = temp_dir("sealed-keys");
    let (a, _) = TestHub::start_with(own_issuer(&redis, &[SECRET], Some(&dir))).await;
    let value = stored(&redis).await.expect("the first hub stored its keys");
    assert_no_key_material(&value, &seeds_in(&dir));

    // Another hub with the same secret reads them and signs with the shared key.
    let (b, _) = TestHub::start_with(own_issuer(&redis, &[SECRET], None)).await;
    let (issuer_a, issuer_b) = (a.hub.issuer().unwrap(), b.hub.issuer().unwrap());
    assert_eq!(issuer_b.kid(), issuer_a.kid());

    // A hub with another secret refuses them: not ready, signing nothing shared.
    let c = TestHub::launch(
        own_issuer(&redis, &["not-the-hub-secret"], None),
        std::sync::Arc::new(coven_hub::MemoryRooms::new(1)),
    )
    .await;
    stays_not_ready(&c).await;
    assert_ne!(c.hub.issuer().unwrap().kid(), issuer_a.kid());
    assert_eq!(
        stored(&redis).await.as_ref(),
        Some(&value),
        "and leaves them alone"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_hub_secret_rotation_keeps_the_keys_readable_at_every_step() {
    let redis = RedisServer::start_volatile();
    // Before: every hub has the old secret only.
    let (a, _) = TestHub::start_with(own_issuer(&redis, &[OLD_SECRET], None)).await;
    let kid = a.hub.issuer().unwrap().kid();
    let sealed_with_old = stored(&redis).await.unwrap();
    // During: the new secret first, the old one still listed. The hub reads the set
    // sealed with the old secret and reseals it with the new one.
    let (b, _) = TestHub::start_with(own_issuer(&redis, &[SECRET, OLD_SECRET], None)).await;
    assert_eq!(b.hub.issuer().unwrap().kid(), kid);
    eventually("the set to be resealed with the first secret", async || {
        stored(&redis).await.is_some_and(|v| v != sealed_with_old)
    })
    .await;
    // After: the old secret dropped, the set still opens.
    let (c, _) = TestHub::start_with(own_issuer(&redis, &[SECRET], None)).await;
    assert_eq!(c.hub.issuer().unwrap().kid(), kid);
    // A rotation of the signing key on a hub mid-rotation reaches them all.
    let rotated = b.hub.issuer().unwrap().rotate_shared().await.unwrap();
    let subject = coven_hub::TokenSubject {
        user_id: "4242".into(),
        name: "Alice".into(),
        avatar_url: None,
    };
    let token = b.hub.issuer().unwrap().issue(&subject).unwrap();
    let mut ws = c.connect().await;
    common::send_auth(&mut ws, &token, None).await;
    assert_eq!(common::next_json(&mut ws).await["event"], "auth.ok");
    assert_eq!(c.hub.issuer().unwrap().kid(), rotated);
}

#[tokio::test]
async fn a_plaintext_key_set_is_resealed() {
    let redis = RedisServer::start_volatile();
    // What a hub of an earlier release stored: the key set in plaintext.
    let seed = URL_SAFE_NO_PAD.encode([7u8; 32]);
    let created = coven_testkit::now_secs();
    let plaintext = json!({"keys": [
        {"kid": "legacy-kid", "alg": "EdDSA", "d": seed, "created": created}
    ]});
    let mut conn = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let () = redis::cmd("SET")
        .arg(redis_key())
        .arg(plaintext.to_string())
        .query_async(&mut conn)
        .await
        .unwrap();

    let (hub, _) = TestHub::start_with(own_issuer(&redis, &[SECRET], None)).await;
    assert_eq!(hub.hub.issuer().unwrap().kid(), "legacy-kid", "read once");
    eventually("the plaintext set to be rewritten sealed", async || {
        stored(&redis)
            .await
            .is_some_and(|v| !v.contains("\"keys\""))
    })
    .await;
    assert_no_key_material(&stored(&redis).await.unwrap(), &[seed]);
    // Sealed, it still reads: a second hub signs with the same key.
    let (other, _) = TestHub::start_with(own_issuer(&redis, &[SECRET], None)).await;
    assert_eq!(other.hub.issuer().unwrap().kid(), "legacy-kid");
}

#[tokio::test]
async fn a_key_retired_in_redis_does_not_come_back_from_a_key_file() {
    let redis = RedisServer::start_volatile();
    let (dir_a, dir_b) = (temp_dir("retire-a"), temp_dir("retire-b"));
    let (mut a, _) = TestHub::start_with(own_issuer(&redis, &[SECRET], Some(&dir_a))).await;
    let first = a.hub.issuer().unwrap().kid();
    a.stop().await;
    drop(a);
    // While A is down, B rotates the shared set until A's key is retired.
    let (b, _) = TestHub::start_with(own_issuer(&redis, &[SECRET], Some(&dir_b))).await;
    let issuer_b = b.hub.issuer().unwrap();
    for _ in 0..3 {
        issuer_b.rotate_shared().await.unwrap();
    }
    assert!(!issuer_b.kids().contains(&first), "{:?}", issuer_b.kids());
    // A's key file still has it; once A reads the shared set, it is gone.
    let (a, _) = TestHub::start_with(own_issuer(&redis, &[SECRET], Some(&dir_a))).await;
    let issuer_a = a.hub.issuer().unwrap();
    assert!(!issuer_a.kids().contains(&first), "{:?}", issuer_a.kids());
    assert_eq!(
        issuer_a.kid(),
        issuer_b.kid(),
        "signing with the shared key"
    );
    let file = std::fs::read_to_string(dir_a.join(coven_hub::KEY_FILE_NAME)).unwrap();
    assert!(!file.contains(&first), "retired from the key file too");
    let _ = std::fs::remove_dir_all(dir_a);
    let _ = std::fs::remove_dir_all(dir_b);
}
