//! The Discord Gateway session, on twilight-gateway.
//!
//! Twilight owns the protocol: heartbeats with jitter, zombie detection, resume
//! through `resume_gateway_url`, reconnects with backoff. This loop owns what is
//! ours: it starts from the session stored in the outbox (so a restarted worker
//! resumes instead of identifying), feeds guild dispatches to the voice-state
//! tracker, commits the resulting events *with* the session sequence before
//! reading the next dispatch, stops for good only on the fatal close codes, and
//! on shutdown closes with a resumable code after persisting the session.

use std::sync::Arc;
use std::time::Duration;

use coven_contract::{Event as ContractEvent, Secret, Snowflake};
use tokio::sync::watch;
use twilight_gateway::{
    CloseFrame, ConfigBuilder, Event, EventTypeFlags, Intents, Session, Shard, ShardId, ShardState,
    StreamExt as _,
};
use twilight_model::gateway::CloseCode;

use crate::WorkerError;
use crate::health::{GatewayState, Status};
use crate::metrics;
use crate::outbox::{Outbox, StoredSession};
use crate::tracker::{VoiceTracker, VoiceView};
use crate::voice::BotVoice;

/// The intents the worker needs (SPEC §8).
pub const INTENTS: Intents = Intents::GUILDS.union(Intents::GUILD_VOICE_STATES);

/// How often the session sequence is saved when no event forces a commit.
const SESSION_SAVE_INTERVAL: Duration = Duration::from_secs(5);

/// How long shutdown waits for the gateway to acknowledge our close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often shutdown checks whether the close frame has gone out.
const CLOSE_POLL: Duration = Duration::from_millis(20);

/// What the gateway loop needs to know.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// The guild whose rooms we serve.
    pub guild_id: Snowflake,
    /// The bot token.
    pub bot_token: Secret,
    /// A gateway base URL other than Discord's (the simulator), if any.
    pub gateway_url: Option<String>,
}

/// Runs the session until `shutdown` turns true (Ok) or Discord closes it for good (Err).
pub async fn run(
    settings: GatewaySettings,
    outbox: Outbox,
    status: Arc<Status>,
    voice: BotVoice,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    let (stored_session, stored_view) = outbox.load()?;
    let resuming = stored_session.is_some();
    let mut tracker = VoiceTracker::new(settings.guild_id, stored_view);
    status.set_view(Arc::new(tracker.view().clone()));
    let mut shard = Shard::with_config(ShardId::ONE, config(&settings, stored_session.clone()));
    tracing::info!(resuming, "connecting to the Discord gateway");
    let mut saved = stored_session;
    let mut last_close: Option<u16> = None;
    let mut hellos = 0_u64;
    let mut save_timer = tokio::time::interval(SESSION_SAVE_INTERVAL);

    // Shutdown queues a resumable close frame, keeps applying the dispatches
    // already received while twilight sends it, and stops polling as soon as the
    // frame is out: polling further would let twilight reconnect.
    let mut closing: Option<tokio::time::Instant> = None;
    loop {
        if closing
            .is_some_and(|deadline| close_sent(&shard) || tokio::time::Instant::now() >= deadline)
        {
            break;
        }
        tokio::select! {
            biased;
            _ = shutdown.changed(), if closing.is_none() => {
                shard.close(CloseFrame::RESUME);
                closing = Some(tokio::time::Instant::now() + CLOSE_TIMEOUT);
            }
            () = tokio::time::sleep(CLOSE_POLL), if closing.is_some() => {}
            _ = save_timer.tick() => save_session(&outbox, &shard, &mut saved)?,
            item = shard.next_event(EventTypeFlags::all()) => {
                let event = match item {
                    None => return Err(fatal(last_close)),
                    Some(Err(error)) => {
                        tracing::warn!(%error, "gateway receive error; twilight will recover");
                        continue;
                    }
                    Some(Ok(event)) => event,
                };
                match &event {
                    // Closing: the close is out once twilight reports it, or once
                    // it has already dialled again (a Hello) — stop before it resumes.
                    Event::GatewayClose(_) | Event::GatewayHello(_) if closing.is_some() => break,
                    Event::GatewayHello(_) => {
                        hellos += 1;
                        if hellos > 1 {
                            metrics::reconnected();
                        }
                    }
                    Event::Ready(ready) => {
                        voice.ready(
                            settings.guild_id,
                            Snowflake::from(ready.user.id.into_nonzero()),
                            shard.sender(),
                            &outbox,
                        );
                        metrics::identified();
                        status.session_started();
                        tracing::info!("identified: new gateway session");
                    }
                    Event::Resumed => {
                        metrics::resumed();
                        tracing::info!("gateway session resumed");
                    }
                    Event::GatewayClose(frame) => {
                        last_close = frame.as_ref().map(|f| f.code);
                        tracing::warn!(code = ?last_close, "gateway connection closed");
                    }
                    Event::GatewayInvalidateSession(resumable) => {
                        tracing::warn!(resumable, "gateway invalidated the session");
                    }
                    Event::GatewayReconnect => tracing::info!("gateway asked us to reconnect"),
                    Event::VoiceStateUpdate(update) => voice.voice_state(&update.0),
                    Event::VoiceServerUpdate(update) => voice.voice_server(update),
                    Event::GatewayHeartbeatAck => {
                        if let Some(latency) = shard.latency().recent().first() {
                            metrics::gateway_latency(*latency);
                        }
                    }
                    _ => {}
                }
                status.set_state(gateway_state(shard.state()));
                if let Some(events) = apply(&mut tracker, &event) {
                    let session = current_session(&shard);
                    let view = tracker.view().clone();
                    commit(&outbox, &status, view, session.clone(), &events).await?;
                    if session.is_some() {
                        saved = session;
                    }
                    for event in &events {
                        metrics::event_produced(event.name());
                        status.event_produced();
                    }
                }
            }
        }
    }

    save_session(&outbox, &shard, &mut saved)?;
    status.set_state(GatewayState::Disconnected);
    tracing::info!("gateway closed with a resumable code; session saved");
    Ok(())
}

/// Whether our close frame has been sent (twilight then marks itself disconnected).
fn close_sent(shard: &Shard) -> bool {
    matches!(
        shard.state(),
        ShardState::Disconnected { .. } | ShardState::FatallyClosed
    )
}

fn config(settings: &GatewaySettings, stored: Option<StoredSession>) -> twilight_gateway::Config {
    let mut builder = ConfigBuilder::new(settings.bot_token.expose().to_owned(), INTENTS);
    if let Some(url) = &settings.gateway_url {
        builder = builder.proxy_url(url.trim_end_matches('/').to_owned());
    }
    if let Some(stored) = stored {
        builder = builder.session(Session::new(stored.sequence, stored.id));
        if let Some(url) = stored.resume_url {
            builder = builder.resume_url(url);
        }
    }
    builder.build()
}

/// Feeds a dispatch to the tracker: `Some(events)` when the view may have changed
/// (the events may be empty, e.g. for a channel rename), `None` otherwise.
fn apply(tracker: &mut VoiceTracker, event: &Event) -> Option<Vec<ContractEvent>> {
    match event {
        Event::GuildCreate(guild) => Some(tracker.guild_create(guild)),
        Event::VoiceStateUpdate(update) => Some(tracker.voice_state_update(&update.0)),
        Event::ChannelCreate(channel) => Some(tracker.channel_create(&channel.0)),
        Event::ChannelUpdate(channel) => {
            tracker.channel_update(&channel.0);
            Some(Vec::new())
        }
        Event::ChannelDelete(channel) => Some(tracker.channel_delete(&channel.0)),
        _ => None,
    }
}

/// Publishes the view for `/voice-view`, then commits the events, the view and
/// the session sequence in one transaction, off the async threads (it waits for
/// the disk). The view goes first so that it never lags an event the delivery
/// task may already have posted: the hub reads it for snapshots, and a snapshot
/// older than an event the browser has seen would undo that event. A failed
/// commit ends the worker, so a published view is never left uncommitted.
async fn commit(
    outbox: &Outbox,
    status: &Status,
    view: VoiceView,
    session: Option<StoredSession>,
    events: &[ContractEvent],
) -> Result<(), WorkerError> {
    let view = Arc::new(view);
    status.set_view(view.clone());
    let (queue, events_owned, view_ref) = (outbox.clone(), events.to_vec(), view);
    let overflowed = tokio::task::spawn_blocking(move || {
        queue.commit(&events_owned, Some(&view_ref), session.as_ref())
    })
    .await
    .map_err(|_| WorkerError::Panicked("outbox commit"))??;
    if overflowed > 0 {
        tracing::error!(
            overflowed,
            capacity = outbox.capacity(),
            "outbox full: events moved to dead letters"
        );
    } else if outbox.near_full() {
        tracing::warn!(
            depth = outbox.depth(),
            capacity = outbox.capacity(),
            "outbox is nearly full"
        );
    }
    Ok(())
}

fn save_session(
    outbox: &Outbox,
    shard: &Shard,
    saved: &mut Option<StoredSession>,
) -> Result<(), WorkerError> {
    let session = current_session(shard);
    if let Some(current) = session
        .as_ref()
        .filter(|current| Some(*current) != saved.as_ref())
    {
        outbox.save_session(current)?;
        *saved = session;
    }
    Ok(())
}

fn current_session(shard: &Shard) -> Option<StoredSession> {
    shard.session().map(|session| StoredSession {
        id: session.id().to_owned(),
        sequence: session.sequence(),
        resume_url: shard.resume_url().map(str::to_owned),
    })
}

fn gateway_state(state: ShardState) -> GatewayState {
    match state {
        ShardState::Active => GatewayState::Active,
        ShardState::Identifying => GatewayState::Identifying,
        ShardState::Resuming => GatewayState::Resuming,
        ShardState::FatallyClosed => GatewayState::FatallyClosed,
        ShardState::Disconnected { .. } => GatewayState::Disconnected,
    }
}

fn fatal(code: Option<u16>) -> WorkerError {
    let explanation = match code.map(CloseCode::try_from) {
        Some(Ok(CloseCode::AuthenticationFailed)) => {
            "Discord rejected the bot token; check DISCORD_BOT_TOKEN"
        }
        Some(Ok(CloseCode::InvalidShard | CloseCode::ShardingRequired)) => {
            "Discord requires a sharding setup this worker does not use"
        }
        Some(Ok(CloseCode::InvalidApiVersion)) => "Discord refused the gateway API version",
        Some(Ok(CloseCode::InvalidIntents)) => "Discord refused the requested intents as invalid",
        Some(Ok(CloseCode::DisallowedIntents)) => {
            "the bot is not allowed these intents; enable them in the Discord Developer Portal"
        }
        _ => "the gateway closed the session for good",
    };
    WorkerError::Fatal { code, explanation }
}
