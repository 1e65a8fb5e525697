//! Shared by the RTC tests (`main.rs`) and benchmark (`bench.rs`) beside it: the simulator's test CA trusted through
//! `SSL_CERT_FILE` (by re-running the binary with it set: the workspace forbids `unsafe`, so
//! `std::env::set_var` is out), and a tiny stand-in for the worker's gateway side — a twilight
//! shard on the simulator that sends op 4 for the client and feeds it the bot's
//! `VOICE_STATE_UPDATE` / `VOICE_SERVER_UPDATE`.

#![allow(dead_code)]

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use coven_contract::Snowflake;
use coven_discord::{
    DiscordRtcClient, RtcSettings, TransportPreference, VoiceGatewayError, VoiceGatewaySender,
};
use coven_sim::{SeedIds, SimConfig, SimHandle, Simulator};
use twilight_gateway::{
    ConfigBuilder, Event, EventTypeFlags, Intents, MessageSender, Shard, ShardId, StreamExt as _,
};
use twilight_model::gateway::payload::outgoing::UpdateVoiceState;
use twilight_model::id::Id;

/// Re-runs this binary with `SSL_CERT_FILE` = the simulator's test CA unless it is set so
/// already; `Some(code)` is the child's exit code (the caller returns it).
pub fn reexec_with_test_ca() -> Option<ExitCode> {
    let ca = coven_sim::voice::test_ca_path();
    if std::env::var_os("SSL_CERT_FILE").is_some_and(|v| v == ca.as_os_str()) {
        return None;
    }
    let exe = std::env::current_exe().expect("current exe");
    let status = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("SSL_CERT_FILE", &ca)
        .status()
        .expect("re-run with SSL_CERT_FILE");
    Some(ExitCode::from(
        u8::try_from(status.code().unwrap_or(1)).unwrap_or(1),
    ))
}

/// The worker's side, as the RTC client sees it: op 4 through a twilight shard.
pub struct ShardVoice {
    sender: MessageSender,
    guild_id: u64,
    /// When set, op 4 is silently dropped (to test the connect timeout).
    pub swallow: AtomicBool,
}

impl VoiceGatewaySender for ShardVoice {
    fn update_voice_state(
        &self,
        channel_id: Option<Snowflake>,
        self_mute: bool,
        self_deaf: bool,
    ) -> Result<(), VoiceGatewayError> {
        if self.swallow.load(Ordering::SeqCst) {
            return Ok(());
        }
        let channel = channel_id.map(|c| Id::new(c.get()));
        self.sender
            .command(&UpdateVoiceState::new(
                Id::new(self.guild_id),
                channel,
                self_deaf,
                self_mute,
            ))
            .map_err(VoiceGatewayError::new)
    }
}

/// A simulator, the bot's shard and an RTC client wired together.
pub struct Bot {
    pub sim: Simulator,
    pub h: SimHandle,
    pub seed: SeedIds,
    pub rtc: DiscordRtcClient,
    pub gateway: Arc<ShardVoice>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Bot {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn snowflake(id: u64) -> Snowflake {
    Snowflake::new(id).expect("non-zero id")
}

/// Starts everything and waits until the shard is READY.
pub async fn start_bot(transport: TransportPreference, connect_timeout: Duration) -> Bot {
    start_bot_with(SimConfig::default(), transport, connect_timeout).await
}

/// [`start_bot`] with a simulator configuration.
pub async fn start_bot_with(
    config: SimConfig,
    transport: TransportPreference,
    connect_timeout: Duration,
) -> Bot {
    let settings = RtcSettings {
        connect_timeout,
        transport,
        ..RtcSettings::default()
    };
    start_bot_settings(config, settings).await
}

/// [`start_bot`] with a simulator configuration and the client's settings.
pub async fn start_bot_settings(config: SimConfig, settings: RtcSettings) -> Bot {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Simulator::start(config).await.expect("simulator starts");
    let h = sim.handle();
    let seed = h.seed();
    let shard_config = ConfigBuilder::new(
        sim.bot_token().to_owned(),
        Intents::GUILDS | Intents::GUILD_VOICE_STATES,
    )
    .proxy_url(sim.gateway_url())
    .build();
    let mut shard = Shard::with_config(ShardId::ONE, shard_config);
    let gateway = Arc::new(ShardVoice {
        sender: shard.sender(),
        guild_id: seed.guild_id,
        swallow: AtomicBool::new(false),
    });
    let rtc = DiscordRtcClient::with_settings(
        snowflake(seed.guild_id),
        snowflake(seed.bot_user_id),
        gateway.clone(),
        settings,
    );
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let feed = rtc.clone();
    let task = tokio::spawn(async move {
        let mut ready_tx = Some(ready_tx);
        while let Some(item) = shard.next_event(EventTypeFlags::all()).await {
            match item {
                Ok(Event::Ready(_)) => {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::VoiceStateUpdate(vs)) => feed.on_voice_state_update(&vs.0),
                Ok(Event::VoiceServerUpdate(vsu)) => feed.on_voice_server_update(&vsu),
                _ => {}
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .expect("shard READY in time")
        .expect("shard task alive");
    Bot {
        sim,
        h,
        seed,
        rtc,
        gateway,
        task,
    }
}
