//! Property tests: every contract type survives a JSON round trip, and any change to
//! a signed request's body, timestamp or secret makes verification fail.

use coven_contract::signature::{SignatureError, Signer, Verifier};
use coven_contract::{
    Ack, AckEvent, ApiError, ClientMessage, ErrorBody, ErrorCode, ErrorEnvelope, Event,
    EventEnvelope, RoomCreated, RoomDeleted, RoomName, Secret, ServerMessage, Snowflake, UserLimit,
    Version, VoiceFlags, VoiceJoined, VoiceLeft, VoiceSpeaking, VoiceStateChanged,
};
use proptest::prelude::*;

fn snowflake() -> impl Strategy<Value = Snowflake> + Clone {
    (1..=u64::MAX).prop_map(|id| Snowflake::new(id).unwrap())
}

fn room_name() -> impl Strategy<Value = RoomName> {
    "[a-zA-Z0-9é🃏 _-]{0,99}[a-z]".prop_map(|name| RoomName::try_from(name).unwrap())
}

fn user_limit() -> impl Strategy<Value = UserLimit> {
    (0_u8..=99).prop_map(|limit| UserLimit::try_from(limit).unwrap())
}

fn flags() -> impl Strategy<Value = VoiceFlags> {
    any::<[bool; 7]>().prop_map(|f| VoiceFlags {
        self_mute: f[0],
        self_deaf: f[1],
        mute: f[2],
        deaf: f[3],
        self_video: f[4],
        self_stream: f[5],
        suppress: f[6],
    })
}

fn event() -> impl Strategy<Value = Event> {
    let ids = (snowflake(), snowflake(), snowflake());
    prop_oneof![
        (
            ids.clone(),
            room_name(),
            proptest::option::of(snowflake()),
            user_limit()
        )
            .prop_map(
                |((g, c, _), name, parent_id, user_limit)| Event::RoomCreated(RoomCreated {
                    channel_id: c,
                    name,
                    guild_id: g,
                    parent_id,
                    user_limit,
                })
            ),
        ids.clone()
            .prop_map(|(g, c, _)| Event::RoomDeleted(RoomDeleted {
                channel_id: c,
                guild_id: g
            })),
        ids.clone()
            .prop_map(|(g, c, u)| Event::VoiceJoined(VoiceJoined {
                guild_id: g,
                channel_id: c,
                user_id: u
            })),
        ids.clone()
            .prop_map(|(g, c, u)| Event::VoiceLeft(VoiceLeft {
                guild_id: g,
                channel_id: c,
                user_id: u
            })),
        (ids.clone(), flags()).prop_map(|((g, c, u), flags)| Event::VoiceState(
            VoiceStateChanged {
                guild_id: g,
                channel_id: c,
                user_id: u,
                flags
            }
        )),
        (ids, any::<bool>()).prop_map(|((g, c, u), speaking)| Event::VoiceSpeaking(
            VoiceSpeaking {
                guild_id: g,
                channel_id: c,
                user_id: u,
                speaking
            }
        )),
    ]
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        Just(ErrorCode::Unauthorized),
        Just(ErrorCode::Forbidden),
        Just(ErrorCode::NotFound),
        Just(ErrorCode::RateLimited),
        Just(ErrorCode::ValidationFailed),
        Just(ErrorCode::InvalidMessage),
        Just(ErrorCode::InternalError),
    ]
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    prop_oneof![
        (event(), any::<u64>(), any::<u64>()).prop_map(|(event, ts, seq)| {
            ServerMessage::Event(EventEnvelope {
                v: Version,
                event,
                ts,
                seq,
            })
        }),
        (
            snowflake(),
            any::<u64>(),
            proptest::option::of(any::<bool>())
        )
            .prop_map(|(guild_id, ts, resumed)| ServerMessage::Ack(Ack {
                v: Version,
                event: AckEvent::AuthOk,
                guild_id,
                ts,
                resumed,
                ice_servers: Vec::new(),
            })),
        (error_code(), ".{0,40}", any::<u64>()).prop_map(|(code, message, ts)| {
            ServerMessage::Error(ErrorEnvelope {
                v: Version,
                error: ErrorBody { code, message },
                ts,
            })
        }),
    ]
}

proptest! {
    #[test]
    fn snowflakes_round_trip(id in snowflake()) {
        let text = id.to_string();
        prop_assert_eq!(text.parse::<Snowflake>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        prop_assert_eq!(serde_json::from_str::<Snowflake>(&json).unwrap(), id);
    }

    #[test]
    fn events_round_trip(event in event()) {
        let body = event.to_webhook_body();
        prop_assert_eq!(serde_json::from_slice::<Event>(&body).unwrap(), event);
    }

    #[test]
    fn server_messages_round_trip(message in server_message()) {
        prop_assert_eq!(ServerMessage::parse(&message.to_json()).unwrap(), message);
    }

    #[test]
    fn client_messages_round_trip(token in "[A-Za-z0-9._-]{1,200}", last_seq in proptest::option::of(any::<u64>())) {
        let message = ClientMessage::Auth { token, last_seq };
        let text = serde_json::to_string(&message).unwrap();
        prop_assert_eq!(ClientMessage::parse(&text).unwrap(), message);
    }

    #[test]
    fn api_errors_round_trip(code in error_code(), message in ".{0,60}", detail in proptest::option::of(".{0,20}")) {
        let error = ApiError { message, code, details: detail.map(serde_json::Value::String) };
        let text = serde_json::to_string(&error).unwrap();
        prop_assert_eq!(serde_json::from_str::<ApiError>(&text).unwrap(), error);
    }

    #[test]
    fn a_signed_body_verifies_and_parses(event in event(), secret in "[ -~]{1,64}", now in 60_u64..4_000_000_000, skew in -60_i64..=60) {
        let body = event.to_webhook_body();
        let signed_at = now.checked_add_signed(skew).unwrap();
        let headers = Signer::new(Secret::new(secret.clone())).sign(signed_at, &body);
        let verified = Verifier::new(vec![Secret::new(secret)])
            .verify(Some(&headers.timestamp), Some(&headers.signature), &body, now)
            .unwrap();
        prop_assert_eq!(Event::from_verified_body(verified).unwrap(), event);
    }

    #[test]
    fn any_change_to_the_body_fails(event in event(), index in any::<prop::sample::Index>(), flip in 1_u8..=255) {
        let body = event.to_webhook_body();
        let headers = Signer::new(Secret::new("k")).sign(1000, &body);
        let mut tampered = body.clone();
        let i = index.index(tampered.len());
        tampered[i] ^= flip;
        let result = Verifier::new(vec![Secret::new("k")])
            .verify(Some(&headers.timestamp), Some(&headers.signature), &tampered, 1000);
        prop_assert_eq!(result.unwrap_err(), SignatureError::Mismatch);
    }

    #[test]
    fn appending_or_truncating_the_body_fails(event in event(), extra in proptest::collection::vec(any::<u8>(), 1..8)) {
        let body = event.to_webhook_body();
        let headers = Signer::new(Secret::new("k")).sign(1000, &body);
        let verifier = Verifier::new(vec![Secret::new("k")]);
        let mut longer = body.clone();
        longer.extend_from_slice(&extra);
        let shorter = &body[..body.len() - 1];
        for candidate in [&longer[..], shorter] {
            let result = verifier.verify(Some(&headers.timestamp), Some(&headers.signature), candidate, 1000);
            prop_assert_eq!(result.unwrap_err(), SignatureError::Mismatch);
        }
    }

    #[test]
    fn any_other_timestamp_fails(event in event(), signed_at in 100_u64..1_000_000, delta in 1_u64..=60, later in any::<bool>()) {
        let body = event.to_webhook_body();
        let headers = Signer::new(Secret::new("k")).sign(signed_at, &body);
        let claimed = if later { signed_at + delta } else { signed_at - delta };
        let result = Verifier::new(vec![Secret::new("k")])
            .verify(Some(&claimed.to_string()), Some(&headers.signature), &body, signed_at);
        prop_assert_eq!(result.unwrap_err(), SignatureError::Mismatch);
    }

    #[test]
    fn any_other_secret_fails(event in event(), secret in "[ -~]{1,64}", other in "[ -~]{1,64}") {
        prop_assume!(secret != other);
        let body = event.to_webhook_body();
        let headers = Signer::new(Secret::new(secret)).sign(1000, &body);
        let result = Verifier::new(vec![Secret::new(other)])
            .verify(Some(&headers.timestamp), Some(&headers.signature), &body, 1000);
        prop_assert_eq!(result.unwrap_err(), SignatureError::Mismatch);
    }
}
