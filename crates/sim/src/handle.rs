//! `SimHandle`: the in-process control surface for tests — simulated users, world changes,
//! gateway faults, REST fault injection, recorded requests, counters and waiting on them.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::broadcast;

use crate::counters::Counters;
use crate::gateway::{Fault, Out};
use crate::rest::{InjectedResponse, RecordedRequest};
use crate::shapes;
use crate::state::{AuditEntry, Shared};
use crate::world::{Channel, Dispatch, Overwrite, SeedIds, SentMessage, VoiceFlags, WorldError};

/// A condition was not met before the timeout.
#[derive(Debug, thiserror::Error)]
#[error("condition not met within {timeout:?}; counters: {last:?}")]
pub struct WaitTimeout {
    /// The timeout that elapsed.
    pub timeout: Duration,
    /// The counters when it elapsed.
    pub last: Counters,
}

/// Cheap, cloneable control of a running simulator.
#[derive(Clone)]
pub struct SimHandle {
    pub(crate) shared: Arc<Shared>,
}

impl SimHandle {
    /// The seeded ids (guild, bot, category, voice and text channels, members, outsiders).
    pub fn seed(&self) -> SeedIds {
        self.shared.core().world.seed.clone()
    }

    /// The guild id.
    pub fn guild_id(&self) -> u64 {
        self.shared.core().world.guild_id
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        self.shared.counters.borrow().clone()
    }

    /// Waits until `cond` holds for the counters, or fails after `timeout`.
    pub async fn wait_for(
        &self,
        mut cond: impl FnMut(&Counters) -> bool,
        timeout: Duration,
    ) -> Result<Counters, WaitTimeout> {
        let mut rx = self.shared.counters.subscribe();
        let result = tokio::time::timeout(timeout, rx.wait_for(|c| cond(c))).await;
        match result {
            Ok(Ok(c)) => Ok(c.clone()),
            _ => Err(WaitTimeout {
                timeout,
                last: self.counters(),
            }),
        }
    }

    /// Every dispatch the world produces from now on (before intent filtering).
    pub fn subscribe(&self) -> broadcast::Receiver<Dispatch> {
        self.shared.events.subscribe()
    }

    /// A simulated user joins a voice channel (or moves there): `VOICE_STATE_UPDATE`.
    pub fn user_join(&self, user_id: u64, channel_id: u64) -> Result<(), WorldError> {
        self.shared.mutate(|w| {
            Ok((
                (),
                w.voice_connect(user_id, channel_id, None, VoiceFlags::default())?,
            ))
        })
    }

    /// A simulated user in voice moves to another channel: one `VOICE_STATE_UPDATE`.
    pub fn user_move(&self, user_id: u64, channel_id: u64) -> Result<(), WorldError> {
        self.shared.mutate(|w| {
            if !w.voice_states.contains_key(&user_id) {
                return Err(WorldError::NotInVoice(user_id));
            }
            Ok((
                (),
                w.voice_connect(user_id, channel_id, None, VoiceFlags::default())?,
            ))
        })
    }

    /// A simulated user leaves voice: `VOICE_STATE_UPDATE` with `channel_id: null`.
    pub fn user_leave(&self, user_id: u64) -> Result<(), WorldError> {
        self.shared
            .mutate(|w| Ok(((), w.voice_disconnect(user_id)?)))
    }

    /// Changes mute/deafen (self or server), video or streaming of a user in voice.
    pub fn user_set_flags(&self, user_id: u64, flags: VoiceFlags) -> Result<(), WorldError> {
        self.shared
            .mutate(|w| Ok(((), w.voice_flags(user_id, flags)?)))
    }

    /// Creates a new user and adds them to the guild (`GUILD_MEMBER_ADD`); returns the id.
    pub fn add_user(&self, username: &str) -> u64 {
        self.shared
            .mutate(|w| {
                let id = w.create_user(username);
                Ok((id, w.add_member(id, None)?.unwrap_or_default()))
            })
            .unwrap_or_default()
    }

    /// The voice channel a user is in.
    pub fn voice_channel_of(&self, user_id: u64) -> Option<u64> {
        self.shared
            .core()
            .world
            .voice_states
            .get(&user_id)
            .map(|v| v.channel_id)
    }

    /// Creates a channel as if someone did it in the client: `CHANNEL_CREATE`.
    pub fn create_channel(
        &self,
        name: &str,
        kind: u8,
        parent_id: Option<u64>,
    ) -> Result<u64, WorldError> {
        let channel = Channel::new(0, kind, name, parent_id);
        self.shared.mutate(|w| w.create_channel(channel))
    }

    /// Deletes a channel: `CHANNEL_DELETE` (and voice leaves of its users).
    pub fn delete_channel(&self, channel_id: u64) -> Result<(), WorldError> {
        self.shared
            .mutate(|w| Ok(((), w.delete_channel(channel_id)?.1)))
    }

    /// A channel in Discord's JSON shape.
    pub fn channel_json(&self, channel_id: u64) -> Option<Value> {
        let core = self.shared.core();
        core.world
            .channels
            .get(&channel_id)
            .map(|c| shapes::channel(&core.world, c))
    }

    /// Ids of every channel.
    pub fn channel_ids(&self) -> Vec<u64> {
        self.shared.core().world.channels.keys().copied().collect()
    }

    /// Messages sent through REST.
    pub fn messages(&self) -> Vec<SentMessage> {
        self.shared.core().world.messages.clone()
    }

    /// Ids of live gateway sessions (attached or within the resume window).
    pub fn session_ids(&self) -> Vec<String> {
        self.shared.core().sessions.keys().cloned().collect()
    }

    /// Injects a fault into every open gateway connection; returns how many were reached.
    /// `Unreachable`, `CloseAfterHello` and `Reachable` also decide what happens to the
    /// connections opened afterwards.
    pub fn inject(&self, fault: &Fault) -> usize {
        let mut core = self.shared.core();
        core.admission = core.admission.after(fault);
        core.connections
            .values()
            .filter(|tx| tx.send(Out::Fault(*fault)).is_ok())
            .count()
    }

    /// Sends op 7 RECONNECT.
    pub fn reconnect(&self) -> usize {
        self.inject(&Fault::Reconnect)
    }

    /// Sends op 9 INVALID SESSION with `d: resumable`.
    pub fn invalid_session(&self, resumable: bool) -> usize {
        self.inject(&Fault::InvalidSession { resumable })
    }

    /// Closes with a code.
    pub fn close(&self, code: u16) -> usize {
        self.inject(&Fault::Close { code })
    }

    /// Drops TCP without a close frame.
    pub fn drop_tcp(&self) -> usize {
        self.inject(&Fault::DropTcp)
    }

    /// Makes the current connections zombies (nothing is sent on them any more).
    pub fn zombie(&self) -> usize {
        self.inject(&Fault::Zombie)
    }

    /// Delays every following frame on the current connections.
    pub fn delay_frames(&self, delay: Duration) -> usize {
        self.inject(&Fault::delay(delay))
    }

    /// Sends op 1 (heartbeat request).
    pub fn request_heartbeat(&self) -> usize {
        self.inject(&Fault::RequestHeartbeat)
    }

    /// Queues responses to inject for a route key such as `POST /guilds/{guild_id}/channels`.
    pub fn inject_rest(&self, route: &str, response: &InjectedResponse, count: u32) {
        let mut rest = self.shared.rest();
        let q = rest.injected.entry(route.to_owned()).or_default();
        for _ in 0..count {
            q.push_back(response.clone());
        }
    }

    /// The next `count` responses of a route fail with `status` (e.g. 500, 502).
    pub fn fail_next(&self, route: &str, count: u32, status: u16) {
        self.inject_rest(route, &InjectedResponse::Status { status }, count);
    }

    /// The next `count` responses of a route are shared-scope 429s.
    pub fn shared_429_next(&self, route: &str, count: u32, retry_after_secs: u16) {
        self.inject_rest(
            route,
            &InjectedResponse::Shared429 { retry_after_secs },
            count,
        );
    }

    /// REST requests received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.rest().recorded.clone()
    }

    /// Forgets recorded requests.
    pub fn clear_requests(&self) {
        self.shared.rest().recorded.clear();
    }

    /// Audit-log entries (with decoded `X-Audit-Log-Reason`).
    pub fn audit_log(&self) -> Vec<AuditEntry> {
        self.shared.core().audit_log.clone()
    }

    /// Makes every managing REST call answer 50013 Missing Permissions (or stops it).
    pub fn forbid_all(&self, forbid: bool) {
        self.shared.rest().forbid_all = forbid;
    }

    /// Makes managing one channel answer 50013 Missing Permissions (or stops it).
    pub fn forbid_channel(&self, channel_id: u64, forbid: bool) {
        let mut rest = self.shared.rest();
        if forbid {
            rest.forbidden_channels.insert(channel_id);
        } else {
            rest.forbidden_channels.remove(&channel_id);
        }
    }

    /// Denies the next `count` OAuth2 authorizations with `error=access_denied`.
    pub fn oauth_deny_next(&self, count: u32) {
        self.shared.oauth().deny_next = count;
    }

    /// Sets the user who consents at `/oauth2/authorize`.
    pub fn set_consenting_user(&self, user_id: u64) {
        self.shared.oauth().consenting_user = Some(user_id);
    }

    /// Creates a channel hidden from `@everyone` (its overwrite for the role whose id
    /// is the guild id denies `VIEW_CHANNEL`), as a staff channel made in the client:
    /// one `CHANNEL_CREATE` carrying that overwrite.
    pub fn create_hidden_channel(
        &self,
        name: &str,
        kind: u8,
        parent_id: Option<u64>,
    ) -> Result<u64, WorldError> {
        let mut channel = Channel::new(0, kind, name, parent_id);
        channel.permission_overwrites.push(Overwrite {
            id: self.guild_id(),
            kind: OVERWRITE_ROLE,
            allow: 0,
            deny: VIEW_CHANNEL,
        });
        self.shared.mutate(|w| w.create_channel(channel))
    }

    /// Sets (adds or replaces) a channel's permission overwrite for `target` (a role
    /// when `kind` is 0, a member when 1), as `PUT /channels/{c}/permissions/{target}`
    /// does: `CHANNEL_UPDATE` with the channel's overwrites.
    pub fn set_overwrite(
        &self,
        channel_id: u64,
        target: u64,
        kind: u8,
        allow: u64,
        deny: u64,
    ) -> Result<(), WorldError> {
        self.shared.mutate(|w| {
            let channel = w
                .channels
                .get_mut(&channel_id)
                .ok_or(WorldError::UnknownChannel(channel_id))?;
            let overwrite = Overwrite {
                id: target,
                kind,
                allow,
                deny,
            };
            match channel
                .permission_overwrites
                .iter_mut()
                .find(|o| o.id == target)
            {
                Some(existing) => *existing = overwrite,
                None => channel.permission_overwrites.push(overwrite),
            }
            Ok(((), w.channel_updated(channel_id)?))
        })
    }

    /// Removes a channel's overwrite for `target`, as
    /// `DELETE /channels/{c}/permissions/{target}` does: `CHANNEL_UPDATE`.
    pub fn clear_overwrite(&self, channel_id: u64, target: u64) -> Result<(), WorldError> {
        self.shared.mutate(|w| {
            w.channels
                .get_mut(&channel_id)
                .ok_or(WorldError::UnknownChannel(channel_id))?
                .permission_overwrites
                .retain(|o| o.id != target);
            Ok(((), w.channel_updated(channel_id)?))
        })
    }

    /// Hides a channel from `@everyone` (an overwrite for the guild id denying
    /// `VIEW_CHANNEL`): `CHANNEL_UPDATE`.
    pub fn hide_channel(&self, channel_id: u64) -> Result<(), WorldError> {
        self.set_overwrite(channel_id, self.guild_id(), OVERWRITE_ROLE, 0, VIEW_CHANNEL)
    }

    /// Shows a channel to `@everyone` again (its `@everyone` overwrite removed):
    /// `CHANNEL_UPDATE`.
    pub fn show_channel(&self, channel_id: u64) -> Result<(), WorldError> {
        self.clear_overwrite(channel_id, self.guild_id())
    }

    /// Creates a guild role granting `permissions` (Discord's bits, e.g. `1 << 4` for
    /// `MANAGE_CHANNELS`) and returns its id: `GUILD_ROLE_CREATE`.
    pub fn create_role(&self, name: &str, permissions: u64) -> u64 {
        self.shared
            .mutate(|w| Ok(w.create_role(name, permissions)))
            .unwrap_or_else(|_| unreachable!("creating a role cannot fail"))
    }

    /// Gives member `user_id` the role `role_id`: `GUILD_MEMBER_UPDATE`.
    pub fn grant_role(&self, user_id: u64, role_id: u64) -> Result<(), WorldError> {
        self.shared
            .mutate(|w| Ok(((), w.grant_role(user_id, role_id)?)))
    }

    /// The guild owner's user id (the seeded owner is the first member, alice).
    pub fn owner_id(&self) -> u64 {
        self.shared.core().world.owner_id
    }
}

/// Guild membership refusals (issue 13): bans and a member cap, answered by
/// `PUT /guilds/{guild_id}/members/{user_id}` with Discord's codes.
impl SimHandle {
    /// Bans a user: a member leaves voice and the guild (`GUILD_MEMBER_REMOVE`), and
    /// adding them answers 403 `{"code": 40007, "message": "The user is banned from this guild"}`.
    pub fn ban_user(&self, user_id: u64) -> Result<(), WorldError> {
        self.shared.mutate(|w| Ok(((), w.ban(user_id)?)))
    }

    /// Lifts a ban (as Discord's `DELETE /guilds/{guild_id}/bans/{user_id}`).
    pub fn unban_user(&self, user_id: u64) {
        self.shared.core().world.banned.remove(&user_id);
    }

    /// At most `cap` members (bot included); beyond, adding a member answers 400
    /// `{"code": 30019, "message": "Maximum number of server members reached"}`.
    /// `None` lifts the cap. Members already in stay.
    pub fn set_member_cap(&self, cap: Option<usize>) {
        self.shared.core().world.member_cap = cap;
    }

    /// Makes the guild full at its current member count (or lifts the cap).
    pub fn set_guild_full(&self, full: bool) {
        let mut core = self.shared.core();
        let members = core.world.members.len();
        core.world.member_cap = full.then_some(members);
    }
}

/// Discord's `VIEW_CHANNEL` permission bit.
const VIEW_CHANNEL: u64 = 1 << 10;
/// An overwrite's `type` for a role.
const OVERWRITE_ROLE: u8 = 0;
