//! The simulated Discord world: one guild with its channels, members, users and voice states.
//! Every mutation returns the dispatches Discord would send for it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::shapes;
use crate::snowflake::{SEED_TIME_MS, Snowflakes, now_ms};

/// Channel type numbers as Discord defines them.
pub mod channel_type {
    /// `GUILD_TEXT`.
    pub const TEXT: u8 = 0;
    /// `GUILD_VOICE`.
    pub const VOICE: u8 = 2;
    /// `GUILD_CATEGORY`.
    pub const CATEGORY: u8 = 4;
    /// `GUILD_STAGE_VOICE`.
    pub const STAGE: u8 = 13;
}

/// A gateway dispatch produced by a change in the world.
#[derive(Clone, Debug, Serialize)]
pub struct Dispatch {
    /// The event name (`t`), e.g. `CHANNEL_CREATE`.
    pub event: String,
    /// The event data (`d`), in Discord's exact shape.
    pub data: Value,
    /// When set, only this gateway session receives the dispatch (e.g. `VOICE_SERVER_UPDATE`).
    #[serde(skip)]
    pub only_session: Option<String>,
}

impl Dispatch {
    /// A dispatch for every session whose intents allow it.
    pub fn new(event: &str, data: Value) -> Self {
        Self {
            event: event.to_owned(),
            data,
            only_session: None,
        }
    }
}

/// A Discord user.
#[derive(Clone, Debug, Serialize)]
pub struct User {
    /// Snowflake.
    pub id: u64,
    /// Unique username.
    pub username: String,
    /// Display name.
    pub global_name: Option<String>,
    /// Whether this is a bot account.
    pub bot: bool,
    /// Email, returned with the `email` OAuth scope.
    pub email: Option<String>,
}

/// A guild member.
#[derive(Clone, Debug, Serialize)]
pub struct Member {
    /// The member's user id.
    pub user_id: u64,
    /// Guild nickname.
    pub nick: Option<String>,
    /// Role ids.
    pub roles: Vec<u64>,
    /// Join time, Unix ms.
    pub joined_at_ms: u64,
    /// Server mute.
    pub mute: bool,
    /// Server deafen.
    pub deaf: bool,
}

/// A guild role other than `@everyone` (whose id is the guild id, see
/// `shapes::everyone_role`): a name and the permissions it grants guild-wide.
#[derive(Clone, Debug, Serialize)]
pub struct Role {
    /// The role id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Discord permission bits it grants.
    pub permissions: u64,
    /// Its position (1 and up; `@everyone` is 0).
    pub position: i64,
}

/// A channel permission overwrite.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Overwrite {
    /// Role or member id.
    pub id: u64,
    /// 0 = role, 1 = member.
    pub kind: u8,
    /// Allowed permission bits.
    pub allow: u64,
    /// Denied permission bits.
    pub deny: u64,
}

/// A guild channel.
#[derive(Clone, Debug, Serialize)]
pub struct Channel {
    /// Snowflake.
    pub id: u64,
    /// Channel type (see [`channel_type`]).
    pub kind: u8,
    /// Name.
    pub name: String,
    /// Sorting position.
    pub position: i64,
    /// Parent category.
    pub parent_id: Option<u64>,
    /// Voice user limit (0 = unlimited).
    pub user_limit: u32,
    /// Voice bitrate.
    pub bitrate: u32,
    /// Text topic.
    pub topic: Option<String>,
    /// Age-restricted.
    pub nsfw: bool,
    /// Slowmode seconds.
    pub rate_limit_per_user: u32,
    /// Voice region override.
    pub rtc_region: Option<String>,
    /// Permission overwrites.
    pub permission_overwrites: Vec<Overwrite>,
    /// Last message id.
    pub last_message_id: Option<u64>,
}

impl Channel {
    /// A new channel with Discord's defaults for its `kind` (voice and stage
    /// channels get 64 kbps; no limit, topic, slowmode, region or overwrites).
    /// `id` 0 lets [`World::create_channel`] assign one.
    pub fn new(id: u64, kind: u8, name: &str, parent_id: Option<u64>) -> Self {
        let voice = matches!(kind, channel_type::VOICE | channel_type::STAGE);
        Self {
            id,
            kind,
            name: name.to_owned(),
            position: 0,
            parent_id,
            user_limit: 0,
            bitrate: if voice { 64_000 } else { 0 },
            topic: None,
            nsfw: false,
            rate_limit_per_user: 0,
            rtc_region: None,
            permission_overwrites: Vec::new(),
            last_message_id: None,
        }
    }

    /// Whether users can connect to it.
    pub fn is_voice(&self) -> bool {
        matches!(self.kind, channel_type::VOICE | channel_type::STAGE)
    }
}

/// A user's voice state in the guild.
#[derive(Clone, Debug, Serialize)]
#[allow(clippy::struct_excessive_bools)] // Discord's voice state is a set of flags.
pub struct VoiceState {
    /// The user.
    pub user_id: u64,
    /// The channel the user is in.
    pub channel_id: u64,
    /// The user's gateway session id.
    pub session_id: String,
    /// Self-muted.
    pub self_mute: bool,
    /// Self-deafened.
    pub self_deaf: bool,
    /// Server-muted.
    pub mute: bool,
    /// Server-deafened.
    pub deaf: bool,
    /// Camera on.
    pub self_video: bool,
    /// Go Live streaming.
    pub self_stream: bool,
    /// Suppressed (stage channels).
    pub suppress: bool,
}

/// A partial change of voice flags; `None` leaves a flag unchanged.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct VoiceFlags {
    /// Self mute.
    pub self_mute: Option<bool>,
    /// Self deafen.
    pub self_deaf: Option<bool>,
    /// Server mute.
    pub mute: Option<bool>,
    /// Server deafen.
    pub deaf: Option<bool>,
    /// Camera.
    pub self_video: Option<bool>,
    /// Go Live.
    pub self_stream: Option<bool>,
}

/// A sent message, kept for assertions.
#[derive(Clone, Debug, Serialize)]
pub struct SentMessage {
    /// Message id.
    pub id: u64,
    /// Channel id.
    pub channel_id: u64,
    /// Author (the bot).
    pub author_id: u64,
    /// Content.
    pub content: String,
    /// The full JSON Discord returned.
    pub json: Value,
}

/// Errors of world mutations.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WorldError {
    /// No such user.
    #[error("unknown user {0}")]
    UnknownUser(u64),
    /// No such channel.
    #[error("unknown channel {0}")]
    UnknownChannel(u64),
    /// The user is not a guild member.
    #[error("user {0} is not a member of the guild")]
    NotMember(u64),
    /// The channel is not a voice channel.
    #[error("channel {0} is not a voice channel")]
    NotVoice(u64),
    /// The user is not in a voice channel.
    #[error("user {0} is not in a voice channel")]
    NotInVoice(u64),
    /// A category cannot be the parent.
    #[error("invalid parent {0}")]
    InvalidParent(u64),
    /// The user is banned from the guild (Discord's 40007).
    #[error("user {0} is banned from the guild")]
    Banned(u64),
    /// The guild has as many members as it may (Discord's 30019).
    #[error("the guild has reached its maximum number of members")]
    GuildFull,
    /// No such role.
    #[error("unknown role {0}")]
    UnknownRole(u64),
}

/// Ids of the seeded guild, for tests and the demo.
#[derive(Clone, Debug, Serialize)]
pub struct SeedIds {
    /// The guild.
    #[serde(serialize_with = "crate::snowflake::as_string::id")]
    pub guild_id: u64,
    /// The bot's user id (also the application id).
    #[serde(serialize_with = "crate::snowflake::as_string::id")]
    pub bot_user_id: u64,
    /// The "Rooms" category.
    #[serde(serialize_with = "crate::snowflake::as_string::id")]
    pub category_id: u64,
    /// The voice channels ("Table 1", "Table 2", "Table 3").
    #[serde(serialize_with = "crate::snowflake::as_string::ids")]
    pub voice_channel_ids: Vec<u64>,
    /// The "general" text channel.
    #[serde(serialize_with = "crate::snowflake::as_string::id")]
    pub text_channel_id: u64,
    /// The human members, in seed order (alice, bob, carol, dave, erin, frank).
    #[serde(serialize_with = "crate::snowflake::as_string::ids")]
    pub member_user_ids: Vec<u64>,
    /// Users that exist but are not members (grace, heidi): for OAuth guild joins.
    #[serde(serialize_with = "crate::snowflake::as_string::ids")]
    pub outsider_user_ids: Vec<u64>,
}

/// The simulated world.
#[derive(Debug)]
pub struct World {
    /// Id generator.
    pub ids: Snowflakes,
    /// Guild id.
    pub guild_id: u64,
    /// Guild name.
    pub guild_name: String,
    /// Owner user id.
    pub owner_id: u64,
    /// Every user known to Discord here.
    pub users: BTreeMap<u64, User>,
    /// Guild members by user id.
    pub members: BTreeMap<u64, Member>,
    /// Guild channels by id.
    pub channels: BTreeMap<u64, Channel>,
    /// Voice states by user id.
    pub voice_states: BTreeMap<u64, VoiceState>,
    /// Sent messages.
    pub messages: Vec<SentMessage>,
    /// Seeded ids.
    pub seed: SeedIds,
    /// Users banned from the guild: they cannot be added (see [`World::ban`]).
    pub banned: BTreeSet<u64>,
    /// At most this many members (bot included); `None`: no limit.
    pub member_cap: Option<usize>,
    /// Roles other than `@everyone`, by id.
    pub roles: BTreeMap<u64, Role>,
}

fn user(id: u64, name: &str, bot: bool) -> User {
    let mut cap = name.to_owned();
    if let Some(first) = cap.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    User {
        id,
        username: name.to_lowercase().replace(' ', "_"),
        global_name: Some(cap),
        bot,
        email: if bot {
            None
        } else {
            Some(format!("{name}@example.invalid"))
        },
    }
}

impl World {
    /// The seeded world: guild "Spell Coven" with a category, three voice channels,
    /// a text channel, six human members plus the bot, and alice and bob in "Table 1".
    #[allow(clippy::too_many_lines)] // one linear description of the seed
    pub fn seeded() -> Self {
        let mut ids = Snowflakes::new();
        let mut t = SEED_TIME_MS;
        let mut next = || {
            t += 1000;
            t
        };
        let guild_id = ids.at(next());
        let bot_user_id = ids.at(next());
        let owner_id = ids.at(next());
        let mut users = BTreeMap::new();
        let mut members = BTreeMap::new();
        users.insert(bot_user_id, user(bot_user_id, "Coven Bot", true));
        let names = ["alice", "bob", "carol", "dave", "erin", "frank"];
        let mut member_user_ids = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let id = if i == 0 { owner_id } else { ids.at(next()) };
            users.insert(id, user(id, name, false));
            member_user_ids.push(id);
        }
        let mut outsider_user_ids = Vec::new();
        for name in ["grace", "heidi"] {
            let id = ids.at(next());
            users.insert(id, user(id, name, false));
            outsider_user_ids.push(id);
        }
        for &id in member_user_ids.iter().chain(std::iter::once(&bot_user_id)) {
            members.insert(
                id,
                Member {
                    user_id: id,
                    nick: None,
                    roles: vec![],
                    joined_at_ms: SEED_TIME_MS,
                    mute: false,
                    deaf: false,
                },
            );
        }
        let mut channels = BTreeMap::new();
        let category_id = ids.at(next());
        let mut add = |id: u64, kind: u8, name: &str, position: i64, parent_id: Option<u64>| {
            let voice = kind == channel_type::VOICE;
            channels.insert(
                id,
                Channel {
                    position,
                    user_limit: if voice { 4 } else { 0 },
                    ..Channel::new(id, kind, name, parent_id)
                },
            );
        };
        add(category_id, channel_type::CATEGORY, "Rooms", 0, None);
        let text_channel_id = ids.at(next());
        add(text_channel_id, channel_type::TEXT, "general", 0, None);
        let mut voice_channel_ids = Vec::new();
        for (i, name) in ["Table 1", "Table 2", "Table 3"].iter().enumerate() {
            let id = ids.at(next());
            add(
                id,
                channel_type::VOICE,
                name,
                i64::try_from(i).unwrap_or(0),
                Some(category_id),
            );
            voice_channel_ids.push(id);
        }
        let mut world = Self {
            ids,
            guild_id,
            guild_name: "Spell Coven".to_owned(),
            owner_id,
            users,
            members,
            channels,
            voice_states: BTreeMap::new(),
            messages: Vec::new(),
            seed: SeedIds {
                guild_id,
                bot_user_id,
                category_id,
                voice_channel_ids: voice_channel_ids.clone(),
                text_channel_id,
                member_user_ids: member_user_ids.clone(),
                outsider_user_ids,
            },
            banned: BTreeSet::new(),
            member_cap: None,
            roles: BTreeMap::new(),
        };
        for &u in &member_user_ids[..2] {
            let session_id = World::user_session_id(u);
            world.voice_states.insert(
                u,
                VoiceState {
                    user_id: u,
                    channel_id: voice_channel_ids[0],
                    session_id,
                    self_mute: false,
                    self_deaf: false,
                    mute: false,
                    deaf: false,
                    self_video: false,
                    self_stream: false,
                    suppress: false,
                },
            );
        }
        world
    }

    /// The bot's user id.
    pub fn bot_user_id(&self) -> u64 {
        self.seed.bot_user_id
    }

    /// A stable fake gateway session id for a simulated user.
    pub fn user_session_id(user_id: u64) -> String {
        format!("{:032x}", u128::from(user_id) * 0x9e37_79b9_7f4a_7c15)
    }

    /// A channel, or `UnknownChannel`.
    pub fn channel(&self, id: u64) -> Result<&Channel, WorldError> {
        self.channels.get(&id).ok_or(WorldError::UnknownChannel(id))
    }

    fn voice_dispatch(&self, user_id: u64) -> Dispatch {
        let data = match self.voice_states.get(&user_id) {
            Some(vs) => shapes::voice_state(self, vs, true),
            None => shapes::voice_state_left(self, user_id),
        };
        Dispatch::new("VOICE_STATE_UPDATE", data)
    }

    /// Puts a user in a voice channel (join or move), with the given gateway session id.
    pub fn voice_connect(
        &mut self,
        user_id: u64,
        channel_id: u64,
        session_id: Option<String>,
        flags: VoiceFlags,
    ) -> Result<Vec<Dispatch>, WorldError> {
        if !self.users.contains_key(&user_id) {
            return Err(WorldError::UnknownUser(user_id));
        }
        if !self.members.contains_key(&user_id) {
            return Err(WorldError::NotMember(user_id));
        }
        if !self.channel(channel_id)?.is_voice() {
            return Err(WorldError::NotVoice(channel_id));
        }
        let member = &self.members[&user_id];
        let (mute, deaf) = (member.mute, member.deaf);
        let session_id = session_id.unwrap_or_else(|| Self::user_session_id(user_id));
        let vs = self.voice_states.entry(user_id).or_insert(VoiceState {
            user_id,
            channel_id,
            session_id: session_id.clone(),
            self_mute: false,
            self_deaf: false,
            mute,
            deaf,
            self_video: false,
            self_stream: false,
            suppress: false,
        });
        vs.channel_id = channel_id;
        vs.session_id = session_id;
        // Moving ends a Go Live stream, as in the client.
        vs.self_stream = false;
        self.apply_flags(user_id, flags)?;
        Ok(vec![self.voice_dispatch(user_id)])
    }

    /// Removes a user from voice.
    pub fn voice_disconnect(&mut self, user_id: u64) -> Result<Vec<Dispatch>, WorldError> {
        if self.voice_states.remove(&user_id).is_none() {
            return Err(WorldError::NotInVoice(user_id));
        }
        Ok(vec![self.voice_dispatch(user_id)])
    }

    /// Changes voice flags of a user in voice.
    pub fn voice_flags(
        &mut self,
        user_id: u64,
        flags: VoiceFlags,
    ) -> Result<Vec<Dispatch>, WorldError> {
        self.apply_flags(user_id, flags)?;
        Ok(vec![self.voice_dispatch(user_id)])
    }

    fn apply_flags(&mut self, user_id: u64, flags: VoiceFlags) -> Result<(), WorldError> {
        let vs = self
            .voice_states
            .get_mut(&user_id)
            .ok_or(WorldError::NotInVoice(user_id))?;
        let set = |v: &mut bool, f: Option<bool>| {
            if let Some(f) = f {
                *v = f;
            }
        };
        set(&mut vs.self_mute, flags.self_mute);
        set(&mut vs.self_deaf, flags.self_deaf);
        set(&mut vs.mute, flags.mute);
        set(&mut vs.deaf, flags.deaf);
        set(&mut vs.self_video, flags.self_video);
        set(&mut vs.self_stream, flags.self_stream);
        if let Some(m) = self.members.get_mut(&user_id) {
            m.mute = vs.mute;
            m.deaf = vs.deaf;
        }
        Ok(())
    }

    /// Creates a channel and returns its id with `CHANNEL_CREATE`.
    pub fn create_channel(
        &mut self,
        mut channel: Channel,
    ) -> Result<(u64, Vec<Dispatch>), WorldError> {
        if let Some(p) = channel.parent_id
            && self.channel(p).map(|c| c.kind) != Ok(channel_type::CATEGORY)
        {
            return Err(WorldError::InvalidParent(p));
        }
        channel.id = self.ids.now();
        let id = channel.id;
        self.channels.insert(id, channel);
        let d = Dispatch::new("CHANNEL_CREATE", shapes::channel(self, &self.channels[&id]));
        Ok((id, vec![d]))
    }

    /// `CHANNEL_UPDATE` for a channel changed in place.
    pub fn channel_updated(&self, id: u64) -> Result<Vec<Dispatch>, WorldError> {
        Ok(vec![Dispatch::new(
            "CHANNEL_UPDATE",
            shapes::channel(self, self.channel(id)?),
        )])
    }

    /// Deletes a channel: disconnects its voice users, orphans its children, `CHANNEL_DELETE`.
    pub fn delete_channel(&mut self, id: u64) -> Result<(Channel, Vec<Dispatch>), WorldError> {
        let channel = self
            .channels
            .remove(&id)
            .ok_or(WorldError::UnknownChannel(id))?;
        let mut out = Vec::new();
        let in_voice: Vec<u64> = self
            .voice_states
            .values()
            .filter(|v| v.channel_id == id)
            .map(|v| v.user_id)
            .collect();
        for u in in_voice {
            out.extend(self.voice_disconnect(u)?);
        }
        let children: Vec<u64> = self
            .channels
            .values()
            .filter(|c| c.parent_id == Some(id))
            .map(|c| c.id)
            .collect();
        for c in children {
            if let Some(ch) = self.channels.get_mut(&c) {
                ch.parent_id = None;
            }
            out.extend(self.channel_updated(c)?);
        }
        let mut deleted = vec![Dispatch::new(
            "CHANNEL_DELETE",
            shapes::channel(self, &channel),
        )];
        deleted.append(&mut out);
        Ok((channel, deleted))
    }

    /// Creates a new user (not yet a member).
    pub fn create_user(&mut self, username: &str) -> u64 {
        let id = self.ids.now();
        self.users.insert(id, user(id, username, false));
        id
    }

    /// Adds an existing user to the guild, `GUILD_MEMBER_ADD`. `None` when already a member.
    pub fn add_member(
        &mut self,
        user_id: u64,
        nick: Option<String>,
    ) -> Result<Option<Vec<Dispatch>>, WorldError> {
        if !self.users.contains_key(&user_id) {
            return Err(WorldError::UnknownUser(user_id));
        }
        if self.banned.contains(&user_id) {
            return Err(WorldError::Banned(user_id));
        }
        if self.members.contains_key(&user_id) {
            return Ok(None);
        }
        if self.member_cap.is_some_and(|cap| self.members.len() >= cap) {
            return Err(WorldError::GuildFull);
        }
        self.members.insert(
            user_id,
            Member {
                user_id,
                nick,
                roles: vec![],
                joined_at_ms: now_ms(),
                mute: false,
                deaf: false,
            },
        );
        let mut d = shapes::member(self, &self.members[&user_id]);
        if let Some(obj) = d.as_object_mut() {
            obj.insert("guild_id".into(), Value::String(self.guild_id.to_string()));
        }
        Ok(Some(vec![Dispatch::new("GUILD_MEMBER_ADD", d)]))
    }

    /// Bans a user: a member leaves voice and the guild (`VOICE_STATE_UPDATE`,
    /// `GUILD_MEMBER_REMOVE`), and adding them answers 40007 from now on.
    pub fn ban(&mut self, user_id: u64) -> Result<Vec<Dispatch>, WorldError> {
        if !self.users.contains_key(&user_id) {
            return Err(WorldError::UnknownUser(user_id));
        }
        self.banned.insert(user_id);
        let mut out = Vec::new();
        if self.voice_states.contains_key(&user_id) {
            out.extend(self.voice_disconnect(user_id)?);
        }
        if self.members.remove(&user_id).is_some() {
            let user = shapes::user(&self.users[&user_id]);
            out.push(Dispatch::new(
                "GUILD_MEMBER_REMOVE",
                serde_json::json!({"guild_id": self.guild_id.to_string(), "user": user}),
            ));
        }
        Ok(out)
    }

    /// Creates a role granting `permissions`: `GUILD_ROLE_CREATE`.
    pub fn create_role(&mut self, name: &str, permissions: u64) -> (u64, Vec<Dispatch>) {
        let id = self.ids.now();
        let position = i64::try_from(self.roles.len()).unwrap_or(i64::MAX - 1) + 1;
        self.roles.insert(
            id,
            Role {
                id,
                name: name.to_owned(),
                permissions,
                position,
            },
        );
        let data = json!({
            "guild_id": self.guild_id.to_string(),
            "role": shapes::role(self, &self.roles[&id]),
        });
        (id, vec![Dispatch::new("GUILD_ROLE_CREATE", data)])
    }

    /// Gives a member a role: `GUILD_MEMBER_UPDATE` (sent with `GUILD_MEMBERS` only).
    pub fn grant_role(&mut self, user_id: u64, role_id: u64) -> Result<Vec<Dispatch>, WorldError> {
        if !self.roles.contains_key(&role_id) {
            return Err(WorldError::UnknownRole(role_id));
        }
        let member = self
            .members
            .get_mut(&user_id)
            .ok_or(WorldError::NotMember(user_id))?;
        if !member.roles.contains(&role_id) {
            member.roles.push(role_id);
        }
        let mut d = shapes::member(self, &self.members[&user_id]);
        if let Some(obj) = d.as_object_mut() {
            obj.insert("guild_id".into(), Value::String(self.guild_id.to_string()));
        }
        Ok(vec![Dispatch::new("GUILD_MEMBER_UPDATE", d)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_in_guild_create_and_on_members() {
        let mut w = World::seeded();
        let member = w.seed.member_user_ids[1];
        let (role, dispatches) = w.create_role("Moderators", 1 << 4);
        assert_eq!(dispatches[0].event, "GUILD_ROLE_CREATE");
        w.grant_role(member, role).unwrap();
        assert_eq!(w.members[&member].roles, vec![role]);
        assert!(matches!(
            w.grant_role(member, 1),
            Err(WorldError::UnknownRole(1))
        ));
        let guild = shapes::guild_create(&w, crate::intents::GUILDS);
        let roles = guild["roles"].as_array().unwrap();
        assert_eq!(
            roles[0],
            shapes::everyone_role(&w),
            "@everyone keeps its shape"
        );
        assert_eq!(roles[1]["id"], role.to_string());
        assert_eq!(roles[1]["permissions"], "16");
        assert_eq!(guild["owner_id"], w.owner_id.to_string());
    }

    #[test]
    fn seed_is_stable_and_complete() {
        let w = World::seeded();
        assert_eq!(
            w.guild_id, 1_246_251_873_992_839_169,
            "docs/simulator.md quotes this id"
        );
        assert_eq!(w.bot_user_id(), 1_246_251_878_187_143_170);
        assert_eq!(w.seed.voice_channel_ids.len(), 3);
        assert_eq!(w.members.len(), 7);
        assert_eq!(w.voice_states.len(), 2);
        assert_eq!(w.channels[&w.seed.category_id].kind, channel_type::CATEGORY);
    }

    #[test]
    fn deleting_a_category_orphans_children_and_disconnects_voice() {
        let mut w = World::seeded();
        let table1 = w.seed.voice_channel_ids[0];
        let (_, ds) = w.delete_channel(table1).unwrap();
        let names: Vec<&str> = ds.iter().map(|d| d.event.as_str()).collect();
        assert_eq!(
            names,
            ["CHANNEL_DELETE", "VOICE_STATE_UPDATE", "VOICE_STATE_UPDATE"]
        );
        assert!(ds[1].data["channel_id"].is_null());
        let (_, ds) = w.delete_channel(w.seed.category_id).unwrap();
        assert_eq!(ds.len(), 3, "delete + two orphaned voice channels updated");
        assert!(ds[1].data["parent_id"].is_null());
    }

    #[test]
    fn banned_users_and_a_full_guild_cannot_be_added() {
        let mut w = World::seeded();
        let grace = w.seed.outsider_user_ids[0];
        let heidi = w.seed.outsider_user_ids[1];
        assert!(w.ban(grace).unwrap().is_empty(), "not a member: no event");
        assert_eq!(
            w.add_member(grace, None).unwrap_err(),
            WorldError::Banned(grace)
        );
        let bob = w.seed.member_user_ids[1];
        let events: Vec<String> = w.ban(bob).unwrap().into_iter().map(|d| d.event).collect();
        assert_eq!(events, ["VOICE_STATE_UPDATE", "GUILD_MEMBER_REMOVE"]);
        assert!(!w.members.contains_key(&bob));
        w.member_cap = Some(w.members.len());
        assert_eq!(
            w.add_member(heidi, None).unwrap_err(),
            WorldError::GuildFull
        );
        let carol = w.seed.member_user_ids[2];
        assert!(
            w.add_member(carol, None).unwrap().is_none(),
            "members stay members"
        );
        w.member_cap = None;
        assert!(w.add_member(heidi, None).unwrap().is_some());
    }

    #[test]
    fn voice_flags_need_voice() {
        let mut w = World::seeded();
        let carol = w.seed.member_user_ids[2];
        assert_eq!(
            w.voice_flags(carol, VoiceFlags::default()).unwrap_err(),
            WorldError::NotInVoice(carol)
        );
        let outsider = w.seed.outsider_user_ids[0];
        let channel = w.seed.voice_channel_ids[0];
        assert_eq!(
            w.voice_connect(outsider, channel, None, VoiceFlags::default())
                .unwrap_err(),
            WorldError::NotMember(outsider)
        );
    }
}
