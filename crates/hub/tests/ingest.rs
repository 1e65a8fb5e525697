//! docs/spec.md §5 from the outside: the signed webhook's whole signature matrix, limits,
//! idempotency and guild filtering, observed over real HTTP and a real WebSocket.

mod common;

use common::*;
use coven_contract::signature::{EVENT_ID_HEADER, SIGNATURE_HEADER, Signer, TIMESTAMP_HEADER};
use coven_contract::{Event, Secret, VoiceLeft};

const FORBIDDEN: &str = r#"{"message":"forbidden"}"#;

#[tokio::test]
#[allow(clippy::too_many_lines)] // The matrix is one list of cases.
async fn signature_matrix() {
    let (hub, _) = TestHub::start().await;
    let (mut ws, _) = hub.authed(None).await;
    let base = hub.health().await["replay"]["headSeq"].as_u64().unwrap();
    let body = joined(3).to_webhook_body();
    let now = now_secs();

    // The ±60 s edge: inside accepted, outside refused. (One second of margin on the
    // accepted side keeps the test stable across a second boundary.)
    for (n, (at, ok)) in [
        (now - 59, true),
        (now + 59, true),
        (now - 62, false),
        (now + 62, false),
        (0, false),
    ]
    .into_iter()
    .enumerate()
    {
        let (status, text) = hub
            .post_signed(&body, SECRET, at, &format!("skew-{n}"))
            .await;
        if ok {
            assert_eq!(
                (status.as_u16(), text.as_str()),
                (200, r#"{"ok":true}"#),
                "at {at}"
            );
        } else {
            assert_eq!(
                (status.as_u16(), text.as_str()),
                (403, FORBIDDEN),
                "at {at}"
            );
        }
    }

    let signed = Signer::new(Secret::new(SECRET)).sign(now, &body);
    let hex = signed.signature["sha256=".len()..].to_owned();
    let bad_signatures = [
        String::new(),
        "sha256=".into(),
        format!("sha256={}", &hex[..63]),
        format!("sha256={}", &hex[..32]),
        format!("sha256={}", hex.to_uppercase()),
        format!("SHA256={hex}"),
        hex.clone(),
        format!("sha256={hex}00"),
        format!("sha256={}", "0".repeat(64)),
        Signer::new(Secret::new("wrong-secret"))
            .sign(now, &body)
            .signature,
    ];
    for (n, signature) in bad_signatures.iter().enumerate() {
        let (status, text) = hub
            .post_raw(
                body.clone(),
                &[
                    (TIMESTAMP_HEADER, signed.timestamp.clone()),
                    (SIGNATURE_HEADER, signature.clone()),
                    (EVENT_ID_HEADER, format!("bad-sig-{n}")),
                ],
            )
            .await;
        assert_eq!(
            (status.as_u16(), text.as_str()),
            (403, FORBIDDEN),
            "{signature:?}"
        );
    }

    // Missing headers, a tampered body, a timestamp that is not the signed one.
    let missing = [
        vec![(SIGNATURE_HEADER, signed.signature.clone())],
        vec![(TIMESTAMP_HEADER, signed.timestamp.clone())],
        vec![],
    ];
    for headers in missing {
        let (status, text) = hub.post_raw(body.clone(), &headers).await;
        assert_eq!((status.as_u16(), text.as_str()), (403, FORBIDDEN));
    }
    let mut tampered = body.clone();
    let last = tampered.len() - 3;
    tampered[last] = b'9';
    let (status, _) = hub
        .post_raw(
            tampered,
            &[
                (TIMESTAMP_HEADER, signed.timestamp.clone()),
                (SIGNATURE_HEADER, signed.signature.clone()),
                (EVENT_ID_HEADER, "tampered".into()),
            ],
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = hub
        .post_raw(
            body.clone(),
            &[
                (TIMESTAMP_HEADER, (now + 1).to_string()),
                (SIGNATURE_HEADER, signed.signature.clone()),
                (EVENT_ID_HEADER, "moved-ts".into()),
            ],
        )
        .await;
    assert_eq!(status, 403);

    // Rotation: the hub holds [new, old]; both verify.
    let (status, _) = hub.post_signed(&body, OLD_SECRET, now, "rotated-old").await;
    assert_eq!(status, 200);

    // Only the three accepted posts reached the browser, in seq order.
    for n in 1..=3 {
        let event = next_event(&mut ws).await;
        assert_eq!(event.seq, base + n);
    }
    hub.post_event(&joined(99), "marker").await;
    assert_eq!(
        next_event(&mut ws).await.seq,
        base + 4,
        "nothing refused was broadcast"
    );

    let metrics = hub
        .http
        .get(hub.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reason in [
        "stale",
        "malformed_signature",
        "mismatch",
        "missing_timestamp",
        "missing_signature",
    ] {
        assert!(
            metrics.contains(&format!(
                "hub_webhook_signature_rejected_total{{reason=\"{reason}\"}}"
            )),
            "{reason} missing from\n{metrics}"
        );
    }
}

#[tokio::test]
async fn replays_are_acknowledged_but_not_broadcast() {
    let (hub, _) = TestHub::start().await;
    let (mut ws, _) = hub.authed(None).await;
    let base = hub.health().await["replay"]["headSeq"].as_u64().unwrap();
    let event = joined(3);
    hub.post_event(&event, "evt-1").await;
    // The same delivery again (a retry), even re-signed later: 200, no broadcast.
    hub.post_event(&event, "evt-1").await;
    hub.post_event(&event, "evt-1").await;
    hub.post_event(&joined(4), "evt-2").await;
    let first = next_event(&mut ws).await;
    let second = next_event(&mut ws).await;
    assert_eq!((first.seq, second.seq), (base + 1, base + 2));
    assert_eq!(second.event, joined(4));
}

#[tokio::test]
async fn limits_malformed_bodies_and_other_guilds() {
    let (hub, _) = TestHub::start().await;
    let (mut ws, _) = hub.authed(None).await;
    let base = hub.health().await["replay"]["headSeq"].as_u64().unwrap();
    let now = now_secs();

    // Over 64 KiB: 413 whether signed or not, without reading it.
    let huge = vec![b' '; 64 * 1024 + 1];
    let (status, _) = hub.post_signed(&huge, SECRET, now, "huge").await;
    assert_eq!(status, 413);
    let (status, _) = hub.post_raw(huge, &[]).await;
    assert_eq!(status, 413);
    let exactly = {
        let mut body = joined(3).to_webhook_body();
        body.resize(64 * 1024, b' ');
        body
    };
    let (status, text) = hub.post_signed(&exactly, SECRET, now, "exact").await;
    assert_eq!(status, 200, "64 KiB exactly is allowed: {text}");

    // Malformed or unknown after a valid signature: 400 with the error shape.
    for (n, body) in [
        "not json".to_owned(),
        r#"{"event":"voice.teleported","payload":{}}"#.to_owned(),
        r#"{"event":"voice.joined","payload":{"guildId":1}}"#.to_owned(),
    ]
    .iter()
    .enumerate()
    {
        let (status, text) = hub
            .post_signed(body.as_bytes(), SECRET, now, &format!("bad-{n}"))
            .await;
        assert_eq!(status, 400, "{body}");
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["code"], "VALIDATION_FAILED");
        assert!(json["message"].is_string());
    }
    // A malformed body with a bad signature is still only "forbidden".
    let (status, text) = hub.post_signed(b"not json", "wrong", now, "x").await;
    assert_eq!((status.as_u16(), text.as_str()), (403, FORBIDDEN));

    // Another guild: acknowledged, never broadcast.
    let other = Event::VoiceLeft(VoiceLeft {
        guild_id: id(OTHER_GUILD),
        channel_id: id(2),
        user_id: id(3),
    });
    hub.post_event(&other, "other-guild").await;
    hub.post_event(&joined(5), "mine").await;
    let first = next_event(&mut ws).await;
    assert_eq!(
        (first.seq, first.event),
        (base + 1, joined(3)),
        "the 64 KiB event"
    );
    let event = next_event(&mut ws).await;
    assert_eq!((event.seq, event.event), (base + 2, joined(5)));
}
