//! Every REST operation against the simulator: the request as Discord expects it
//! (method, path, body, `X-Audit-Log-Reason`) and how its response maps to domain types.

mod common;

use coven_contract::{RoomName, Secret, UserLimit};
use coven_discord::{
    ChannelKind, DiscordError, InviteOptions, NewVoiceRoom, OverwriteKind, PermissionOverwrite,
    permissions,
};
use coven_sim::RecordedRequest;
use serde_json::Value;

use common::{consent, oauth, rest, sf, sim};

fn body(request: &RecordedRequest) -> Value {
    serde_json::from_str(&request.body).expect("request body is JSON")
}

/// Checks the path of a recorded request. The simulator records the path after axum
/// stripped its `/api/v10` nest prefix, so the prefix is accepted as absent; the route
/// (and so the version) is what twilight-http always sends, `/api/v10/...`.
fn assert_path(recorded: &str, expected: &str) {
    let stripped = expected.strip_prefix("/api/v10").unwrap_or(expected);
    assert!(
        recorded == expected || recorded == stripped,
        "path {recorded}, expected {expected}"
    );
}

fn last(requests: &[RecordedRequest]) -> &RecordedRequest {
    requests.last().expect("a request was recorded")
}

#[tokio::test]
async fn create_voice_room_sends_discords_request_and_maps_the_channel() {
    let sim = sim().await;
    let seed = sim.handle().seed();
    let client = rest(&sim);
    let everyone = sf(seed.guild_id);
    let alice = sf(seed.member_user_ids[0]);
    let room = NewVoiceRoom {
        name: RoomName::try_from("Friday Commander").unwrap(),
        parent_id: Some(sf(seed.category_id)),
        user_limit: UserLimit::try_from(4).unwrap(),
        permission_overwrites: vec![
            PermissionOverwrite {
                id: everyone,
                kind: OverwriteKind::Role,
                allow: 0,
                deny: permissions::CONNECT,
            },
            PermissionOverwrite {
                id: alice,
                kind: OverwriteKind::Member,
                allow: permissions::CONNECT | permissions::SPEAK,
                deny: 0,
            },
        ],
    };
    let reason = "room für alice & bob ✨ (spell coven)";
    let channel = client
        .create_voice_room(sf(seed.guild_id), &room, Some(reason))
        .await
        .expect("room created");

    let requests = sim.handle().requests();
    let request = last(&requests);
    assert_eq!(request.method, "POST");
    assert_path(
        &request.path,
        &format!("/api/v10/guilds/{}/channels", seed.guild_id),
    );
    assert_eq!(request.audit_log_reason.as_deref(), Some(reason));
    let sent = body(request);
    assert_eq!(sent["name"], "Friday Commander");
    assert_eq!(sent["type"], 2);
    assert_eq!(sent["parent_id"], seed.category_id.to_string());
    assert_eq!(sent["user_limit"], 4);
    let overwrites = sent["permission_overwrites"]
        .as_array()
        .expect("overwrites sent");
    assert_eq!(overwrites.len(), 2);
    assert_eq!(overwrites[0]["id"], seed.guild_id.to_string());
    assert_eq!(overwrites[0]["type"], 0);
    assert_eq!(overwrites[0]["deny"], permissions::CONNECT.to_string());
    assert_eq!(overwrites[1]["type"], 1);
    assert_eq!(
        overwrites[1]["allow"],
        (permissions::CONNECT | permissions::SPEAK).to_string()
    );

    assert_eq!(channel.kind, ChannelKind::Voice);
    assert_eq!(channel.name, "Friday Commander");
    assert_eq!(channel.guild_id, Some(sf(seed.guild_id)));
    assert_eq!(channel.parent_id, Some(sf(seed.category_id)));
    assert_eq!(channel.user_limit, Some(4));
    assert_eq!(channel.permission_overwrites, room.permission_overwrites);
    let stored = sim
        .handle()
        .channel_json(channel.id.get())
        .expect("the simulator has the room");
    assert_eq!(stored["type"], 2);
    let audit = sim.handle().audit_log();
    assert_eq!(
        audit.last().map(|e| e.reason.as_deref()),
        Some(Some(reason))
    );
}

#[tokio::test]
async fn create_voice_room_without_optional_fields() {
    let sim = sim().await;
    let seed = sim.handle().seed();
    let room = NewVoiceRoom {
        name: RoomName::try_from("spell-coven-abc").unwrap(),
        parent_id: None,
        user_limit: UserLimit::UNLIMITED,
        permission_overwrites: vec![],
    };
    let channel = rest(&sim)
        .create_voice_room(sf(seed.guild_id), &room, None)
        .await
        .expect("room created");
    let requests = sim.handle().requests();
    let request = last(&requests);
    assert_eq!(request.audit_log_reason, None);
    let sent = body(request);
    assert_eq!(sent["type"], 2);
    assert_eq!(sent["user_limit"], 0);
    assert!(sent.get("parent_id").is_none_or(Value::is_null));
    assert!(sent.get("permission_overwrites").is_none());
    assert_eq!(channel.parent_id, None);
    assert_eq!(channel.user_limit, Some(0));
}

#[tokio::test]
async fn delete_channel_sends_reason_and_returns_the_channel() {
    let sim = sim().await;
    let seed = sim.handle().seed();
    let room = seed.voice_channel_ids[0];
    let deleted = rest(&sim)
        .delete_channel(sf(room), Some("game over"))
        .await
        .expect("deleted");
    let requests = sim.handle().requests();
    let request = last(&requests);
    assert_eq!(request.method, "DELETE");
    assert_path(&request.path, &format!("/api/v10/channels/{room}"));
    assert_eq!(request.audit_log_reason.as_deref(), Some("game over"));
    assert_eq!(deleted.id, sf(room));
    assert_eq!(deleted.kind, ChannelKind::Voice);
    assert!(
        sim.handle().channel_json(room).is_none(),
        "gone from the simulator"
    );
}

#[tokio::test]
async fn lists_and_gets_channels() {
    let sim = sim().await;
    let seed = sim.handle().seed();
    let client = rest(&sim);
    let channels = client
        .guild_channels(sf(seed.guild_id))
        .await
        .expect("listed");
    let request = last(&sim.handle().requests()).clone();
    assert_eq!(request.method, "GET");
    assert_path(
        &request.path,
        &format!("/api/v10/guilds/{}/channels", seed.guild_id),
    );
    assert_eq!(channels.len(), sim.handle().channel_ids().len());
    let kind_of = |id: u64| channels.iter().find(|c| c.id == sf(id)).map(|c| c.kind);
    assert_eq!(kind_of(seed.category_id), Some(ChannelKind::Category));
    assert_eq!(kind_of(seed.text_channel_id), Some(ChannelKind::Text));
    for id in &seed.voice_channel_ids {
        assert_eq!(kind_of(*id), Some(ChannelKind::Voice));
    }

    let table = client
        .channel(sf(seed.voice_channel_ids[1]))
        .await
        .expect("fetched");
    let request = last(&sim.handle().requests()).clone();
    assert_eq!(request.method, "GET");
    assert_path(
        &request.path,
        &format!("/api/v10/channels/{}", seed.voice_channel_ids[1]),
    );
    assert_eq!(table.name, "Table 2");
    assert_eq!(table.parent_id, Some(sf(seed.category_id)));
    assert_eq!(table.user_limit, Some(4));
    assert_eq!(table.guild_id, Some(sf(seed.guild_id)));
}

#[tokio::test]
async fn sends_a_message() {
    let sim = sim().await;
    let seed = sim.handle().seed();
    let text = seed.text_channel_id;
    let message = rest(&sim)
        .send_message(sf(text), "A new room is open: Table 4")
        .await
        .expect("sent");
    let requests = sim.handle().requests();
    let request = last(&requests);
    assert_eq!(request.method, "POST");
    assert_path(&request.path, &format!("/api/v10/channels/{text}/messages"));
    assert_eq!(body(request)["content"], "A new room is open: Table 4");
    assert_eq!(message.channel_id, sf(text));
    assert_eq!(message.content, "A new room is open: Table 4");
    let stored = sim.handle().messages();
    assert_eq!(
        stored.last().map(|m| (m.id, m.content.as_str())),
        Some((message.id.get(), "A new room is open: Table 4"))
    );
}

#[tokio::test]
async fn creates_an_invite() {
    let sim = sim().await;
    let seed = sim.handle().seed();
    let room = seed.voice_channel_ids[0];
    let invite = rest(&sim)
        .create_invite(
            sf(room),
            InviteOptions {
                max_age_secs: 3600,
                max_uses: 5,
            },
            Some("invite players"),
        )
        .await
        .expect("invite created");
    let requests = sim.handle().requests();
    let request = last(&requests);
    assert_eq!(request.method, "POST");
    assert_path(&request.path, &format!("/api/v10/channels/{room}/invites"));
    assert_eq!(request.audit_log_reason.as_deref(), Some("invite players"));
    let sent = body(request);
    assert_eq!(sent["max_age"], 3600);
    assert_eq!(sent["max_uses"], 5);
    assert!(!invite.code.is_empty());
    assert_eq!(invite.channel_id, Some(sf(room)));
    assert_eq!(invite.max_age_secs, Some(3600));
    assert_eq!(invite.max_uses, Some(5));
    assert_eq!(invite.url(), format!("https://discord.gg/{}", invite.code));
}

#[tokio::test]
async fn puts_and_deletes_permission_overwrites() {
    let sim = sim().await;
    let seed = sim.handle().seed();
    let client = rest(&sim);
    let room = seed.voice_channel_ids[2];
    let bob = seed.member_user_ids[1];
    let overwrite = PermissionOverwrite {
        id: sf(bob),
        kind: OverwriteKind::Member,
        allow: permissions::CONNECT | permissions::VIEW_CHANNEL,
        deny: permissions::STREAM,
    };
    client
        .put_permission_overwrite(sf(room), &overwrite, Some("bob may join"))
        .await
        .expect("overwrite put");
    let requests = sim.handle().requests();
    let request = last(&requests);
    assert_eq!(request.method, "PUT");
    assert_path(
        &request.path,
        &format!("/api/v10/channels/{room}/permissions/{bob}"),
    );
    assert_eq!(request.audit_log_reason.as_deref(), Some("bob may join"));
    let sent = body(request);
    assert_eq!(sent["type"], 1);
    assert_eq!(
        sent["allow"],
        (permissions::CONNECT | permissions::VIEW_CHANNEL).to_string()
    );
    assert_eq!(sent["deny"], permissions::STREAM.to_string());
    let channel = client.channel(sf(room)).await.expect("fetched");
    assert_eq!(channel.permission_overwrites, vec![overwrite]);

    client
        .delete_permission_overwrite(sf(room), OverwriteKind::Member, sf(bob), Some("bob left"))
        .await
        .expect("overwrite deleted");
    let requests = sim.handle().requests();
    let request = last(&requests);
    assert_eq!(request.method, "DELETE");
    assert_path(
        &request.path,
        &format!("/api/v10/channels/{room}/permissions/{bob}"),
    );
    assert_eq!(request.audit_log_reason.as_deref(), Some("bob left"));
    let channel = client.channel(sf(room)).await.expect("fetched");
    assert!(channel.permission_overwrites.is_empty());
}

#[tokio::test]
async fn adds_a_member_with_their_oauth_token_and_gets_members() {
    let sim = sim().await;
    let seed = sim.handle().seed();
    let grace = seed.outsider_user_ids[0];
    sim.handle().set_consenting_user(grace);
    let oauth = oauth(&sim);
    let login = oauth.authorize(&["identify", "guilds.join"]);
    let code = consent(&login).await;
    let grant = oauth
        .exchange_code(&code, &login.verifier)
        .await
        .expect("tokens");

    let client = rest(&sim);
    let added = client
        .add_guild_member(sf(seed.guild_id), sf(grace), &grant.access_token)
        .await
        .expect("added");
    assert!(added, "grace was not a member before");
    let requests = sim.handle().requests();
    let request = last(&requests);
    assert_eq!(request.method, "PUT");
    assert_path(
        &request.path,
        &format!("/api/v10/guilds/{}/members/{grace}", seed.guild_id),
    );
    assert_eq!(body(request)["access_token"], grant.access_token.expose());
    let again = client
        .add_guild_member(sf(seed.guild_id), sf(grace), &grant.access_token)
        .await
        .expect("already a member");
    assert!(!again, "the second add reports an existing member");

    let member = client
        .guild_member(sf(seed.guild_id), sf(grace))
        .await
        .expect("member");
    let request = last(&sim.handle().requests()).clone();
    assert_eq!(request.method, "GET");
    assert_path(
        &request.path,
        &format!("/api/v10/guilds/{}/members/{grace}", seed.guild_id),
    );
    assert_eq!(member.user_id, sf(grace));
    assert_eq!(member.username, "grace");
    assert_eq!(
        member.display_name(),
        member
            .nick
            .as_deref()
            .or(member.global_name.as_deref())
            .unwrap_or("grace")
    );

    let heidi = seed.outsider_user_ids[1];
    let refused = client
        .add_guild_member(sf(seed.guild_id), sf(heidi), &Secret::new("not-a-token"))
        .await;
    assert!(
        matches!(
            refused,
            Err(DiscordError::Forbidden {
                code: Some(50025),
                ..
            })
        ),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_banned_user_or_a_full_guild_is_refused_with_a_typed_error() {
    let sim = sim().await;
    let seed = sim.handle().seed();
    let [grace, heidi] = [seed.outsider_user_ids[0], seed.outsider_user_ids[1]];
    let oauth = oauth(&sim);
    let client = rest(&sim);
    let grant_for = async |user: u64| {
        sim.handle().set_consenting_user(user);
        let login = oauth.authorize(&["identify", "guilds.join"]);
        let code = consent(&login).await;
        oauth
            .exchange_code(&code, &login.verifier)
            .await
            .expect("tokens")
            .access_token
    };
    let grace_token = grant_for(grace).await;
    let heidi_token = grant_for(heidi).await;

    sim.handle().ban_user(grace).unwrap();
    let banned = client
        .add_guild_member(sf(seed.guild_id), sf(grace), &grace_token)
        .await;
    assert_eq!(banned, Err(DiscordError::BannedFromGuild));

    sim.handle().set_guild_full(true);
    let full = client
        .add_guild_member(sf(seed.guild_id), sf(heidi), &heidi_token)
        .await;
    assert_eq!(full, Err(DiscordError::GuildFull));
    sim.handle().set_guild_full(false);
    let added = client
        .add_guild_member(sf(seed.guild_id), sf(heidi), &heidi_token)
        .await;
    assert_eq!(added, Ok(true));
}

#[tokio::test]
async fn the_requests_carry_the_bot_token_only_in_the_header() {
    let sim = sim().await;
    let seed = sim.handle().seed();
    rest(&sim)
        .channel(sf(seed.text_channel_id))
        .await
        .expect("authorised with the bot token");
    let requests = sim.handle().requests();
    assert!(
        requests
            .iter()
            .all(|r| !r.body.contains(sim.bot_token()) && !r.path.contains(sim.bot_token()))
    );
}
