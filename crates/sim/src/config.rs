//! Simulator configuration with fast, test-friendly defaults.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// A rate-limit bucket: `limit` requests per `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketConfig {
    /// Requests allowed per window.
    pub limit: u32,
    /// Window length.
    pub per: Duration,
}

impl BucketConfig {
    /// `limit` requests per `per`.
    pub const fn new(limit: u32, per: Duration) -> Self {
        Self { limit, per }
    }
}

/// The OAuth2 application the simulator knows.
#[derive(Clone, Debug)]
pub struct OAuthAppConfig {
    /// Client id; `None` means the application id (= the bot's user id), as on Discord.
    pub client_id: Option<String>,
    /// Client secret.
    pub client_secret: String,
    /// Allowed redirect URIs; empty allows any `http(s)` URI.
    pub redirect_uris: Vec<String>,
    /// The simulated user who consents at `/oauth2/authorize`; `None` means the first seeded member (alice).
    pub consenting_user: Option<u64>,
    /// Lifetime of an authorization code.
    pub code_ttl: Duration,
    /// Lifetime of an access token (`expires_in`).
    pub access_token_ttl: Duration,
}

impl Default for OAuthAppConfig {
    fn default() -> Self {
        Self {
            client_id: None,
            client_secret: "sim-client-secret".to_owned(),
            redirect_uris: Vec::new(),
            consenting_user: None,
            code_ttl: Duration::from_secs(600),
            access_token_ttl: Duration::from_secs(604_800),
        }
    }
}

/// Everything configurable about the simulator.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Where to listen; use port 0 for an ephemeral port. Loopback only.
    pub bind: SocketAddr,
    /// The bot token that REST (`Authorization: Bot <token>`) and IDENTIFY must present.
    pub bot_token: String,
    /// HELLO's `heartbeat_interval`.
    pub heartbeat_interval: Duration,
    /// Close a connection (4009, session kept resumable) that sends no heartbeat for this
    /// long; `None` never does. Discord closes connections that stop heartbeating.
    pub heartbeat_timeout: Option<Duration>,
    /// How long a session stays resumable after its connection dropped.
    pub session_resume_window: Duration,
    /// Largest payload a client may send (Discord: 4096 bytes, else close 4002).
    pub max_payload_bytes: usize,
    /// Commands a connection may send per `command_window` (Discord: 120 per 60 s, else 4008).
    pub commands_per_window: u32,
    /// The command rate-limit window.
    pub command_window: Duration,
    /// Whether privileged intents are enabled for the application (else 4014).
    pub allow_privileged_intents: bool,
    /// Bucket of `POST /guilds/{guild_id}/channels`, per guild (Discord: 5 per 5 s).
    pub channel_create_bucket: BucketConfig,
    /// Buckets of other routes by route key (e.g. `"DELETE /channels/{channel_id}"`),
    /// overriding `default_bucket`.
    pub route_buckets: HashMap<String, BucketConfig>,
    /// Bucket of every other REST route.
    pub default_bucket: BucketConfig,
    /// The global REST limit per second (Discord: 50).
    pub global_per_second: u32,
    /// OAuth2 application.
    pub oauth: OAuthAppConfig,
    /// `endpoint` of `VOICE_SERVER_UPDATE`; `None` means this simulator's own voice gateway
    /// (`127.0.0.1:VOICE_PORT`, TLS; see `Simulator::voice_endpoint`).
    pub voice_endpoint: Option<String>,
    /// `heartbeat_interval` of the voice gateway's HELLO (Discord: 13.75 s).
    pub voice_heartbeat_interval: Duration,
    /// Offer DAVE (protocol version 1) to voice clients that announce it, run the delivery
    /// service and make simulated users members of the MLS group (Discord: required).
    pub voice_dave: bool,
    /// Close voice clients that do not announce DAVE (`max_dave_protocol_version` 0 or absent)
    /// with 4017 after IDENTIFY, in non-stage channels, as Discord does since 2026-03-01.
    /// Only meaningful with `voice_dave`.
    pub voice_require_dave: bool,
}

impl SimConfig {
    /// Discord's own numbers: heartbeat 41.25 s, channel creation 5 per 5 s per guild,
    /// sessions resumable for 3 minutes. For `coven sim` and demos that should feel real.
    pub fn discord_like() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(41_250),
            heartbeat_timeout: Some(Duration::from_millis(41_250 * 3 / 2)),
            session_resume_window: Duration::from_secs(180),
            channel_create_bucket: BucketConfig::new(5, Duration::from_secs(5)),
            default_bucket: BucketConfig::new(5, Duration::from_secs(1)),
            voice_heartbeat_interval: Duration::from_millis(13_750),
            voice_dave: true,
            voice_require_dave: true,
            ..Self::default()
        }
    }

    /// The settings a client may want to know, for the control API's state (`config`).
    pub fn describe(&self) -> serde_json::Value {
        let bucket = |b: &BucketConfig| serde_json::json!({"limit": b.limit, "per_ms": u64::try_from(b.per.as_millis()).unwrap_or(u64::MAX)});
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        serde_json::json!({
            "heartbeat_interval_ms": ms(self.heartbeat_interval),
            "session_resume_window_ms": ms(self.session_resume_window),
            "channel_create_bucket": bucket(&self.channel_create_bucket),
            "default_bucket": bucket(&self.default_bucket),
            "global_per_second": self.global_per_second,
            "voice_heartbeat_interval_ms": ms(self.voice_heartbeat_interval),
            "voice_dave": self.voice_dave,
            "voice_require_dave": self.voice_dave && self.voice_require_dave,
        })
    }

    /// The same configuration listening on `127.0.0.1:port` (0 = ephemeral).
    #[must_use]
    pub fn with_port(mut self, port: u16) -> Self {
        self.bind = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        self
    }
}

/// Fast, test-friendly values: ephemeral port, 1 s heartbeats, channel creation 5 per 1 s,
/// 60 s resume window; Discord's own payload (4096 B), command (120/60 s) and global (50/s) limits.
impl Default for SimConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            bot_token: "MTI0NjI1MTg3ODE4NzE0MzE3MA.GsimXX.coven-simulator-bot-token".to_owned(),
            heartbeat_interval: Duration::from_secs(1),
            heartbeat_timeout: None,
            session_resume_window: Duration::from_secs(60),
            max_payload_bytes: 4096,
            commands_per_window: 120,
            command_window: Duration::from_secs(60),
            allow_privileged_intents: true,
            channel_create_bucket: BucketConfig::new(5, Duration::from_secs(1)),
            route_buckets: HashMap::new(),
            default_bucket: BucketConfig::new(10, Duration::from_secs(1)),
            global_per_second: 50,
            oauth: OAuthAppConfig::default(),
            voice_endpoint: None,
            voice_heartbeat_interval: Duration::from_secs(5),
            voice_dave: false,
            voice_require_dave: false,
        }
    }
}
