//! Everything the hub is configured with, as one plain struct.
//!
//! The binary reads the environment (docs/spec.md §3) and fills this in; the crate itself
//! reads nothing. Timeouts and limits default to the spec's values but stay public
//! so tests can shorten them.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use coven_contract::{Secret, Snowflake};
use coven_discord::OAuthSettings;
use metrics_exporter_prometheus::PrometheusHandle;
use url::Url;

use crate::rtc_relay::RtcLimits;
use crate::rtc_turn::IceSettings;

/// The hub's configuration.
#[derive(Debug, Clone)]
#[allow(clippy::struct_field_names)]
pub struct HubSettings {
    /// `PRIMARY_GUILD_ID`: the only guild whose events reach browsers.
    pub primary_guild_id: Snowflake,
    /// `HUB_SECRET`: every secret accepted on the webhook (rotation: any matches).
    pub hub_secrets: Vec<Secret>,
    /// `JWT_ISSUER`: the `iss` every token must carry.
    pub jwt_issuer: String,
    /// `JWT_AUDIENCE`: the `aud` every token must carry.
    pub jwt_audience: String,
    /// `JWT_PUBLIC_JWK_URL`: an external issuer's JWKS. Unset, only key sources
    /// added with [`crate::HubBuilder::key_source`] are trusted.
    pub jwt_public_jwk_url: Option<Url>,
    /// `WEB_ORIGIN`: the only origin CORS allows; unset, no cross-origin access.
    pub web_origin: Option<Url>,
    /// Accepted clock difference on `exp`/`nbf` (60 s).
    pub jwt_leeway: Duration,
    /// The JWKS is fetched again on an unknown `kid` at most this often (60 s).
    pub jwks_refresh_interval: Duration,
    /// The JWKS is refreshed this often in the background (10 min), or as its
    /// answer's `Cache-Control: max-age` says, within [1 min, 1 day].
    pub jwks_max_age: Duration,
    /// The own issuer's signing key is replaced when it is this old (30 days); the
    /// previous keys stay trusted, so nobody is logged out.
    pub jwt_key_max_age: Duration,
    /// Events retained for `lastSeq` resumes, by count.
    pub replay_capacity: usize,
    /// Events retained for `lastSeq` resumes, by age.
    pub replay_max_age: Duration,
    /// Webhook event ids (and announced rooms) remembered, by count.
    pub dedupe_capacity: usize,
    /// Webhook event ids (and announced rooms) remembered, by age.
    pub dedupe_max_age: Duration,
    /// A browser must send `auth` within this (30 s).
    pub auth_timeout: Duration,
    /// The hub pings every browser this often (30 s).
    pub ping_interval: Duration,
    /// A browser silent for this long, or whose writes make no progress for this
    /// long, is dropped (60 s).
    pub idle_timeout: Duration,
    /// A browser whose unsent data passes this is closed with 1013 (1 MiB).
    pub max_unsent_bytes: usize,
    /// How long a closing handshake may take before the socket is dropped.
    pub close_timeout: Duration,
    /// Per-user rooms API budget: this many requests...
    pub rooms_rate_burst: u32,
    /// ...refilled one at a time over this period each.
    pub rooms_rate_period: Duration,
    /// Per-client-IP budget (IPv6 per /64) of the API routes (`/api/create-room`,
    /// `/api/end-room`, `/api/rooms…`, `/api/cues`): this many requests... (100,
    /// ten times `rooms_rate_burst`, docs/spec.md §7.2, so that players behind one
    /// NAT do not throttle each other)
    pub api_rate_per_ip_burst: u32,
    /// ...refilled one at a time over this period each (600 ms: 100 a minute).
    pub api_rate_per_ip_period: Duration,
    /// `GET /api/rooms` reuses the view it read from the worker for this long
    /// (1 s, docs/spec.md §7.2): one fetch per period however many browsers ask,
    /// concurrent requests waiting for the one fetch in flight. Zero: every
    /// request fetches.
    pub snapshot_cache_ttl: Duration,
    /// How long an `Idempotency-Key` answer is kept.
    pub idempotency_max_age: Duration,
    /// How many `Idempotency-Key` answers are kept.
    pub idempotency_capacity: usize,
    /// How long shutdown waits for browsers and requests to finish.
    pub drain_timeout: Duration,
    /// `STATE_DIR` (the hub's subfolder): where the hub's own issuer keeps its
    /// signing keys (`<dir>/jwt-keys.json`). Unset, the own issuer's key lives in
    /// memory only and every token dies with the process.
    pub state_dir: Option<PathBuf>,
    /// Lifetime of the tokens the hub's own issuer signs (1 h).
    pub jwt_ttl: Duration,
    /// Discord login (`/auth/login`); unset, `/auth/login` answers 503.
    pub login: Option<LoginSettings>,
    /// `WORKER_ENDPOINT`: the worker's base URLs (e.g. `http://127.0.0.1:8080`, or
    /// both workers of an active/standby pair); the room snapshot reads
    /// `GET {endpoint}/voice-view` and the bot's commands go to
    /// `POST {endpoint}/commands/…`, signed with the first `HUB_SECRET`. A request
    /// goes to the endpoint that last answered first, then to the next on a
    /// connection error, a timeout or a 503. Empty, the snapshot lists voice
    /// channels without members and bot commands answer 503.
    pub worker_endpoints: Vec<Url>,
    /// `REDIS_URL`: with it, several hubs share events, `seq`, replay, the rooms
    /// API's idempotency and rate limits, and the own issuer's keys through Redis
    /// (see `redis_link` for the keys). Unset, everything stays in this process.
    /// May carry a password: never logged.
    pub redis_url: Option<Secret>,
    /// The Prometheus handle `/metrics` renders; `None` installs (once per
    /// process) a global recorder. Pass one when the process already has one.
    pub metrics: Option<PrometheusHandle>,
    /// An HTTP request's head must be in within this (10 s, docs/spec.md §6.6),
    /// counted from when the hub starts waiting for it: a new connection, or a
    /// keep-alive one after its previous response.
    pub header_read_timeout: Duration,
    /// An HTTP connection on which no byte moved either way, with no request
    /// running, is closed after this (60 s). Not applied to WebSockets, which
    /// have `ping_interval` / `idle_timeout`.
    pub http_idle_timeout: Duration,
    /// `MAX_CONNECTIONS`: TCP connections open at once, HTTP and WebSocket (20,000).
    pub max_connections: usize,
    /// `MAX_CONNECTIONS_PER_IP`: connections per client IP, IPv6 per /64 (256).
    pub max_connections_per_ip: usize,
    /// `MAX_UNAUTHENTICATED_PER_IP`: sockets per client IP not yet through `auth` (32).
    pub max_unauthenticated_per_ip: usize,
    /// `MAX_SOCKETS_PER_USER`: authenticated sockets per token `sub` (16).
    pub max_sockets_per_user: usize,
    /// `TRUSTED_PROXIES`: peers whose last `X-Forwarded-For` hop is taken as the
    /// client IP. Empty, the client IP is always the TCP peer's.
    pub trusted_proxies: Vec<IpAddr>,
    /// `ROOMS_CATEGORY_ID`: the category new rooms are created in; a `parentId`
    /// must then be it or absent (docs/spec.md §7.1). Unset, `parentId` is free.
    pub rooms_category_id: Option<Snowflake>,
    /// Live rooms one user may have created through the API (3).
    pub max_rooms_per_user: usize,
    /// Live rooms the guild may have that were created through the API (50).
    pub max_rooms_per_guild: usize,
    /// How long a member's guild permissions (owner, `MANAGE_CHANNELS`,
    /// `ADMINISTRATOR`) are reused before Discord is asked again (30 s).
    pub member_permissions_ttl: Duration,
    /// `TURN_URLS` / `TURN_SECRET`: the `iceServers` of `auth.ok` (docs/spec.md §12).
    pub ice: IceSettings,
    /// How much webcam signalling (`rtc.signal`) one socket may send.
    pub rtc_limits: RtcLimits,
    /// `coven demo` only: the Discord simulator's base URL, whose control API the
    /// lobby's "Sit at this table" goes through (`POST /api/demo/sit/{channelId}`).
    /// Unset (always outside the demo), that route answers 404.
    pub demo_sim_url: Option<Url>,
}

impl HubSettings {
    /// Settings with the spec's defaults for everything not given.
    pub fn new(primary_guild_id: Snowflake, hub_secrets: Vec<Secret>, jwt_issuer: String) -> Self {
        Self {
            primary_guild_id,
            hub_secrets,
            jwt_issuer,
            jwt_audience: "spell-coven-web".into(),
            jwt_public_jwk_url: None,
            web_origin: None,
            jwt_leeway: Duration::from_secs(60),
            jwks_refresh_interval: Duration::from_secs(60),
            jwks_max_age: crate::jwt::DEFAULT_JWKS_MAX_AGE,
            jwt_key_max_age: Duration::from_secs(30 * 24 * 60 * 60),
            replay_capacity: 4096,
            replay_max_age: Duration::from_secs(300),
            dedupe_capacity: 100_000,
            dedupe_max_age: Duration::from_secs(6 * 3600),
            auth_timeout: Duration::from_secs(30),
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_unsent_bytes: 1024 * 1024,
            close_timeout: Duration::from_secs(5),
            rooms_rate_burst: 10,
            rooms_rate_period: Duration::from_secs(6),
            api_rate_per_ip_burst: 100,
            api_rate_per_ip_period: Duration::from_millis(600),
            snapshot_cache_ttl: Duration::from_secs(1),
            idempotency_max_age: Duration::from_secs(24 * 3600),
            idempotency_capacity: 10_000,
            drain_timeout: Duration::from_secs(10),
            state_dir: None,
            jwt_ttl: Duration::from_secs(3600),
            login: None,
            worker_endpoints: Vec::new(),
            redis_url: None,
            metrics: None,
            header_read_timeout: Duration::from_secs(10),
            http_idle_timeout: Duration::from_secs(60),
            max_connections: 20_000,
            max_connections_per_ip: 256,
            max_unauthenticated_per_ip: 32,
            max_sockets_per_user: 16,
            trusted_proxies: Vec::new(),
            rooms_category_id: None,
            max_rooms_per_user: 3,
            max_rooms_per_guild: 50,
            member_permissions_ttl: crate::permissions::ACCESS_CACHE_TTL,
            ice: IceSettings::none(),
            rtc_limits: RtcLimits::default(),
            demo_sim_url: None,
        }
    }
}

/// Discord login with OAuth2 + PKCE (issue 7).
#[derive(Debug, Clone)]
pub struct LoginSettings {
    /// `DISCORD_API_URL`, `DISCORD_CLIENT_ID`, `DISCORD_CLIENT_SECRET` and
    /// `OAUTH_REDIRECT_URI` (which must point at this hub's `/auth/callback`).
    pub oauth: OAuthSettings,
    /// How long a started login may take before its `state` expires (10 min).
    pub flow_ttl: Duration,
    /// Logins in progress kept at most (10,000), in this hub's memory and, with
    /// `REDIS_URL`, in Redis for the guild; beyond, the oldest is dropped.
    pub max_flows: usize,
    /// `/auth/login` per client IP (IPv6 per /64): this many at once... (100, ten
    /// times the rooms API's per-user burst, docs/spec.md §7.2)
    pub rate_per_ip_burst: u32,
    /// ...refilled one at a time over this period each (600 ms: 100 a minute).
    pub rate_per_ip_period: Duration,
}

impl LoginSettings {
    /// Login with the default flow lifetime.
    pub fn new(oauth: OAuthSettings) -> Self {
        Self {
            oauth,
            flow_ttl: Duration::from_secs(600),
            max_flows: 10_000,
            rate_per_ip_burst: 100,
            rate_per_ip_period: Duration::from_millis(600),
        }
    }
}
