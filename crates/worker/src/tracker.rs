//! The voice-state tracker: turns Discord's guild dispatches into contract events.
//!
//! Discord tells us *states* ("user U is now in channel C with these flags"); the
//! contract speaks in *changes* (`voice.joined`, `voice.left`, …). The tracker keeps
//! the last known state of the one guild we serve ([`VoiceView`]) and emits exactly
//! the difference each dispatch makes, following docs/spec.md §4: a move is `voice.left`
//! (old room) then `voice.joined` (new room), a join (also the join of a move) with
//! any flag set is followed at once by `voice.state` with the flags (so a player who
//! joins muted is never shown unmuted), a flag change without a move is
//! `voice.state`, only voice channels (type 2) are rooms, other guilds are ignored.
//!
//! Because it emits differences of states, applying the same dispatch twice emits
//! nothing the second time. That makes Discord's replays after a resume, and our
//! own redeliveries after a crash, harmless.
//!
//! Only rooms exist for the tracker's output (docs/spec.md §7.1): a voice channel
//! hidden from `@everyone` ([`coven_discord::everyone_may_view`]) is kept privately,
//! with who is in it, but never enters the view and never produces an event. A
//! room that becomes hidden (a `CHANNEL_UPDATE` of its overwrites, a
//! `GUILD_ROLE_UPDATE` of `@everyone`) ends as if deleted: `voice.left` for those
//! in it, then `room.deleted`; a hidden channel that becomes visible starts as if
//! created: `room.created`, then `voice.joined` for those already in it.

use std::collections::BTreeMap;

use coven_contract::internal::{VoiceMember, VoiceRoom};
use coven_contract::{
    Event, RoomCreated, RoomDeleted, Snowflake, VoiceFlags, VoiceJoined, VoiceLeft,
    VoiceStateChanged,
};
use twilight_model::channel::permission_overwrite::PermissionOverwrite;
use twilight_model::channel::{Channel, ChannelType};
use twilight_model::gateway::payload::incoming::GuildCreate;
use twilight_model::guild::{Guild, Permissions, Role};
use twilight_model::id::Id;
use twilight_model::id::marker::GuildMarker;
use twilight_model::voice::VoiceState;

use coven_discord::{ASSUMED_EVERYONE, everyone_may_view, everyone_overwrite};

/// The tracker's whole knowledge of the guild, rooms and who is in them: the
/// contract's voice view. It is persisted so that a restarted worker still knows
/// who to report as leaving, and served (signed) at `/voice-view` so the hub can
/// give browsers a snapshot.
pub use coven_contract::internal::VoiceView;

/// Tracks one guild's rooms and voice states.
///
/// Besides the view (rooms only) it knows every voice channel of the guild with
/// its `@everyone` overwrite, everyone in any of them, and `@everyone`'s guild
/// permissions. That private part is not persisted: a worker restarted from a
/// stored view knows its rooms (as visible, without their overwrites) and assumes
/// [`ASSUMED_EVERYONE`] until the next `GUILD_CREATE` or `GUILD_ROLE_UPDATE`;
/// a hidden channel it learns again from its next `CHANNEL_UPDATE`, and who is in
/// it from their next voice state.
#[derive(Debug)]
pub struct VoiceTracker {
    guild_id: Snowflake,
    view: VoiceView,
    /// Whether `view` reflects a real `GUILD_CREATE` (seen now or before a restart).
    /// The first `GUILD_CREATE` without one only seeds the view: the people already
    /// in rooms did not just join.
    seeded: bool,
    /// `@everyone`'s guild permissions, once seen.
    everyone: Option<Permissions>,
    /// Every voice channel of the guild, rooms and hidden ones.
    channels: BTreeMap<Snowflake, Known>,
    /// Everyone in a known voice channel, rooms and hidden ones.
    present: BTreeMap<Snowflake, VoiceMember>,
}

/// A voice channel as the tracker knows it.
#[derive(Debug, Clone)]
struct Known {
    room: VoiceRoom,
    /// Its overwrite for `@everyone` (`None`: none, or not known after a restart).
    everyone_overwrite: Option<PermissionOverwrite>,
    /// Whether it is a room: `@everyone` may view it.
    visible: bool,
}

impl VoiceTracker {
    /// A tracker for `guild_id`, starting from a stored view when there is one.
    pub fn new(guild_id: Snowflake, stored: Option<VoiceView>) -> Self {
        let seeded = stored.is_some();
        let view = stored.unwrap_or_default();
        let channels = view
            .rooms
            .iter()
            .map(|(&id, room)| {
                let known = Known {
                    room: room.clone(),
                    everyone_overwrite: None,
                    visible: true,
                };
                (id, known)
            })
            .collect();
        Self {
            guild_id,
            seeded,
            present: view.members.clone(),
            view,
            everyone: None,
            channels,
        }
    }

    /// The current view, to persist.
    pub fn view(&self) -> &VoiceView {
        &self.view
    }

    /// Replaces the whole view from a `GUILD_CREATE` and returns what changed
    /// since the previous view (nothing, the first time).
    pub fn guild_create(&mut self, guild: &GuildCreate) -> Vec<Event> {
        let GuildCreate::Available(guild) = guild else {
            return Vec::new(); // An outage; the view stays as it was.
        };
        if snowflake(guild.id.get()) != self.guild_id {
            return Vec::new();
        }
        self.everyone = guild
            .roles
            .iter()
            .find(|role| role.id.get() == guild.id.get())
            .map(|role| role.permissions);
        self.channels = guild
            .channels
            .iter()
            .filter(|c| c.kind == ChannelType::GuildVoice)
            .map(|c| (snowflake(c.id.get()), self.known(c)))
            .collect();
        self.present = present_of(guild, &self.channels);
        let fresh = self.derive();
        let events = if self.seeded {
            diff(self.guild_id, &self.view, &fresh)
        } else {
            Vec::new()
        };
        self.view = fresh;
        self.seeded = true;
        events
    }

    /// Applies a `VOICE_STATE_UPDATE`.
    pub fn voice_state_update(&mut self, state: &VoiceState) -> Vec<Event> {
        if state.guild_id.map(|id| snowflake(id.get())) != Some(self.guild_id) {
            return Vec::new();
        }
        let user_id = snowflake(state.user_id.get());
        match self.presence_of(state) {
            Some(presence) => self.present.insert(user_id, presence),
            None => self.present.remove(&user_id),
        };
        // What browsers see of the user: only a presence in a room.
        let now = self
            .present
            .get(&user_id)
            .filter(|p| self.view.rooms.contains_key(&p.channel_id))
            .copied();
        let before = match now {
            Some(now) => self.view.members.insert(user_id, now),
            None => self.view.members.remove(&user_id),
        };
        changes(self.guild_id, user_id, before, now)
    }

    /// Applies a `CHANNEL_CREATE`: a new voice channel `@everyone` may view is a new room.
    pub fn channel_create(&mut self, channel: &Channel) -> Vec<Event> {
        self.channel_update(channel)
    }

    /// Applies a `CHANNEL_UPDATE`: a room's name, category or limit changed (the
    /// contract has no event for that; the view keeps the new values), or its
    /// overwrites did, which may hide it (`room.deleted`) or show it (`room.created`).
    pub fn channel_update(&mut self, channel: &Channel) -> Vec<Event> {
        if !self.is_voice_channel(channel) {
            return Vec::new();
        }
        let channel_id = snowflake(channel.id.get());
        let known = self.known(channel);
        self.channels.insert(channel_id, known);
        self.settle(channel_id)
    }

    /// Applies a `CHANNEL_DELETE`: everyone still in the room leaves, then it is gone.
    pub fn channel_delete(&mut self, channel: &Channel) -> Vec<Event> {
        if !self.is_voice_channel(channel) {
            return Vec::new();
        }
        let channel_id = snowflake(channel.id.get());
        self.channels.remove(&channel_id);
        self.present.retain(|_, p| p.channel_id != channel_id);
        self.settle(channel_id)
    }

    /// Applies a `GUILD_ROLE_UPDATE`: when it is `@everyone`'s, every channel is
    /// judged again, and those that turned hidden or visible end or start as rooms.
    pub fn role_update(&mut self, guild_id: Id<GuildMarker>, role: &Role) -> Vec<Event> {
        if snowflake(guild_id.get()) != self.guild_id || role.id.get() != guild_id.get() {
            return Vec::new();
        }
        self.everyone = Some(role.permissions);
        let guild = self.guild();
        let everyone = self.everyone_permissions();
        for known in self.channels.values_mut() {
            let overwrites = known.everyone_overwrite.as_slice();
            known.visible = everyone_may_view(guild, everyone, overwrites);
        }
        let ids: Vec<Snowflake> = self.channels.keys().copied().collect();
        ids.into_iter().flat_map(|id| self.settle(id)).collect()
    }

    /// Brings the view in line with what the tracker knows of `channel_id`.
    fn settle(&mut self, channel_id: Snowflake) -> Vec<Event> {
        let is_room = self.view.rooms.contains_key(&channel_id);
        let known = self
            .channels
            .get(&channel_id)
            .filter(|k| k.visible)
            .cloned();
        match (is_room, known) {
            (false, None) => Vec::new(),
            (true, Some(known)) => {
                self.view.rooms.insert(channel_id, known.room);
                Vec::new()
            }
            (false, Some(known)) => {
                let mut events = vec![room_created(self.guild_id, channel_id, &known.room)];
                self.view.rooms.insert(channel_id, known.room);
                for (&user_id, presence) in &self.present {
                    if presence.channel_id == channel_id {
                        self.view.members.insert(user_id, *presence);
                        events.push(joined(self.guild_id, channel_id, user_id));
                    }
                }
                events
            }
            (true, None) => {
                let mut events = Vec::new();
                self.view.members.retain(|&user_id, presence| {
                    let stays = presence.channel_id != channel_id;
                    if !stays {
                        events.push(left(self.guild_id, channel_id, user_id));
                    }
                    stays
                });
                self.view.rooms.remove(&channel_id);
                events.push(Event::RoomDeleted(RoomDeleted {
                    channel_id,
                    guild_id: self.guild_id,
                }));
                events
            }
        }
    }

    /// The view of what the tracker knows: the visible channels and who is in them.
    fn derive(&self) -> VoiceView {
        let rooms: BTreeMap<Snowflake, VoiceRoom> = self
            .channels
            .iter()
            .filter(|(_, known)| known.visible)
            .map(|(&id, known)| (id, known.room.clone()))
            .collect();
        let members = self
            .present
            .iter()
            .filter(|(_, p)| rooms.contains_key(&p.channel_id))
            .map(|(&user, &p)| (user, p))
            .collect();
        VoiceView { rooms, members }
    }

    /// A voice channel of this guild as the tracker keeps it, judged by the rule.
    fn known(&self, channel: &Channel) -> Known {
        let guild = self.guild();
        let overwrites = channel.permission_overwrites.as_deref().unwrap_or_default();
        Known {
            room: room_of(channel),
            everyone_overwrite: everyone_overwrite(guild, overwrites),
            visible: everyone_may_view(guild, self.everyone_permissions(), overwrites),
        }
    }

    fn everyone_permissions(&self) -> Permissions {
        self.everyone.unwrap_or(ASSUMED_EVERYONE)
    }

    fn guild(&self) -> Id<GuildMarker> {
        Id::new(self.guild_id.get())
    }

    fn is_voice_channel(&self, channel: &Channel) -> bool {
        channel.kind == ChannelType::GuildVoice
            && channel.guild_id.map(|id| snowflake(id.get())) == Some(self.guild_id)
    }

    /// Where the state puts the user, counting only voice channels we know.
    fn presence_of(&self, state: &VoiceState) -> Option<VoiceMember> {
        let channel_id = snowflake(state.channel_id?.get());
        self.channels
            .contains_key(&channel_id)
            .then(|| VoiceMember {
                channel_id,
                flags: flags_of(state),
            })
    }
}

/// The events that take one user from `before` to `now`.
fn changes(
    guild_id: Snowflake,
    user_id: Snowflake,
    before: Option<VoiceMember>,
    now: Option<VoiceMember>,
) -> Vec<Event> {
    match (before, now) {
        (None, Some(now)) => arrival(guild_id, user_id, now),
        (Some(before), None) => vec![left(guild_id, before.channel_id, user_id)],
        (Some(before), Some(now)) if before.channel_id != now.channel_id => {
            let mut events = vec![left(guild_id, before.channel_id, user_id)];
            events.extend(arrival(guild_id, user_id, now));
            events
        }
        (Some(before), Some(now)) if before.flags != now.flags => {
            vec![flags_changed(guild_id, user_id, now)]
        }
        (None, None) | (Some(_), Some(_)) => Vec::new(),
    }
}

/// A user arriving in a room (a join, or the second half of a move): `voice.joined`,
/// then `voice.state` at once when any flag is set, since `voice.joined` carries none
/// and a client would otherwise show a muted player as unmuted (docs/spec.md §4).
fn arrival(guild_id: Snowflake, user_id: Snowflake, now: VoiceMember) -> Vec<Event> {
    let mut events = vec![joined(guild_id, now.channel_id, user_id)];
    if now.flags != VoiceFlags::default() {
        events.push(flags_changed(guild_id, user_id, now));
    }
    events
}

fn flags_changed(guild_id: Snowflake, user_id: Snowflake, now: VoiceMember) -> Event {
    Event::VoiceState(VoiceStateChanged {
        guild_id,
        channel_id: now.channel_id,
        user_id,
        flags: now.flags,
    })
}

/// Everything that happened between two views: new rooms first (so joins never
/// name an unknown room), then each user's changes, then deleted rooms (after
/// their occupants left).
fn diff(guild_id: Snowflake, old: &VoiceView, new: &VoiceView) -> Vec<Event> {
    let mut events: Vec<Event> = new
        .rooms
        .iter()
        .filter(|(id, _)| !old.rooms.contains_key(id))
        .map(|(&id, room)| room_created(guild_id, id, room))
        .collect();
    let users: std::collections::BTreeSet<Snowflake> = old
        .members
        .keys()
        .chain(new.members.keys())
        .copied()
        .collect();
    for user_id in users {
        let before = old.members.get(&user_id).copied();
        let now = new.members.get(&user_id).copied();
        events.extend(changes(guild_id, user_id, before, now));
    }
    events.extend(
        old.rooms
            .keys()
            .filter(|id| !new.rooms.contains_key(id))
            .map(|&channel_id| {
                Event::RoomDeleted(RoomDeleted {
                    channel_id,
                    guild_id,
                })
            }),
    );
    events
}

/// Everyone in one of the guild's voice channels `channels` at `GUILD_CREATE`.
fn present_of(
    guild: &Guild,
    channels: &BTreeMap<Snowflake, Known>,
) -> BTreeMap<Snowflake, VoiceMember> {
    guild
        .voice_states
        .iter()
        .filter_map(|state| {
            let channel_id = snowflake(state.channel_id?.get());
            // GUILD_CREATE's voice states omit guild_id; they are this guild's.
            debug_assert!(state.guild_id.is_none_or(|g| g == guild.id));
            channels.contains_key(&channel_id).then(|| {
                let presence = VoiceMember {
                    channel_id,
                    flags: flags_of(state),
                };
                (snowflake(state.user_id.get()), presence)
            })
        })
        .collect()
}

fn room_of(channel: &Channel) -> VoiceRoom {
    VoiceRoom::from_channel(
        channel.name.clone(),
        channel.parent_id.map(|id| snowflake(id.get())),
        channel.user_limit,
    )
}

fn flags_of(state: &VoiceState) -> VoiceFlags {
    VoiceFlags {
        self_mute: state.self_mute,
        self_deaf: state.self_deaf,
        mute: state.mute,
        deaf: state.deaf,
        self_video: state.self_video,
        self_stream: state.self_stream,
        suppress: state.suppress,
    }
}

fn room_created(guild_id: Snowflake, channel_id: Snowflake, room: &VoiceRoom) -> Event {
    Event::RoomCreated(RoomCreated {
        channel_id,
        name: room.name.clone(),
        guild_id,
        parent_id: room.parent_id,
        user_limit: room.user_limit,
    })
}

fn joined(guild_id: Snowflake, channel_id: Snowflake, user_id: Snowflake) -> Event {
    Event::VoiceJoined(VoiceJoined {
        guild_id,
        channel_id,
        user_id,
    })
}

fn left(guild_id: Snowflake, channel_id: Snowflake, user_id: Snowflake) -> Event {
    Event::VoiceLeft(VoiceLeft {
        guild_id,
        channel_id,
        user_id,
    })
}

/// Twilight ids are non-zero by construction.
fn snowflake(id: u64) -> Snowflake {
    Snowflake::new(id).expect("twilight ids are non-zero")
}
