//! How the REST client fails against the simulator: each Discord error mapped to its
//! typed variant, 5xx retried then surfaced, other 4xx never retried, network errors,
//! validation before any request, and no further call after a 401.

mod common;

use coven_contract::{RoomName, Secret, UserLimit};
use coven_discord::{DiscordError, DiscordRestClient, NewVoiceRoom, RetryPolicy};
use coven_sim::CHANNEL_CREATE_ROUTE;
use url::Url;

use common::{FAST_RETRY, rest, rest_with, sf, sim};

const GET_CHANNEL_ROUTE: &str = "GET /channels/{channel_id}";

fn room(name: &str, parent: Option<u64>) -> NewVoiceRoom {
    NewVoiceRoom {
        name: RoomName::try_from(name).unwrap(),
        parent_id: parent.map(sf),
        user_limit: UserLimit::try_from(4).unwrap(),
        permission_overwrites: vec![],
    }
}

fn requests_to(sim: &coven_sim::Simulator, route: &str) -> usize {
    sim.handle()
        .requests()
        .iter()
        .filter(|r| r.route == route)
        .count()
}

#[tokio::test]
async fn maps_discords_json_errors() {
    let sim = sim().await;
    let seed = sim.handle().seed();
    let client = rest(&sim);

    let unknown = client.channel(sf(42)).await;
    assert_eq!(unknown, Err(DiscordError::UnknownChannel));

    sim.handle().forbid_channel(seed.voice_channel_ids[0], true);
    let forbidden = client
        .delete_channel(sf(seed.voice_channel_ids[0]), None)
        .await;
    assert_eq!(forbidden, Err(DiscordError::MissingPermissions));

    // A text channel is not a category: Discord answers 50035 on parent_id.
    let invalid = client
        .create_voice_room(
            sf(seed.guild_id),
            &room("x", Some(seed.text_channel_id)),
            None,
        )
        .await;
    let Err(DiscordError::InvalidFormBody { errors }) = invalid else {
        panic!("expected an invalid form body, got {invalid:?}");
    };
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "parent_id");
    assert_eq!(errors[0].code, "CHANNEL_PARENT_INVALID");

    let no_member = client
        .guild_member(sf(seed.guild_id), sf(seed.outsider_user_ids[0]))
        .await;
    assert!(
        matches!(
            no_member,
            Err(DiscordError::NotFound {
                code: Some(10007),
                ..
            })
        ),
        "{no_member:?}"
    );
    let no_guild = client.guild_channels(sf(7)).await;
    assert!(
        matches!(
            no_guild,
            Err(DiscordError::NotFound {
                code: Some(10004),
                ..
            })
        ),
        "{no_guild:?}"
    );

    // None of these client errors was retried.
    assert_eq!(sim.handle().requests().len(), 5);
    // The hub answers `UnknownChannel` with 404 NOT_FOUND (crates/hub/src/discord.rs
    // maps it to the rooms API's error).
}

#[tokio::test]
async fn retries_5xx_then_succeeds() {
    let sim = sim().await;
    let seed = sim.handle().seed();
    sim.handle().fail_next(CHANNEL_CREATE_ROUTE, 2, 502);
    let channel = rest(&sim)
        .create_voice_room(sf(seed.guild_id), &room("after two 502s", None), None)
        .await
        .expect("third attempt succeeds");
    assert_eq!(channel.name, "after two 502s");
    assert_eq!(requests_to(&sim, CHANNEL_CREATE_ROUTE), 3);
    assert_eq!(sim.handle().counters().rest_5xx_injected, 2);
}

#[tokio::test]
async fn surfaces_5xx_after_max_retries() {
    let sim = sim().await;
    let seed = sim.handle().seed();
    sim.handle().fail_next(GET_CHANNEL_ROUTE, 10, 503);
    let policy = RetryPolicy {
        max_retries: 2,
        ..FAST_RETRY
    };
    let result = rest_with(&sim, sim.bot_token(), policy)
        .channel(sf(seed.text_channel_id))
        .await;
    assert_eq!(result, Err(DiscordError::Server { status: 503 }));
    assert_eq!(
        requests_to(&sim, GET_CHANNEL_ROUTE),
        3,
        "one attempt and two retries"
    );

    let none = RetryPolicy {
        max_retries: 0,
        ..FAST_RETRY
    };
    let result = rest_with(&sim, sim.bot_token(), none)
        .channel(sf(seed.text_channel_id))
        .await;
    assert_eq!(result, Err(DiscordError::Server { status: 503 }));
    assert_eq!(
        requests_to(&sim, GET_CHANNEL_ROUTE),
        4,
        "max_retries 0 never retries"
    );
}

#[tokio::test]
async fn retries_network_errors_then_surfaces_them() {
    // A port nothing listens on.
    let port = coven_testkit::free_port();
    let url = Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let client = DiscordRestClient::with_retry_policy(url, &Secret::new("t"), FAST_RETRY).unwrap();
    let result = client.channel(sf(1)).await;
    assert!(
        matches!(result, Err(DiscordError::Transport(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_401_stops_every_further_call() {
    let sim = sim().await;
    let seed = sim.handle().seed();
    let client = rest_with(&sim, "wrong-token", FAST_RETRY);
    let first = client.channel(sf(seed.text_channel_id)).await;
    assert_eq!(first, Err(DiscordError::Unauthorized));
    assert_eq!(
        sim.handle().counters().rest_requests,
        1,
        "the 401 was not retried"
    );

    let clone = client.clone();
    let second = clone.guild_channels(sf(seed.guild_id)).await;
    assert_eq!(second, Err(DiscordError::Unauthorized));
    let third = client
        .create_voice_room(sf(seed.guild_id), &room("never sent", None), None)
        .await;
    assert_eq!(third, Err(DiscordError::Unauthorized));
    assert_eq!(
        sim.handle().counters().rest_requests,
        1,
        "no request reaches Discord after a 401"
    );
    let printed = format!("{:?} {}", third, third.clone().unwrap_err());
    assert!(!printed.contains("wrong-token"));
}

#[tokio::test]
async fn invalid_inputs_never_reach_discord() {
    let sim = sim().await;
    let seed = sim.handle().seed();
    let client = rest(&sim);
    let text = sf(seed.text_channel_id);
    assert!(matches!(
        client.send_message(text, "").await,
        Err(DiscordError::Validation { .. })
    ));
    assert!(matches!(
        client.send_message(text, &"x".repeat(2001)).await,
        Err(DiscordError::Validation { .. })
    ));
    let mut bad_bits = room("bits", None);
    bad_bits
        .permission_overwrites
        .push(coven_discord::PermissionOverwrite {
            id: sf(seed.guild_id),
            kind: coven_discord::OverwriteKind::Role,
            allow: 1 << 63,
            deny: 0,
        });
    assert!(matches!(
        client
            .create_voice_room(sf(seed.guild_id), &bad_bits, None)
            .await,
        Err(DiscordError::Validation { .. })
    ));
    assert!(matches!(
        client
            .create_voice_room(
                sf(seed.guild_id),
                &room("r", None),
                Some(&"why".repeat(200))
            )
            .await,
        Err(DiscordError::Validation {
            field: "reason",
            ..
        })
    ));
    assert_eq!(sim.handle().counters().rest_requests, 0);
}
