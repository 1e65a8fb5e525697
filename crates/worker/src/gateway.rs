//! The Discord Gateway session, on twilight-gateway.
//!
//! Twilight owns the protocol: heartbeats with jitter, zombie detection, resume
//! through `resume_gateway_url`, backoff after a failed connect. This loop owns
//! what is ours: it paces reconnects after sessions that end early (twilight
//! redials at once after a server's close, see `reconnect.rs`), keeps
//! `/health`'s state current after every item the shard yields, errors included
//! (503 as soon as the session is not live, docs/spec.md §8), starts from the
//! session in the store (so a restarted worker, or the
//! standby of a pair taking over, resumes instead of identifying), feeds guild
//! dispatches to the voice-state tracker, commits the resulting events *with*
//! the session sequence before waiting for the next dispatch — those the
//! gateway has already sent are applied first and committed together, in one
//! transaction or script (group commit, `Batch`) — stops for good only
//! on the fatal close codes, and on shutdown closes with a resumable code after
//! persisting the session.
//!
//! A dispatch twilight cannot parse is not skipped (its sequence is already
//! counted, so Discord would never replay it): it is kept as a dead letter,
//! counted, and read leniently or re-synced (`unreadable.rs`). Only the event
//! types the worker uses are parsed at all ([`WANTED`]).
//!
//! The bot's own voice connection produces events too (`voice.speaking`): they
//! come in on a channel ([`BotVoice::ready`]) and are committed by this loop,
//! through the same fenced, retried [`Store::commit`] as the dispatches' events.
//!
//! One of an active/standby pair runs this loop only while its store may write
//! (it holds the lease). When the store fences it off, the loop drops the
//! connection at once, without a close frame and without saving: the session
//! stays resumable, and the worker that holds the lease now resumes it from the
//! session stored in Redis.

use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use coven_contract::{Event as ContractEvent, Secret, Snowflake};
use tokio::sync::{mpsc, watch};
use twilight_gateway::error::ReceiveMessageError;
use twilight_gateway::{
    CloseFrame, ConfigBuilder, Event, EventTypeFlags, Intents, MessageSender, Session, Shard,
    ShardId, ShardState, StreamExt as _,
};
use twilight_model::gateway::CloseCode;

use crate::WorkerError;
use crate::health::{GatewayState, Status};
use crate::metrics;
use crate::reconnect::{ReconnectPacing, Reconnects};
use crate::store::{Store, StoredSession, Written};
use crate::tracker::{VoiceTracker, VoiceView};
use crate::unreadable::{RESYNC_INTERVAL, Recovery, Resyncs, Unreadable, recover};
use crate::voice::BotVoice;

/// The intents the worker needs (docs/spec.md §8).
pub const INTENTS: Intents = Intents::GUILDS.union(Intents::GUILD_VOICE_STATES);

/// The events twilight parses for the loop: what [`apply`] and `Seen::note`
/// match on and the reconnect pacing reads (close frames always come through).
/// Everything else (presences, typing, messages …) is skipped unparsed.
pub const WANTED: EventTypeFlags = EventTypeFlags::READY
    .union(EventTypeFlags::RESUMED)
    .union(EventTypeFlags::GUILD_CREATE)
    .union(EventTypeFlags::ROLE_UPDATE)
    .union(EventTypeFlags::CHANNEL_CREATE)
    .union(EventTypeFlags::CHANNEL_UPDATE)
    .union(EventTypeFlags::CHANNEL_DELETE)
    .union(EventTypeFlags::VOICE_STATE_UPDATE)
    .union(EventTypeFlags::VOICE_SERVER_UPDATE)
    .union(EventTypeFlags::GATEWAY_HELLO)
    .union(EventTypeFlags::GATEWAY_HEARTBEAT_ACK)
    .union(EventTypeFlags::GATEWAY_INVALIDATE_SESSION)
    .union(EventTypeFlags::GATEWAY_RECONNECT);

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
    /// How reconnects are paced after sessions that end early.
    pub reconnect: ReconnectPacing,
}

/// Events of the bot's voice connection waiting for this loop to commit them.
const PRODUCED_QUEUE: usize = 256;

/// How the session loop ended, when Discord did not end it for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// `shutdown` turned true: the session was closed with a resumable code and saved.
    Shutdown,
    /// The store fenced this worker off (one of a pair lost its lease): the
    /// connection was dropped, the session left resumable.
    Fenced,
}

/// Runs the session until `shutdown` turns true, the `store` fences this
/// worker off, or Discord closes the session for good (Err).
pub async fn run(
    settings: GatewaySettings,
    store: Store,
    status: Arc<Status>,
    voice: BotVoice,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Ended, WorkerError> {
    let Some((stored_session, stored_view)) = store.load().await? else {
        return Ok(Ended::Fenced);
    };
    let resuming = stored_session.is_some();
    let mut shard = Shard::with_config(ShardId::ONE, config(&settings, stored_session.clone()));
    let (mut seen, mut voice_events) = Seen::new(
        &settings,
        &store,
        &status,
        &voice,
        &shard,
        (stored_session, stored_view),
    );
    status.set_view(Arc::new(seen.tracker.view().clone()));
    tracing::info!(resuming, "connecting to the Discord gateway");
    let mut save_timer = tokio::time::interval(SESSION_SAVE_INTERVAL);
    let fenced = store.fenced();
    tokio::pin!(fenced);
    let mut fenced_off = false;
    // While set, the shard is not polled: polling a disconnected shard dials again.
    let mut hold: Option<tokio::time::Instant> = None;

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
        // Checked before every poll of the shard: a worker that was paused past
        // its lease must not touch the session again, not even to heartbeat.
        if !store.may_write() {
            fenced_off = true;
            break;
        }
        tokio::select! {
            biased;
            () = &mut fenced, if closing.is_none() => {
                fenced_off = true;
                break;
            }
            _ = shutdown.changed(), if closing.is_none() => {
                shard.close(CloseFrame::RESUME);
                closing = Some(tokio::time::Instant::now() + CLOSE_TIMEOUT);
            }
            () = tokio::time::sleep(CLOSE_POLL), if closing.is_some() => {}
            () = sleep_until(hold), if hold.is_some() && closing.is_none() => hold = None,
            _ = save_timer.tick() => seen.tick(current_session(&shard, seen.bot_user), closing.is_none()).await?,
            Some(event) = voice_events.recv() => {
                if !seen.commit(&[event], None, None).await? {
                    fenced_off = true;
                    break;
                }
            }
            item = shard.next_event(WANTED), if hold.is_none() => {
                // Group commit: what the gateway has already sent is applied too,
                // without waiting, then committed once (docs/worker.md).
                let mut item = item;
                let step = loop {
                    let read = seen.read(&item, &shard, closing.is_some());
                    let step = seen.step(item, read, closing.is_some()).await?;
                    let more = step == Step::More && closing.is_none();
                    if !more || !seen.batch.has_room() || !store.may_write() {
                        break step;
                    }
                    match ready_item(&mut shard) {
                        Poll::Ready(next) => item = next,
                        Poll::Pending => break step,
                    }
                };
                match step {
                    Step::More => {}
                    Step::Hold(until) => hold = until,
                    Step::Closed => break,
                    Step::Fenced => {
                        fenced_off = true;
                        break;
                    }
                }
                if !seen.flush().await? {
                    fenced_off = true;
                    break;
                }
            }
        }
    }

    if fenced_off {
        // Dropping the shard drops the TCP connection without a close frame:
        // Discord keeps the session resumable for the worker that holds the lease.
        drop(shard);
        status.set_state(GatewayState::Disconnected);
        tracing::warn!(
            "let go of the Discord session without closing it; the lease holder resumes it"
        );
        return Ok(Ended::Fenced);
    }
    seen.save(current_session(&shard, seen.bot_user)).await?;
    status.set_state(GatewayState::Disconnected);
    tracing::info!("gateway closed with a resumable code; session saved");
    Ok(Ended::Shutdown)
}

/// What the loop does after one item from the shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Applied: the next item, if the gateway already sent it, joins the batch.
    More,
    /// Commit the batch and go on, holding the shard (not polling it) until
    /// then, if set.
    Hold(Option<tokio::time::Instant>),
    /// Shutting down and our close frame is out: commit the batch and stop.
    Closed,
    /// The store fenced this worker off: stop without committing.
    Fenced,
}

/// One item from the shard.
type Item = Option<Result<Event, ReceiveMessageError>>;

/// What handling an item needs from the shard, read right after it.
struct Read {
    state: ShardState,
    /// The session right after the item.
    session: Option<StoredSession>,
    /// How long to hold the shard before polling it again, if at all.
    hold: Option<tokio::time::Instant>,
}

/// At most this many events are committed together: a bound on the work
/// (and the transaction or script) one commit holds.
pub const MAX_BATCH: usize = 256;

/// Dispatches applied to the tracker and not yet committed: their events, in
/// order, and the session right after the last of them. Committed together,
/// in one transaction or script, before the loop waits for the gateway again.
#[derive(Debug, Default)]
struct Batch {
    events: Vec<ContractEvent>,
    /// Whether a dispatch may have changed the view since the last commit.
    view_changed: bool,
    /// The session as it was right after the last dispatch applied: its
    /// sequence never counts a dispatch whose events are not in the batch.
    session: Option<StoredSession>,
}

impl Batch {
    /// Whether there is nothing to commit.
    fn is_empty(&self) -> bool {
        self.events.is_empty() && !self.view_changed
    }

    /// Whether another dispatch may join (a bound of [`MAX_BATCH`] events).
    fn has_room(&self) -> bool {
        self.events.len() < MAX_BATCH
    }
}

/// What the loop has seen of the session, and what it has stored.
struct Seen<'a> {
    settings: &'a GatewaySettings,
    store: &'a Store,
    status: &'a Status,
    voice: &'a BotVoice,
    /// Where the bot's voice connection sends the events it produces.
    produced: mpsc::Sender<ContractEvent>,
    tracker: VoiceTracker,
    /// When connections end, and how long to wait before the next.
    reconnects: Reconnects,
    last_close: Option<u16>,
    /// Re-syncs asked for by unreadable dispatches, rate-limited.
    resyncs: Resyncs,
    /// The shard's message channel (to close the session for a re-sync).
    sender: MessageSender,
    /// The bot's user id, from READY or the stored session.
    bot_user: Option<Snowflake>,
    /// The session as last stored.
    saved: Option<StoredSession>,
    /// Applied, not yet committed.
    batch: Batch,
}

impl<'a> Seen<'a> {
    /// Nothing seen yet of a session starting from `stored` (session and view);
    /// also the receiver of the events the bot's voice connection produces.
    fn new(
        settings: &'a GatewaySettings,
        store: &'a Store,
        status: &'a Status,
        voice: &'a BotVoice,
        shard: &Shard,
        (stored_session, stored_view): (Option<StoredSession>, Option<VoiceView>),
    ) -> (Self, mpsc::Receiver<ContractEvent>) {
        let (produced, voice_events) = mpsc::channel(PRODUCED_QUEUE);
        let seen = Self {
            settings,
            store,
            status,
            voice,
            produced,
            tracker: VoiceTracker::new(settings.guild_id, stored_view),
            reconnects: Reconnects::new(settings.reconnect),
            last_close: None,
            resyncs: Resyncs::new(RESYNC_INTERVAL),
            sender: shard.sender(),
            bot_user: stored_session.as_ref().and_then(|s| s.bot_user_id),
            saved: stored_session,
            batch: Batch::default(),
        };
        (seen, voice_events)
    }

    /// Reads off the shard what handling `item` needs, noting a dispatch
    /// (metrics, logs, the bot's voice parts) and the reconnect pacing on the
    /// way. The shard is not `Sync`, so [`Seen::step`] does not hold it across
    /// its awaits.
    fn read(&mut self, item: &Item, shard: &Shard, closing: bool) -> Read {
        let mut hold = None;
        if let Some(Ok(event)) = item
            && !closes(event, closing)
        {
            self.note(event, shard);
            if !closing {
                hold = self.reconnects.after_event(event, shard.state());
            }
        }
        Read {
            state: shard.state(),
            session: current_session(shard, self.bot_user),
            hold,
        }
    }

    /// One item from the shard, with what [`Seen::read`] read: a dispatch is
    /// applied to the tracker, its events joining the batch; an error first
    /// commits the batch (what came before it is durable before it is handled)
    /// and is then recovered from (`receive_error`).
    async fn step(&mut self, item: Item, read: Read, closing: bool) -> Result<Step, WorkerError> {
        let event = match item {
            None => {
                // Discord ended the session for good: keep what came before.
                self.flush().await?;
                return Err(fatal(self.last_close));
            }
            Some(Err(error)) => {
                if !self.flush().await? {
                    return Ok(Step::Fenced);
                }
                return self
                    .receive_error(&error, read.state, read.session, !closing)
                    .await;
            }
            Some(Ok(event)) => event,
        };
        if closes(&event, closing) {
            return Ok(Step::Closed);
        }
        if matches!(event, Event::Ready(_)) {
            // Saved before `/health` turns 200: a worker that dies right
            // after READY is resumed, by itself or its standby.
            self.save(read.session.clone()).await?;
        }
        self.status.set_state(gateway_state(read.state));
        self.record(&event, read.session);
        Ok(if read.hold.is_some() {
            Step::Hold(read.hold)
        } else {
            Step::More
        })
    }

    /// Feeds a dispatch to the tracker and, when the view may have changed,
    /// adds its events to the batch, with `session` (the session right after
    /// this dispatch) as the one to store with them.
    fn record(&mut self, event: &Event, session: Option<StoredSession>) {
        let Some(events) = apply(&mut self.tracker, event) else {
            return;
        };
        self.batch.events.extend(events);
        self.batch.view_changed = true;
        self.batch.session = session;
    }

    /// Commits the batch: its events, the view and the session of its last
    /// dispatch, in one step. `Ok(false)`: the store fenced this worker off
    /// and nothing was committed (the next active worker gets the dispatches
    /// again on resume).
    ///
    /// The view is published (for `/voice-view`) before the commit, so that it
    /// never lags an event the delivery task may already have posted: the hub
    /// reads it for snapshots, and a snapshot older than an event the browser
    /// has seen would undo that event. A single worker's failed commit ends the
    /// worker, so a published view is never left uncommitted.
    async fn flush(&mut self) -> Result<bool, WorkerError> {
        if self.batch.is_empty() {
            return Ok(true);
        }
        let Batch {
            events,
            view_changed,
            session,
        } = std::mem::take(&mut self.batch);
        let view = view_changed.then(|| Arc::new(self.tracker.view().clone()));
        if let Some(view) = &view {
            self.status.set_view(view.clone());
        }
        self.commit(&events, view.as_deref(), session).await
    }

    /// Commits `events` (with the view and session, when given) through the
    /// store's one fenced, retried path, and counts them. `Ok(false)`: the store
    /// fenced this worker off and nothing was committed (the next active worker
    /// gets the dispatch again on resume).
    async fn commit(
        &mut self,
        events: &[ContractEvent],
        view: Option<&VoiceView>,
        session: Option<StoredSession>,
    ) -> Result<bool, WorkerError> {
        if self.store.commit(events, view, session.as_ref()).await? == Written::Fenced {
            return Ok(false);
        }
        metrics::outbox_commit();
        if session.is_some() {
            self.saved = session;
        }
        for event in events {
            metrics::event_produced(event.name());
            self.status.event_produced();
        }
        Ok(true)
    }

    /// A dispatch twilight could not read: kept as a dead letter and counted,
    /// then read leniently and applied, or a re-sync requested
    /// (`unreadable.rs`). `Ok(false)`: the store fenced this worker off.
    async fn unreadable(
        &mut self,
        unreadable: &Unreadable,
        session: Option<StoredSession>,
    ) -> Result<bool, WorkerError> {
        metrics::unreadable_dispatch(unreadable.name());
        let recovery = recover(unreadable);
        tracing::error!(
            event = unreadable.name(),
            reason = %unreadable.reason,
            recovery = match recovery {
                Recovery::Read(_) => "read leniently",
                Recovery::Nothing => "not needed",
                Recovery::Resync => "re-sync",
            },
            "a gateway dispatch twilight could not read; kept as a dead letter"
        );
        let (body, reason) = unreadable.dead_letter();
        if let Err(error) = self.store.bury_raw(body, &reason).await {
            tracing::warn!(%error, "could not keep the unreadable dispatch as a dead letter");
        }
        metrics::outbox_gauges(self.store);
        match recovery {
            Recovery::Read(event) => {
                // What `note` does with these: the bot's voice client needs its own.
                if let Event::VoiceStateUpdate(update) = event.as_ref() {
                    self.voice.voice_state(&update.0);
                }
                self.record(&event, session);
                Ok(true)
            }
            Recovery::Nothing => Ok(true),
            Recovery::Resync => {
                self.resyncs.request();
                Ok(true)
            }
        }
    }

    /// Starts a new session when a re-sync is requested and allowed (and
    /// `may`: not while shutting down): closing with 1000 drops the session, so
    /// twilight identifies again and the new `GUILD_CREATE` is diffed against the
    /// view.
    fn resync_if_due(&mut self, may: bool) {
        if may && self.resyncs.take_due(tokio::time::Instant::now()) {
            tracing::warn!("re-syncing the voice view: starting a new gateway session");
            metrics::resynced();
            if let Err(error) = self.sender.close(CloseFrame::NORMAL) {
                tracing::warn!(%error, "could not close the session for a re-sync");
            }
        }
    }

    /// An error from the shard: an unreadable dispatch is kept and recovered
    /// (the session goes on); anything else means the connection is not live
    /// any more (docs/spec.md §8), and the reconnect pacing decides the wait.
    async fn receive_error(
        &mut self,
        error: &ReceiveMessageError,
        state: ShardState,
        session: Option<StoredSession>,
        may_resync: bool,
    ) -> Result<Step, WorkerError> {
        let Some(unreadable) = Unreadable::from_error(error) else {
            self.status.set_state(gateway_state(state));
            return Ok(Step::Hold(self.reconnects.after_error(error, state)));
        };
        if !self.unreadable(&unreadable, session).await? {
            return Ok(Step::Fenced);
        }
        self.resync_if_due(may_resync);
        Ok(Step::Hold(None))
    }

    /// Every few seconds: saves the session when its sequence moved, and starts
    /// a re-sync that was waiting for its turn (when `may_resync`).
    async fn tick(
        &mut self,
        session: Option<StoredSession>,
        may_resync: bool,
    ) -> Result<(), WorkerError> {
        self.save(session).await?;
        self.resync_if_due(may_resync);
        Ok(())
    }

    /// Saves the session when its sequence moved, after committing the batch:
    /// a sequence is never stored ahead of the events of the dispatches it
    /// counts (and not at all when the commit was fenced).
    async fn save(&mut self, session: Option<StoredSession>) -> Result<(), WorkerError> {
        if !self.flush().await? {
            return Ok(());
        }
        let Some(current) = session
            .as_ref()
            .filter(|current| Some(*current) != self.saved.as_ref())
        else {
            return Ok(());
        };
        if self.store.save_session(current).await? {
            self.saved = session;
        }
        Ok(())
    }

    /// Notes an event: metrics, logs, the close code, the bot's voice parts.
    fn note(&mut self, event: &Event, shard: &Shard) {
        let guild_id = self.settings.guild_id;
        match event {
            Event::Ready(ready) => {
                let bot = Snowflake::from(ready.user.id.into_nonzero());
                self.bot_user = Some(bot);
                self.voice
                    .ready(guild_id, bot, shard.sender(), &self.produced);
                metrics::identified();
                self.reconnects.live();
                self.status.session_started();
                tracing::info!("identified: new gateway session");
            }
            Event::Resumed => {
                // A resumed session sees no READY: the stored session knows the bot.
                if let Some(bot) = self.bot_user {
                    self.voice
                        .ready(guild_id, bot, shard.sender(), &self.produced);
                }
                metrics::resumed();
                self.reconnects.live();
                tracing::info!("gateway session resumed");
            }
            Event::GatewayClose(frame) => {
                self.last_close = frame.as_ref().map(|f| f.code);
                tracing::warn!(code = ?self.last_close, "gateway connection closed");
            }
            Event::GatewayInvalidateSession(resumable) => {
                tracing::warn!(resumable, "gateway invalidated the session");
            }
            Event::GatewayReconnect => tracing::info!("gateway asked us to reconnect"),
            Event::VoiceStateUpdate(update) => self.voice.voice_state(&update.0),
            Event::VoiceServerUpdate(update) => self.voice.voice_server(update),
            Event::GatewayHeartbeatAck => {
                if let Some(latency) = shard.latency().recent().first() {
                    metrics::gateway_latency(*latency);
                }
            }
            _ => {}
        }
    }
}

/// The shard's next item if it is ready now (the gateway already sent it),
/// without waiting. Polling with a no-op waker is safe: the loop polls the
/// shard again, with its own waker, before it waits.
fn ready_item(shard: &mut Shard) -> Poll<Item> {
    let next = std::pin::pin!(shard.next_event(WANTED));
    next.poll(&mut Context::from_waker(Waker::noop()))
}

/// Sleeps until `hold` (never returns when there is none).
async fn sleep_until(hold: Option<tokio::time::Instant>) {
    match hold {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Whether `event` shows, while `closing`, that our close is out: twilight
/// reports the close, or it has already dialled again (a Hello) — the loop
/// stops before it resumes.
fn closes(event: &Event, closing: bool) -> bool {
    closing && matches!(event, Event::GatewayClose(_) | Event::GatewayHello(_))
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
        Event::ChannelUpdate(channel) => Some(tracker.channel_update(&channel.0)),
        Event::ChannelDelete(channel) => Some(tracker.channel_delete(&channel.0)),
        // `@everyone`'s permissions decide which voice channels are rooms (docs/spec.md §7.1).
        Event::RoleUpdate(update) => Some(tracker.role_update(update.guild_id, &update.role)),
        _ => None,
    }
}

fn current_session(shard: &Shard, bot_user: Option<Snowflake>) -> Option<StoredSession> {
    shard.session().map(|session| StoredSession {
        id: session.id().to_owned(),
        sequence: session.sequence(),
        resume_url: shard.resume_url().map(str::to_owned),
        bot_user_id: bot_user,
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
