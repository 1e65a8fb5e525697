//! The voice server's own surface, without a voice client: the TLS voice gateway (test CA,
//! HELLO, IDENTIFY with a bad token → 4004) and the `/_sim/voice` control routes.

mod common;

use std::sync::Arc;

use common::{STEP, crypto};
use coven_sim::{SimConfig, Simulator};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn voice_gateway_speaks_tls_hello_and_rejects_a_bad_token() {
    crypto();
    let sim = Simulator::start(SimConfig::default()).await.expect("start");
    let endpoint = sim.voice_endpoint();
    assert_ne!(endpoint, sim.addr().to_string());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(coven_sim::voice::test_ca_pem().as_bytes()) {
        roots.add(cert.expect("pem")).expect("root");
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(&endpoint)
        .await
        .expect("tcp");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").expect("ip"), tcp)
        .await
        .expect("TLS handshake with the test CA");
    let (mut ws, _) = tokio_tungstenite::client_async(format!("wss://{endpoint}/?v=4"), tls)
        .await
        .expect("upgrade");
    let hello = tokio::time::timeout(STEP, ws.next())
        .await
        .expect("hello")
        .expect("frame")
        .expect("ok");
    let hello: Value = serde_json::from_str(hello.to_text().expect("text")).expect("json");
    assert_eq!(hello["op"], 8);
    assert_eq!(hello["d"]["v"], 4);
    assert!(hello["d"]["heartbeat_interval"].as_u64().is_some());
    let guild = sim.guild_id().to_string();
    let identify = json!({"op": 0, "d": {"server_id": guild, "session_id": "nope", "token": "bad", "user_id": "1"}});
    ws.send(Message::text(identify.to_string()))
        .await
        .expect("send");
    let code = tokio::time::timeout(STEP, async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Close(Some(f)) = m {
                return u16::from(f.code);
            }
        }
        0
    })
    .await
    .expect("closed in time");
    assert_eq!(code, 4004);
    let c = sim.handle().voice_snapshot().counters;
    assert_eq!(
        (c.connections, c.identifies, c.last_version),
        (1, 0, Some(4))
    );
}

#[tokio::test]
async fn control_routes() {
    let sim = Simulator::start(SimConfig::default()).await.expect("start");
    let seed = sim.handle().seed();
    let http = reqwest::Client::new();
    let base = sim.control_url();
    let snap: Value = http
        .get(format!("{base}/voice"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(snap["counters"]["connections"], 0);
    let grace = seed.outsider_user_ids[0];
    let r = http
        .post(format!("{base}/voice/users/{grace}/speak"))
        .json(&json!({"ms": 100}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 409, "not in voice");
    let alice = seed.member_user_ids[0];
    let r = http
        .post(format!("{base}/voice/users/{alice}/speak"))
        .json(&json!({"ms": 100}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    // A tone is real Opus speech; a frequency outside 50..=16000 Hz is a 400.
    let r = http
        .post(format!("{base}/voice/users/{alice}/speak"))
        .json(&json!({"ms": 100, "tone_hz": 440}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{base}/voice/users/{alice}/speak"))
        .json(&json!({"ms": 100, "tone_hz": 40_000}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    assert_eq!(
        body["message"],
        "tone frequency must be 50..=16000 Hz, got 40000"
    );
    let r = http
        .post(format!("{base}/voice/move"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 409, "bot not in voice");
    let r = http
        .get(format!("{base}/voice/users/abc/received"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 400);
    let r: Value = http
        .get(format!("{base}/voice/users/{alice}/received"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(r["audio_frames"], 0);
    let r: Value = http
        .post(format!("{base}/voice/drop"))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(r["connections"], 0);
}
