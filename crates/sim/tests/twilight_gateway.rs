//! twilight-gateway 0.18 (zstd-stream, its own heartbeat/resume logic) against the simulator:
//! every event deserialises, resume works after op 7, a TCP drop, a zombie and op 9, and
//! 4004 is fatal.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{STEP, crypto, start};
use coven_sim::{Simulator, VoiceFlags};
use tokio::sync::mpsc;
use twilight_gateway::error::ReceiveMessageErrorType;
use twilight_gateway::{
    ConfigBuilder, Event, EventTypeFlags, Intents, Shard, ShardId, StreamExt as _,
};
use twilight_model::gateway::payload::incoming::GuildCreate;
use twilight_model::gateway::payload::outgoing::{RequestGuildMembers, UpdateVoiceState};
use twilight_model::id::Id;

struct Driven {
    events: mpsc::UnboundedReceiver<Event>,
    deserialize_errors: Arc<AtomicUsize>,
    sender: twilight_gateway::MessageSender,
    task: tokio::task::JoinHandle<()>,
}

fn drive(sim: &Simulator, token: &str, intents: Intents) -> Driven {
    crypto();
    let config = ConfigBuilder::new(token.to_owned(), intents)
        .proxy_url(sim.gateway_url())
        .build();
    let mut shard = Shard::with_config(ShardId::ONE, config);
    let sender = shard.sender();
    let (tx, events) = mpsc::unbounded_channel();
    let deserialize_errors = Arc::new(AtomicUsize::new(0));
    let errors = deserialize_errors.clone();
    let task = tokio::spawn(async move {
        while let Some(item) = shard.next_event(EventTypeFlags::all()).await {
            match item {
                Ok(e) => {
                    let _ = tx.send(e);
                }
                Err(e) => {
                    if let ReceiveMessageErrorType::Deserializing { event } = e.kind() {
                        eprintln!("twilight could not deserialise: {event}");
                        errors.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }
    });
    Driven {
        events,
        deserialize_errors,
        sender,
        task,
    }
}

impl Driven {
    /// The next event matching `f`, skipping others, within [`STEP`].
    async fn expect<T>(&mut self, mut f: impl FnMut(Event) -> Option<T>) -> T {
        tokio::time::timeout(STEP, async {
            loop {
                let e = self.events.recv().await.expect("shard stream ended");
                if let Some(t) = f(e) {
                    return t;
                }
            }
        })
        .await
        .expect("event in time")
    }
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one end-to-end scenario, read top to bottom
async fn every_event_deserialises_in_twilight() {
    let sim = start().await;
    let h = sim.handle();
    let seed = h.seed();
    let intents = Intents::GUILDS
        | Intents::GUILD_VOICE_STATES
        | Intents::GUILD_MEMBERS
        | Intents::GUILD_MESSAGES
        | Intents::GUILD_INVITES;
    let mut shard = drive(&sim, sim.bot_token(), intents);
    let ready = shard
        .expect(|e| {
            if let Event::Ready(r) = e {
                Some(r)
            } else {
                None
            }
        })
        .await;
    assert_eq!(ready.user.id.get(), seed.bot_user_id);
    assert_eq!(ready.resume_gateway_url, sim.gateway_url());
    let guild = shard
        .expect(|e| {
            if let Event::GuildCreate(g) = e {
                Some(g)
            } else {
                None
            }
        })
        .await;
    let GuildCreate::Available(guild) = *guild else {
        panic!("guild should be available")
    };
    assert_eq!(guild.id.get(), sim.guild_id());
    assert_eq!(guild.voice_states.len(), 2);
    assert!(guild.channels.len() >= 5);
    assert_eq!(guild.members.len(), 3, "bot + the two members in voice");

    let carol = seed.member_user_ids[2];
    h.user_join(carol, seed.voice_channel_ids[1]).unwrap();
    let vs = shard
        .expect(|e| {
            if let Event::VoiceStateUpdate(v) = e {
                Some(v)
            } else {
                None
            }
        })
        .await;
    assert_eq!(
        vs.0.channel_id.map(Id::get),
        Some(seed.voice_channel_ids[1])
    );
    assert!(vs.0.member.is_some());
    h.user_move(carol, seed.voice_channel_ids[2]).unwrap();
    let vs = shard
        .expect(|e| {
            if let Event::VoiceStateUpdate(v) = e {
                Some(v)
            } else {
                None
            }
        })
        .await;
    assert_eq!(
        vs.0.channel_id.map(Id::get),
        Some(seed.voice_channel_ids[2])
    );
    let all = VoiceFlags {
        self_mute: Some(true),
        self_deaf: Some(true),
        mute: Some(true),
        deaf: Some(true),
        self_video: Some(true),
        self_stream: Some(true),
    };
    h.user_set_flags(carol, all).unwrap();
    let vs = shard
        .expect(|e| {
            if let Event::VoiceStateUpdate(v) = e {
                Some(v)
            } else {
                None
            }
        })
        .await;
    assert!(
        vs.0.self_mute
            && vs.0.self_deaf
            && vs.0.mute
            && vs.0.deaf
            && vs.0.self_video
            && vs.0.self_stream
    );
    h.user_leave(carol).unwrap();
    let vs = shard
        .expect(|e| {
            if let Event::VoiceStateUpdate(v) = e {
                Some(v)
            } else {
                None
            }
        })
        .await;
    assert_eq!(vs.0.channel_id, None);

    let id = h
        .create_channel("Table 9", 2, Some(seed.category_id))
        .unwrap();
    let created = shard
        .expect(|e| {
            if let Event::ChannelCreate(c) = e {
                Some(c)
            } else {
                None
            }
        })
        .await;
    assert_eq!(created.id.get(), id);
    h.delete_channel(id).unwrap();
    shard
        .expect(|e| {
            if let Event::ChannelDelete(c) = e {
                Some(c)
            } else {
                None
            }
        })
        .await;
    let newcomer = h.add_user("ivan");
    let added = shard
        .expect(|e| {
            if let Event::MemberAdd(m) = e {
                Some(m)
            } else {
                None
            }
        })
        .await;
    assert_eq!(added.member.user.id.get(), newcomer);

    // REST changes produce dispatches too (twilight-http as the REST client).
    let http = twilight_http::Client::builder()
        .token(sim.bot_token().to_owned())
        .proxy(sim.addr().to_string(), true)
        .build();
    let text = Id::new(seed.text_channel_id);
    http.create_message(text).content("hello").await.unwrap();
    shard
        .expect(|e| {
            if let Event::MessageCreate(m) = e {
                Some(m)
            } else {
                None
            }
        })
        .await;
    http.create_invite(text).max_age(3600).await.unwrap();
    shard
        .expect(|e| {
            if let Event::InviteCreate(i) = e {
                Some(i)
            } else {
                None
            }
        })
        .await;
    http.update_channel(Id::new(seed.voice_channel_ids[0]))
        .name("Renamed")
        .await
        .unwrap();
    let updated = shard
        .expect(|e| {
            if let Event::ChannelUpdate(c) = e {
                Some(c)
            } else {
                None
            }
        })
        .await;
    assert_eq!(updated.name.as_deref(), Some("Renamed"));

    // The bot's own voice state update (op 4).
    let guild_id = Id::new(sim.guild_id());
    shard
        .sender
        .command(&UpdateVoiceState::new(
            guild_id,
            Id::new(seed.voice_channel_ids[0]),
            false,
            false,
        ))
        .unwrap();
    let vs = shard
        .expect(|e| {
            if let Event::VoiceStateUpdate(v) = e {
                Some(v)
            } else {
                None
            }
        })
        .await;
    assert_eq!(vs.0.user_id.get(), seed.bot_user_id);
    let server = shard
        .expect(|e| {
            if let Event::VoiceServerUpdate(s) = e {
                Some(s)
            } else {
                None
            }
        })
        .await;
    assert_eq!(server.guild_id, guild_id);
    shard
        .sender
        .command(&RequestGuildMembers::builder(guild_id).query("", None))
        .unwrap();
    let chunk = shard
        .expect(|e| {
            if let Event::MemberChunk(c) = e {
                Some(c)
            } else {
                None
            }
        })
        .await;
    assert!(chunk.members.len() >= 7);

    assert_eq!(shard.deserialize_errors.load(Ordering::SeqCst), 0);
    shard.task.abort();
}

#[tokio::test]
async fn twilight_resumes_after_reconnect_drop_zombie_and_op9() {
    let sim = start().await;
    let h = sim.handle();
    let seed = h.seed();
    let mut d = drive(
        &sim,
        sim.bot_token(),
        Intents::GUILDS | Intents::GUILD_VOICE_STATES,
    );
    d.expect(|e| matches!(e, Event::GuildCreate(_)).then_some(()))
        .await;

    h.reconnect();
    h.wait_for(|c| c.resumes >= 1, STEP).await.unwrap();
    d.expect(|e| matches!(e, Event::Resumed).then_some(()))
        .await;

    // A drop, with a change while the bot is away: replayed on resume.
    h.drop_tcp();
    h.wait_for(|c| c.active_connections == 0 || c.resumes >= 2, STEP)
        .await
        .unwrap();
    h.user_join(seed.member_user_ids[4], seed.voice_channel_ids[1])
        .unwrap();
    h.wait_for(|c| c.resumes >= 2, STEP).await.unwrap();
    let vs = d
        .expect(|e| {
            if let Event::VoiceStateUpdate(v) = e {
                Some(v)
            } else {
                None
            }
        })
        .await;
    assert_eq!(vs.0.user_id.get(), seed.member_user_ids[4]);

    h.zombie();
    h.wait_for(|c| c.resumes >= 3, STEP).await.unwrap();

    h.invalid_session(true);
    h.wait_for(|c| c.resumes >= 4, STEP).await.unwrap();

    let c = h.counters();
    assert_eq!(c.identifies, 1, "no extra identify: {c:?}");
    assert_eq!(d.deserialize_errors.load(Ordering::SeqCst), 0);
    d.task.abort();
}

#[tokio::test]
async fn op9_false_makes_twilight_identify_again() {
    let sim = start().await;
    let h = sim.handle();
    let mut d = drive(&sim, sim.bot_token(), Intents::GUILDS);
    d.expect(|e| matches!(e, Event::Ready(_)).then_some(()))
        .await;
    h.invalid_session(false);
    h.wait_for(|c| c.identifies >= 2, STEP).await.unwrap();
    d.expect(|e| matches!(e, Event::Ready(_)).then_some(()))
        .await;
    d.task.abort();
}

#[tokio::test]
async fn authentication_failure_is_fatal_to_twilight() {
    let sim = start().await;
    let h = sim.handle();
    let mut d = drive(&sim, "not-the-token", Intents::GUILDS);
    tokio::time::timeout(STEP, async { while d.events.recv().await.is_some() {} })
        .await
        .expect("the shard stream ends after 4004");
    d.task.await.unwrap();
    let c = h.counters();
    assert_eq!(c.last_close_code, Some(4004));
    assert_eq!(c.connections, 1, "twilight must not reconnect after 4004");
    assert_eq!(c.identifies, 0);
}
