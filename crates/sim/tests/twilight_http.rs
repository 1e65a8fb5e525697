//! twilight-http 0.18 against the simulator's REST API: every response deserialises, its rate
//! limiter learns and honours the buckets, errors map to Discord's JSON codes, faults inject.

mod common;

use std::time::{Duration, Instant};

use common::{crypto, fast_config};
use coven_sim::{BucketConfig, CHANNEL_CREATE_ROUTE, SimConfig, Simulator};
use twilight_http::Client;
use twilight_http::api_error::ApiError;
use twilight_http::error::ErrorType;
use twilight_http::request::AuditLogReason as _;
use twilight_model::channel::ChannelType;
use twilight_model::channel::permission_overwrite::{PermissionOverwrite, PermissionOverwriteType};
use twilight_model::guild::Permissions;
use twilight_model::http::permission_overwrite::{
    PermissionOverwrite as HttpOverwrite, PermissionOverwriteType as HttpOverwriteType,
};
use twilight_model::id::Id;

fn client(sim: &Simulator, token: &str) -> Client {
    crypto();
    Client::builder()
        .token(token.to_owned())
        .proxy(sim.addr().to_string(), true)
        .build()
}

fn api_code(e: &twilight_http::Error) -> Option<(u16, u64)> {
    match e.kind() {
        ErrorType::Response {
            error: ApiError::General(g),
            status,
            ..
        } => Some((status.get(), g.code)),
        _ => None,
    }
}

#[tokio::test]
async fn rate_limiter_learns_buckets_and_avoids_429s() {
    let config = SimConfig {
        channel_create_bucket: BucketConfig::new(5, Duration::from_secs(1)),
        ..fast_config()
    };
    let sim = Simulator::start(config).await.unwrap();
    let http = client(&sim, sim.bot_token());
    let guild = Id::new(sim.guild_id());
    let started = Instant::now();
    let names: Vec<String> = (0..15).map(|i| format!("room-{i}")).collect();
    let creates = names.iter().map(|n| {
        let http = &http;
        async move {
            http.create_guild_channel(guild, n)
                .kind(ChannelType::GuildVoice)
                .user_limit(4)
                .await
                .map(|_| ())
        }
    });
    for r in futures_util::future::join_all(creates).await {
        r.unwrap();
    }
    let elapsed = started.elapsed();
    let c = sim.handle().counters();
    assert_eq!(c.rest_429s, 0, "twilight's limiter must avoid every 429");
    assert!(
        elapsed >= Duration::from_millis(1900),
        "15 creations at 5/s need two resets, took {elapsed:?}"
    );
    let creations = sim
        .handle()
        .requests()
        .iter()
        .filter(|r| r.route == CHANNEL_CREATE_ROUTE)
        .count();
    assert_eq!(creations, 15);
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one end-to-end scenario, read top to bottom
async fn responses_deserialise_into_twilight_models() {
    let sim = Simulator::start(fast_config()).await.unwrap();
    let h = sim.handle();
    let seed = h.seed();
    let http = client(&sim, sim.bot_token());
    let guild = Id::new(sim.guild_id());

    let me = http.current_user().await.unwrap().model().await.unwrap();
    assert_eq!(me.id.get(), seed.bot_user_id);
    assert!(me.bot);
    let gw = http
        .gateway()
        .authed()
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(gw.url, sim.gateway_url());
    let channels = http
        .guild_channels(guild)
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert!(
        channels
            .iter()
            .filter(|c| c.kind == ChannelType::GuildVoice)
            .count()
            >= 3
    );

    let member = Id::new(seed.member_user_ids[0]);
    let overwrite = PermissionOverwrite {
        allow: Permissions::CONNECT | Permissions::SPEAK,
        deny: Permissions::empty(),
        id: member.cast(),
        kind: PermissionOverwriteType::Member,
    };
    let created = http
        .create_guild_channel(guild, "Spell Coven table")
        .kind(ChannelType::GuildVoice)
        .parent_id(Id::new(seed.category_id))
        .user_limit(4)
        .permission_overwrites(std::slice::from_ref(&overwrite))
        .reason("créer une salle: 100% magic")
        .await
        .unwrap();
    assert_eq!(created.status().get(), 201);
    let created = created.model().await.unwrap();
    assert_eq!(created.user_limit, Some(4));
    assert_eq!(created.parent_id.map(Id::get), Some(seed.category_id));
    assert_eq!(
        created.permission_overwrites.as_deref(),
        Some(std::slice::from_ref(&overwrite))
    );
    let audit = h.audit_log();
    assert_eq!(
        audit.last().and_then(|a| a.reason.as_deref()),
        Some("créer une salle: 100% magic")
    );
    let recorded = h
        .requests()
        .into_iter()
        .rfind(|r| r.route == CHANNEL_CREATE_ROUTE)
        .unwrap();
    assert_eq!(
        recorded.audit_log_reason.as_deref(),
        Some("créer une salle: 100% magic")
    );
    assert!(recorded.body.contains("\"user_limit\":4"));

    let got = http
        .channel(created.id)
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(got.name.as_deref(), Some("Spell Coven table"));
    let updated = http
        .update_channel(created.id)
        .name("renamed")
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(updated.name.as_deref(), Some("renamed"));
    let role_overwrite = PermissionOverwrite {
        allow: Permissions::empty(),
        deny: Permissions::CONNECT,
        id: guild.cast(),
        kind: PermissionOverwriteType::Role,
    };
    let http_role = HttpOverwrite {
        allow: None,
        deny: Some(Permissions::CONNECT),
        id: guild.cast(),
        kind: HttpOverwriteType::Role,
    };
    assert_eq!(
        http.update_channel_permission(created.id, &http_role)
            .await
            .unwrap()
            .status()
            .get(),
        204
    );
    assert_eq!(
        http.delete_channel_permission(created.id)
            .member(member)
            .await
            .unwrap()
            .status()
            .get(),
        204
    );
    let after = http
        .channel(created.id)
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(
        after.permission_overwrites.as_deref(),
        Some(std::slice::from_ref(&role_overwrite))
    );

    let text = Id::new(seed.text_channel_id);
    let msg = http
        .create_message(text)
        .content("gg")
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(msg.content, "gg");
    assert_eq!(h.messages().len(), 1);
    let invite = http
        .create_invite(created.id)
        .max_age(600)
        .max_uses(5)
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(invite.max_uses, Some(5));
    let m = http
        .guild_member(guild, member)
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(m.user.id, member);

    let deleted = http
        .delete_channel(created.id)
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(deleted.id, created.id);
    let err = http.channel(created.id).await.unwrap_err();
    assert_eq!(api_code(&err), Some((404, 10003)));
}

#[tokio::test]
async fn errors_and_injected_faults() {
    let sim = Simulator::start(fast_config()).await.unwrap();
    let h = sim.handle();
    let seed = h.seed();
    let http = client(&sim, sim.bot_token());
    let guild = Id::new(sim.guild_id());

    let bad = client(&sim, "wrong-token");
    let err = bad.current_user().await.unwrap_err();
    assert_eq!(api_code(&err), Some((401, 0)), "{err:?}");

    h.forbid_channel(seed.voice_channel_ids[2], true);
    let err = http
        .delete_channel(Id::new(seed.voice_channel_ids[2]))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), Some((403, 50013)));
    h.forbid_channel(seed.voice_channel_ids[2], false);

    h.fail_next(CHANNEL_CREATE_ROUTE, 2, 502);
    for _ in 0..2 {
        let err = http.create_guild_channel(guild, "x").await.unwrap_err();
        assert!(
            matches!(err.kind(), ErrorType::Response { status, .. } if status.get() == 502),
            "{err:?}"
        );
    }
    http.create_guild_channel(guild, "x").await.unwrap();
    assert_eq!(h.counters().rest_5xx_injected, 2);

    h.shared_429_next("GET /channels/{channel_id}", 1, 1);
    // twilight-http waits out a shared 429 (Retry-After) and retries by itself.
    let started = Instant::now();
    http.channel(Id::new(seed.text_channel_id)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(h.counters().rest_429s, 1);
    let gets = h
        .requests()
        .iter()
        .filter(|r| r.route == "GET /channels/{channel_id}")
        .count();
    assert_eq!(gets, 2);
}

/// Runs the OAuth2 code flow (no PKCE) for the consenting user and returns the access token.
async fn access_token(sim: &Simulator, scope: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let redirect = "http://127.0.0.1:9/cb";
    let r = http
        .get(format!("{}/oauth2/authorize", sim.api_url()))
        .query(&[
            ("response_type", "code"),
            ("client_id", &sim.oauth_client_id()),
            ("redirect_uri", redirect),
            ("scope", scope),
        ])
        .send()
        .await
        .unwrap();
    let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let secret = sim.config().oauth.client_secret.clone();
    let body: serde_json::Value = http
        .post(format!("{}/api/v10/oauth2/token", sim.api_url()))
        .basic_auth(sim.oauth_client_id(), Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn add_guild_member_and_unauthenticated_gateway() {
    let sim = Simulator::start(fast_config()).await.unwrap();
    let h = sim.handle();
    let grace = h.seed().outsider_user_ids[0];
    h.set_consenting_user(grace);
    let token = access_token(&sim, "identify guilds.join").await;
    let http = client(&sim, sim.bot_token());
    let guild = Id::new(sim.guild_id());
    let added = http
        .add_guild_member(guild, Id::new(grace), &token)
        .await
        .unwrap();
    assert_eq!(added.status().get(), 201);
    let member = added.model().await.unwrap();
    assert_eq!(member.user.map(|u| u.id.get()), Some(grace));
    let again = http
        .add_guild_member(guild, Id::new(grace), &token)
        .await
        .unwrap();
    assert_eq!(again.status().get(), 204);
    let gateway = http.gateway().await.unwrap().model().await.unwrap();
    assert_eq!(gateway.url, sim.gateway_url());
}
