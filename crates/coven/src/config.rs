//! Typed configuration for each command, read from the environment (docs/spec.md §3).
//!
//! Each command reads exactly the variables it needs into a struct of parsed
//! values, once, at start. A missing or malformed variable becomes a
//! [`ConfigError`] that names the variable and never repeats its value, so the
//! process can stop with one clear line that is safe to log. Secrets are held in
//! [`Secret`], whose `Debug` is redacted, so dumping a config cannot leak them.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use coven_contract::{Secret, Snowflake};
use url::Url;

/// A missing or malformed environment variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set (or is empty).
    #[error("configuration error: {0} is not set")]
    Missing(&'static str),
    /// A variable is set to something unusable; `reason` never contains the value.
    #[error("configuration error: {name} is invalid: {reason}")]
    Invalid {
        /// The variable's name.
        name: &'static str,
        /// What is wrong with it, without its value.
        reason: String,
    },
}

/// Where variables come from: the process environment, or a map in tests.
pub trait Source {
    /// The variable's value, if set.
    fn get(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Source for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Reads and parses variables from a [`Source`], treating empty values as unset.
struct Reader<'a>(&'a dyn Source);

impl Reader<'_> {
    fn raw(&self, name: &str) -> Option<String> {
        self.0.get(name).filter(|value| !value.trim().is_empty())
    }

    fn required<T: FromStr>(&self, name: &'static str) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        self.optional(name)?.ok_or(ConfigError::Missing(name))
    }

    fn optional<T: FromStr>(&self, name: &'static str) -> Result<Option<T>, ConfigError>
    where
        T::Err: fmt::Display,
    {
        self.raw(name)
            .map(|value| {
                value
                    .trim()
                    .parse()
                    .map_err(|error: T::Err| ConfigError::Invalid {
                        name,
                        reason: error.to_string(),
                    })
            })
            .transpose()
    }

    fn secret(&self, name: &'static str) -> Result<Secret, ConfigError> {
        self.raw(name)
            .map(Secret::new)
            .ok_or(ConfigError::Missing(name))
    }

    fn url(&self, name: &'static str, schemes: &[&str]) -> Result<Option<Url>, ConfigError> {
        self.optional::<Url>(name)?
            .map(|url| check_scheme(name, url, schemes))
            .transpose()
    }

    /// A comma-separated list of URLs (empty when unset); every entry must be a URL
    /// with one of `schemes`.
    fn url_list(&self, name: &'static str, schemes: &[&str]) -> Result<Vec<Url>, ConfigError> {
        let Some(raw) = self.raw(name) else {
            return Ok(Vec::new());
        };
        raw.split(',')
            .map(|entry| {
                let entry = entry.trim();
                if entry.is_empty() {
                    return Err(ConfigError::Invalid {
                        name,
                        reason: "an entry of the comma-separated list is empty".into(),
                    });
                }
                let url = entry
                    .parse()
                    .map_err(|error: url::ParseError| ConfigError::Invalid {
                        name,
                        reason: error.to_string(),
                    })?;
                check_scheme(name, url, schemes)
            })
            .collect()
    }
}

/// `url` when its scheme is one of `schemes`, else an error naming the variable.
fn check_scheme(name: &'static str, url: Url, schemes: &[&str]) -> Result<Url, ConfigError> {
    if schemes.contains(&url.scheme()) {
        Ok(url)
    } else {
        Err(ConfigError::Invalid {
            name,
            reason: format!("the URL scheme must be one of {}", schemes.join(", ")),
        })
    }
}

/// `LOG_LEVEL`: how much to log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogLevel {
    /// Everything useful for debugging.
    Debug,
    /// Normal operation (the default).
    #[default]
    Info,
    /// Only problems.
    Warn,
    /// Only failures.
    Error,
}

impl FromStr for LogLevel {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "DEBUG" => Ok(Self::Debug),
            "INFO" => Ok(Self::Info),
            "WARN" => Ok(Self::Warn),
            "ERROR" => Ok(Self::Error),
            _ => Err("expected one of DEBUG, INFO, WARN, ERROR"),
        }
    }
}

/// `LOG_FORMAT`: human-readable lines or JSON lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable (the default).
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl FromStr for LogFormat {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err("expected text or json"),
        }
    }
}

/// Logging settings, read by every command before anything else.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogConfig {
    /// `LOG_LEVEL`, default `INFO`.
    pub level: LogLevel,
    /// `LOG_FORMAT`, default `text`.
    pub format: LogFormat,
}

impl LogConfig {
    /// Reads `LOG_LEVEL` and `LOG_FORMAT`.
    pub fn from_env(source: &dyn Source) -> Result<Self, ConfigError> {
        let env = Reader(source);
        Ok(Self {
            level: env.optional("LOG_LEVEL")?.unwrap_or_default(),
            format: env.optional("LOG_FORMAT")?.unwrap_or_default(),
        })
    }
}

/// Variables shared by the worker and the hub.
#[derive(Debug, Clone)]
pub struct SharedConfig {
    /// `PRIMARY_GUILD_ID`: the one guild whose rooms we serve.
    pub primary_guild_id: Snowflake,
    /// `HUB_SECRET`: the first signs, any verifies (comma-separated for rotation).
    pub hub_secrets: Vec<Secret>,
    /// `STATE_DIR`, default `./state`; each command uses its own subfolder.
    pub state_dir: PathBuf,
    /// `REDIS_URL`, optional; may hold a password, so it is kept secret.
    pub redis_url: Option<Secret>,
    /// `DISCORD_API_URL` and `DISCORD_GATEWAY_URL`.
    pub discord: DiscordEndpoints,
}

impl SharedConfig {
    /// Reads the shared variables.
    pub fn from_env(source: &dyn Source) -> Result<Self, ConfigError> {
        let env = Reader(source);
        Ok(Self {
            primary_guild_id: env.required("PRIMARY_GUILD_ID")?,
            hub_secrets: parse_hub_secrets(&env.secret("HUB_SECRET")?)?,
            state_dir: env.optional("STATE_DIR")?.unwrap_or_else(|| "state".into()),
            redis_url: env.raw("REDIS_URL").map(Secret::new),
            discord: DiscordEndpoints::from_env(source)?,
        })
    }
}

/// `HUB_SECRET` split on commas; every entry must be non-empty.
fn parse_hub_secrets(raw: &Secret) -> Result<Vec<Secret>, ConfigError> {
    let secrets: Vec<Secret> = raw
        .expose()
        .split(',')
        .map(|s| Secret::new(s.trim()))
        .collect();
    if secrets.iter().any(|s| s.expose().is_empty()) {
        return Err(ConfigError::Invalid {
            name: "HUB_SECRET",
            reason: "an entry of the comma-separated list is empty".into(),
        });
    }
    Ok(secrets)
}

/// Where Discord is: real Discord by default, the simulator in tests and the demo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscordEndpoints {
    /// `DISCORD_API_URL`, the REST and OAuth2 origin (default `https://discord.com`).
    pub api_url: Url,
    /// `DISCORD_GATEWAY_URL` (default `wss://gateway.discord.gg`).
    pub gateway_url: Url,
}

impl DiscordEndpoints {
    /// Reads `DISCORD_API_URL` and `DISCORD_GATEWAY_URL`.
    ///
    /// # Panics
    ///
    /// Never: the built-in defaults are valid URLs.
    pub fn from_env(source: &dyn Source) -> Result<Self, ConfigError> {
        let env = Reader(source);
        Ok(Self {
            api_url: env
                .url("DISCORD_API_URL", &["http", "https"])?
                .unwrap_or_else(|| Url::parse("https://discord.com").expect("valid URL")),
            gateway_url: env
                .url("DISCORD_GATEWAY_URL", &["ws", "wss"])?
                .unwrap_or_else(|| Url::parse("wss://gateway.discord.gg").expect("valid URL")),
        })
    }
}

/// Configuration of `coven worker`.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The shared variables.
    pub shared: SharedConfig,
    /// `DISCORD_BOT_TOKEN`.
    pub bot_token: Secret,
    /// `HUB_ENDPOINT`: URL of the hub's `/api/internal/events`.
    pub hub_endpoint: Url,
    /// `HEALTH_CHECK_HOST`, default `0.0.0.0` (every interface): the address the
    /// health/command listener binds.
    pub health_check_host: IpAddr,
    /// `HEALTH_CHECK_PORT`, default 8080: `/health`, `/metrics`, commands.
    pub health_check_port: u16,
    /// `OUTBOX_MAX_EVENTS`, default 1,000,000: undelivered events kept before new
    /// ones go to the dead-letter table (a warning is logged past 80 %).
    pub outbox_max_events: u64,
}

/// `HEALTH_CHECK_HOST`: an IP address (`::` or `[::]` for IPv6), default `0.0.0.0`.
fn health_check_host(env: &Reader<'_>) -> Result<IpAddr, ConfigError> {
    let Some(raw) = env.raw("HEALTH_CHECK_HOST") else {
        return Ok(IpAddr::from([0, 0, 0, 0]));
    };
    let raw = raw.trim();
    let bare = raw
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(raw);
    bare.parse().map_err(|_| ConfigError::Invalid {
        name: "HEALTH_CHECK_HOST",
        reason: "must be an IP address such as 0.0.0.0 (every interface), 127.0.0.1 or ::".into(),
    })
}

impl WorkerConfig {
    /// Reads every variable `coven worker` needs.
    pub fn from_env(source: &dyn Source) -> Result<Self, ConfigError> {
        let env = Reader(source);
        Ok(Self {
            shared: SharedConfig::from_env(source)?,
            bot_token: env.secret("DISCORD_BOT_TOKEN")?,
            hub_endpoint: env
                .url("HUB_ENDPOINT", &["http", "https"])?
                .ok_or(ConfigError::Missing("HUB_ENDPOINT"))?,
            health_check_host: health_check_host(&env)?,
            health_check_port: env.optional("HEALTH_CHECK_PORT")?.unwrap_or(8080),
            outbox_max_events: env.optional("OUTBOX_MAX_EVENTS")?.unwrap_or(1_000_000),
        })
    }
}

/// Discord OAuth2 application settings for login; all three or none.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// `DISCORD_CLIENT_ID`.
    pub client_id: Snowflake,
    /// `DISCORD_CLIENT_SECRET`.
    pub client_secret: Secret,
    /// `OAUTH_REDIRECT_URI`, the hub's `/auth/callback` as registered with Discord.
    pub redirect_uri: Url,
}

impl OAuthConfig {
    /// Reads the login variables: `None` when none is set, an error when only some are.
    pub fn from_env(source: &dyn Source) -> Result<Option<Self>, ConfigError> {
        let env = Reader(source);
        let names = [
            "DISCORD_CLIENT_ID",
            "DISCORD_CLIENT_SECRET",
            "OAUTH_REDIRECT_URI",
        ];
        if names.iter().all(|name| env.raw(name).is_none()) {
            return Ok(None);
        }
        Ok(Some(Self {
            client_id: env.required("DISCORD_CLIENT_ID")?,
            client_secret: env.secret("DISCORD_CLIENT_SECRET")?,
            redirect_uri: env
                .url("OAUTH_REDIRECT_URI", &["http", "https"])?
                .ok_or(ConfigError::Missing("OAUTH_REDIRECT_URI"))?,
        }))
    }
}

/// Configuration of `coven hub`.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// The shared variables.
    pub shared: SharedConfig,
    /// `HOST`, default `0.0.0.0`.
    pub host: String,
    /// `PORT`, default 3000.
    pub port: u16,
    /// `DISCORD_BOT_TOKEN`, for the rooms API.
    pub bot_token: Secret,
    /// `JWT_ISSUER`: the `iss` every accepted token must carry.
    pub jwt_issuer: String,
    /// `JWT_AUDIENCE`, default `spell-coven-web`.
    pub jwt_audience: String,
    /// `JWT_PUBLIC_JWK_URL`: an external issuer's JWKS; unset, the hub issues tokens itself.
    pub jwt_public_jwk_url: Option<Url>,
    /// `WEB_ORIGIN`: the only origin CORS allows; unset, no cross-origin access.
    pub web_origin: Option<Url>,
    /// `MAX_API_RETRIES`, default 3.
    pub max_api_retries: u32,
    /// Login settings; `None` disables `/auth/login`.
    pub oauth: Option<OAuthConfig>,
    /// `WORKER_ENDPOINT`: the worker's base URL, or several separated by commas (the
    /// two workers of an active/standby pair), for the room snapshot and the bot's
    /// signed commands; empty when unset (bot commands are off).
    pub worker_endpoints: Vec<Url>,
    /// `MAX_CONNECTIONS`, `MAX_CONNECTIONS_PER_IP`, `MAX_UNAUTHENTICATED_PER_IP`,
    /// `MAX_SOCKETS_PER_USER`, `TRUSTED_PROXIES` (docs/spec.md §6.6).
    pub limits: LimitsConfig,
    /// `ROOMS_CATEGORY_ID` (optional snowflake): the category new rooms go in
    /// (docs/spec.md §7.1).
    pub rooms_category_id: Option<Snowflake>,
    /// `TURN_URLS` / `TURN_SECRET`: the webcams' STUN/TURN servers (docs/spec.md §12).
    pub turn: TurnConfig,
}

/// `TURN_URLS` (comma-separated `stun:`, `turn:`, `turns:` URLs) and `TURN_SECRET`
/// (coturn's `static-auth-secret`), both optional; a TURN URL needs the secret, and
/// the secret needs a TURN URL.
#[derive(Debug, Clone, Default)]
pub struct TurnConfig {
    /// `TURN_URLS`; empty when unset.
    pub urls: Vec<String>,
    /// `TURN_SECRET`.
    pub secret: Option<Secret>,
}

impl TurnConfig {
    /// Reads and checks `TURN_URLS` and `TURN_SECRET`.
    pub fn from_env(source: &dyn Source) -> Result<Self, ConfigError> {
        let env = Reader(source);
        let invalid = |name, reason: &str| ConfigError::Invalid {
            name,
            reason: reason.into(),
        };
        let urls: Vec<String> = match env.raw("TURN_URLS") {
            None => Vec::new(),
            Some(raw) => raw.split(',').map(|url| url.trim().to_owned()).collect(),
        };
        for url in &urls {
            let scheme_ok = ["stun:", "turn:", "turns:"]
                .iter()
                .any(|scheme| url.starts_with(scheme) && url.len() > scheme.len());
            if !scheme_ok || url.chars().any(char::is_whitespace) {
                return Err(invalid(
                    "TURN_URLS",
                    "every entry must be a stun:, turn: or turns: URL (e.g. turn:turn.example.com:3478?transport=udp)",
                ));
            }
        }
        let secret = env.raw("TURN_SECRET").map(Secret::new);
        let has_turn = urls.iter().any(|url| coven_hub::is_turn(url));
        if has_turn && secret.is_none() {
            return Err(ConfigError::Missing("TURN_SECRET"));
        }
        if secret.is_some() && !has_turn {
            return Err(invalid(
                "TURN_SECRET",
                "set, but TURN_URLS lists no turn: or turns: URL to use it with",
            ));
        }
        Ok(Self { urls, secret })
    }
}

/// What one client may hold open, and whose `X-Forwarded-For` to believe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// `MAX_CONNECTIONS`, default 20,000: TCP connections open at once.
    pub max_connections: usize,
    /// `MAX_CONNECTIONS_PER_IP`, default 256.
    pub max_connections_per_ip: usize,
    /// `MAX_UNAUTHENTICATED_PER_IP`, default 32: sockets not yet through `auth`.
    pub max_unauthenticated_per_ip: usize,
    /// `MAX_SOCKETS_PER_USER`, default 16: authenticated sockets per token `sub`.
    pub max_sockets_per_user: usize,
    /// `TRUSTED_PROXIES`: comma-separated IPs; empty when unset.
    pub trusted_proxies: Vec<IpAddr>,
}

impl LimitsConfig {
    /// Reads the limits; each must be a whole number of at least 1.
    pub fn from_env(source: &dyn Source) -> Result<Self, ConfigError> {
        let env = Reader(source);
        let limit = |name: &'static str, default: usize| -> Result<usize, ConfigError> {
            match env.optional::<usize>(name)?.unwrap_or(default) {
                0 => Err(ConfigError::Invalid {
                    name,
                    reason: "must be at least 1".into(),
                }),
                n => Ok(n),
            }
        };
        let trusted_proxies = match env.raw("TRUSTED_PROXIES") {
            None => Vec::new(),
            Some(raw) => raw
                .split(',')
                .map(|entry| {
                    entry
                        .trim()
                        .parse::<IpAddr>()
                        .map_err(|_| ConfigError::Invalid {
                            name: "TRUSTED_PROXIES",
                            reason: "every entry must be an IP address (no ranges, no ports)"
                                .into(),
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(Self {
            max_connections: limit("MAX_CONNECTIONS", 20_000)?,
            max_connections_per_ip: limit("MAX_CONNECTIONS_PER_IP", 256)?,
            max_unauthenticated_per_ip: limit("MAX_UNAUTHENTICATED_PER_IP", 32)?,
            max_sockets_per_user: limit("MAX_SOCKETS_PER_USER", 16)?,
            trusted_proxies,
        })
    }
}

impl HubConfig {
    /// Reads every variable `coven hub` needs.
    pub fn from_env(source: &dyn Source) -> Result<Self, ConfigError> {
        let env = Reader(source);
        Ok(Self {
            shared: SharedConfig::from_env(source)?,
            host: env.raw("HOST").unwrap_or_else(|| "0.0.0.0".into()),
            port: env.optional("PORT")?.unwrap_or(3000),
            bot_token: env.secret("DISCORD_BOT_TOKEN")?,
            jwt_issuer: env.required("JWT_ISSUER")?,
            jwt_audience: env
                .raw("JWT_AUDIENCE")
                .unwrap_or_else(|| "spell-coven-web".into()),
            jwt_public_jwk_url: jwks_url(&env)?,
            web_origin: env.url("WEB_ORIGIN", &["http", "https"])?,
            max_api_retries: env.optional("MAX_API_RETRIES")?.unwrap_or(3),
            oauth: OAuthConfig::from_env(source)?,
            worker_endpoints: env.url_list("WORKER_ENDPOINT", &["http", "https"])?,
            limits: LimitsConfig::from_env(source)?,
            rooms_category_id: env.optional("ROOMS_CATEGORY_ID")?,
            turn: TurnConfig::from_env(source)?,
        })
    }
}

/// `JWT_PUBLIC_JWK_URL`: `https`, or `http` to a loopback host only (the keys that
/// sign tokens must not travel where they can be rewritten; docs/security.md).
fn jwks_url(env: &Reader<'_>) -> Result<Option<Url>, ConfigError> {
    let url = env.url("JWT_PUBLIC_JWK_URL", &["http", "https"])?;
    if let Some(url) = &url {
        coven_hub::check_jwks_url(url).map_err(|error| ConfigError::Invalid {
            name: "JWT_PUBLIC_JWK_URL",
            reason: error.to_string(),
        })?;
    }
    Ok(url)
}

/// Configuration of `coven run`: the hub's variables plus the worker's own, with
/// the webhook and the command endpoint defaulting to loopback.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The hub's half.
    pub hub: HubConfig,
    /// The worker's half (sharing the hub's guild, secrets, token and state dir).
    pub worker: WorkerConfig,
}

impl RunConfig {
    /// Reads every variable `coven run` needs. `HUB_ENDPOINT` defaults to the hub's
    /// own `/api/internal/events` on loopback, `WORKER_ENDPOINT` to the worker's
    /// health port on loopback (or on `HEALTH_CHECK_HOST` when that is one address).
    ///
    /// # Panics
    ///
    /// Never: the loopback URLs it builds are valid.
    pub fn from_env(source: &dyn Source) -> Result<Self, ConfigError> {
        let env = Reader(source);
        let mut hub = HubConfig::from_env(source)?;
        let health_check_host = health_check_host(&env)?;
        let health_check_port = env.optional("HEALTH_CHECK_PORT")?.unwrap_or(8080);
        let loopback = match hub.host.as_str() {
            "0.0.0.0" | "::" | "[::]" => "127.0.0.1".to_owned(),
            host => host.to_owned(),
        };
        let hub_endpoint = match env.url("HUB_ENDPOINT", &["http", "https"])? {
            Some(url) => url,
            None => Url::parse(&format!(
                "http://{loopback}:{}/api/internal/events",
                hub.port
            ))
            .map_err(|error| ConfigError::Invalid {
                name: "HOST",
                reason: error.to_string(),
            })?,
        };
        if hub.worker_endpoints.is_empty() {
            // The worker's listener: loopback when it binds every interface.
            let worker = match health_check_host {
                host if host.is_unspecified() => {
                    SocketAddr::from(([127, 0, 0, 1], health_check_port))
                }
                host => SocketAddr::from((host, health_check_port)),
            };
            hub.worker_endpoints =
                vec![Url::parse(&format!("http://{worker}")).expect("a valid URL")];
        }
        let worker = WorkerConfig {
            shared: hub.shared.clone(),
            bot_token: hub.bot_token.clone(),
            hub_endpoint,
            health_check_host,
            health_check_port,
            outbox_max_events: env.optional("OUTBOX_MAX_EVENTS")?.unwrap_or(1_000_000),
        };
        Ok(Self { hub, worker })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const TOKEN: &str = "MTIzNDU2Nzg5.bot-token-value";
    const SECRET: &str = "hub-secret-value-1";

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn worker_env() -> Vec<(&'static str, &'static str)> {
        vec![
            ("PRIMARY_GUILD_ID", "1100"),
            ("HUB_SECRET", SECRET),
            ("DISCORD_BOT_TOKEN", TOKEN),
            ("HUB_ENDPOINT", "http://127.0.0.1:3000/api/internal/events"),
        ]
    }

    fn without(
        mut pairs: Vec<(&'static str, &'static str)>,
        name: &str,
    ) -> Vec<(&'static str, &'static str)> {
        pairs.retain(|(k, _)| *k != name);
        pairs
    }

    fn with(
        mut pairs: Vec<(&'static str, &'static str)>,
        name: &'static str,
        value: &'static str,
    ) -> Vec<(&'static str, &'static str)> {
        pairs.retain(|(k, _)| *k != name);
        pairs.push((name, value));
        pairs
    }

    #[test]
    fn worker_defaults() {
        let config = WorkerConfig::from_env(&env(&worker_env())).unwrap();
        assert_eq!(config.shared.primary_guild_id.get(), 1100);
        assert_eq!(config.health_check_port, 8080);
        assert_eq!(config.shared.state_dir, PathBuf::from("state"));
        assert_eq!(
            config.shared.discord.api_url.as_str(),
            "https://discord.com/"
        );
        assert_eq!(
            config.shared.discord.gateway_url.as_str(),
            "wss://gateway.discord.gg/"
        );
        assert_eq!(config.shared.hub_secrets.len(), 1);
        assert_eq!(config.health_check_host.to_string(), "0.0.0.0");
    }

    #[test]
    fn health_check_host_takes_an_ip_address() {
        let host = |value: &'static str| {
            WorkerConfig::from_env(&env(&with(worker_env(), "HEALTH_CHECK_HOST", value)))
                .map(|config| config.health_check_host.to_string())
        };
        assert_eq!(host("127.0.0.1").unwrap(), "127.0.0.1");
        assert_eq!(host(" :: ").unwrap(), "::");
        assert_eq!(host("[::1]").unwrap(), "::1");
        for bad in ["localhost:8080", "127.0.0.1:8080", "300.0.0.1"] {
            let error = host(bad).unwrap_err();
            assert!(
                error
                    .to_string()
                    .starts_with("configuration error: HEALTH_CHECK_HOST is invalid"),
                "{error}"
            );
        }
        let pairs = with(
            with(worker_env(), "JWT_ISSUER", "https://coven.example"),
            "HEALTH_CHECK_HOST",
            "127.0.0.2",
        );
        let config = RunConfig::from_env(&env(&pairs)).unwrap();
        assert_eq!(
            config.hub.worker_endpoints[0].as_str(),
            "http://127.0.0.2:8080/"
        );
    }

    #[test]
    fn every_required_worker_variable_is_named_when_missing() {
        for name in [
            "PRIMARY_GUILD_ID",
            "HUB_SECRET",
            "DISCORD_BOT_TOKEN",
            "HUB_ENDPOINT",
        ] {
            let error = WorkerConfig::from_env(&env(&without(worker_env(), name))).unwrap_err();
            assert_eq!(error, ConfigError::Missing(name));
            assert_eq!(
                error.to_string(),
                format!("configuration error: {name} is not set")
            );
        }
    }

    #[test]
    fn malformed_values_are_named_without_echoing_them() {
        let cases = [
            ("PRIMARY_GUILD_ID", "guild-1100"),
            ("HUB_ENDPOINT", "ftp://hub/events"),
            ("HUB_ENDPOINT", "not a url"),
            ("HEALTH_CHECK_PORT", "70000"),
            ("HEALTH_CHECK_HOST", "not-an-address"),
            ("DISCORD_GATEWAY_URL", "http://gateway"),
            ("LOG_LEVEL", "LOUD"),
        ];
        for (name, value) in cases {
            let source = env(&with(worker_env(), name, value));
            let error = LogConfig::from_env(&source)
                .err()
                .or_else(|| WorkerConfig::from_env(&source).err())
                .unwrap();
            let ConfigError::Invalid { name: named, .. } = &error else {
                panic!("{name}: expected Invalid, got {error:?}");
            };
            assert_eq!(*named, name);
            assert!(!error.to_string().contains(value), "{error}");
        }
    }

    #[test]
    fn hub_secret_rotation_list() {
        let source = env(&with(worker_env(), "HUB_SECRET", "new-one, old-one"));
        let config = WorkerConfig::from_env(&source).unwrap();
        let secrets: Vec<&str> = config
            .shared
            .hub_secrets
            .iter()
            .map(Secret::expose)
            .collect();
        assert_eq!(secrets, ["new-one", "old-one"]);

        let error =
            WorkerConfig::from_env(&env(&with(worker_env(), "HUB_SECRET", "a,,b"))).unwrap_err();
        assert!(matches!(
            error,
            ConfigError::Invalid {
                name: "HUB_SECRET",
                ..
            }
        ));
        assert!(!error.to_string().contains("a,,b"));
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let pairs = with(
            with(worker_env(), "JWT_ISSUER", "https://coven.example"),
            "DISCORD_CLIENT_SECRET",
            "oauth-client-secret-value",
        );
        let pairs = with(
            with(pairs, "DISCORD_CLIENT_ID", "42"),
            "OAUTH_REDIRECT_URI",
            "http://127.0.0.1:3000/auth/callback",
        );
        let pairs = with(
            pairs,
            "REDIS_URL",
            "redis://:redis-password-value@127.0.0.1/",
        );
        let source = env(&pairs);
        let printed = format!(
            "{:?} {:#?}",
            WorkerConfig::from_env(&source).unwrap(),
            HubConfig::from_env(&source).unwrap()
        );
        for secret in [
            TOKEN,
            SECRET,
            "oauth-client-secret-value",
            "redis-password-value",
        ] {
            assert!(!printed.contains(secret), "{secret} leaked");
        }
    }

    #[test]
    fn hub_defaults_and_partial_oauth() {
        let base = with(worker_env(), "JWT_ISSUER", "https://coven.example");
        let config = HubConfig::from_env(&env(&base)).unwrap();
        assert_eq!((config.host.as_str(), config.port), ("0.0.0.0", 3000));
        assert_eq!(config.jwt_audience, "spell-coven-web");
        assert_eq!(config.max_api_retries, 3);
        assert!(config.oauth.is_none() && config.worker_endpoints.is_empty());

        let partial = with(base.clone(), "DISCORD_CLIENT_ID", "42");
        assert_eq!(
            HubConfig::from_env(&env(&partial)).unwrap_err(),
            ConfigError::Missing("DISCORD_CLIENT_SECRET")
        );
        assert_eq!(
            HubConfig::from_env(&env(&without(base, "JWT_ISSUER"))).unwrap_err(),
            ConfigError::Missing("JWT_ISSUER")
        );
    }

    #[test]
    fn the_jwks_url_is_https_or_loopback() {
        let base = with(worker_env(), "JWT_ISSUER", "https://coven.example");
        for ok in [
            "https://idp.example.com/.well-known/jwks.json",
            "http://127.0.0.1:8080/jwks.json",
            "http://localhost/jwks.json",
            "http://[::1]:9000/jwks.json",
        ] {
            let config = HubConfig::from_env(&env(&with(base.clone(), "JWT_PUBLIC_JWK_URL", ok)));
            assert!(config.is_ok(), "{ok}");
        }
        let error = HubConfig::from_env(&env(&with(
            base,
            "JWT_PUBLIC_JWK_URL",
            "http://example.com/jwks.json",
        )))
        .unwrap_err();
        assert!(
            matches!(&error, ConfigError::Invalid { name: "JWT_PUBLIC_JWK_URL", reason } if !reason.contains("example.com")),
            "{error}"
        );
        assert!(!error.to_string().contains('\n'), "one line: {error}");
    }

    #[test]
    fn rooms_category_is_optional_and_checked() {
        let base = with(worker_env(), "JWT_ISSUER", "https://coven.example");
        assert_eq!(
            HubConfig::from_env(&env(&base)).unwrap().rooms_category_id,
            None
        );
        let set = with(base.clone(), "ROOMS_CATEGORY_ID", "1246251873992839168");
        assert_eq!(
            HubConfig::from_env(&env(&set)).unwrap().rooms_category_id,
            Some("1246251873992839168".parse().unwrap())
        );
        for bad in ["rooms", "-1", "0"] {
            let error = HubConfig::from_env(&env(&with(base.clone(), "ROOMS_CATEGORY_ID", bad)))
                .unwrap_err();
            assert!(
                matches!(
                    error,
                    ConfigError::Invalid {
                        name: "ROOMS_CATEGORY_ID",
                        ..
                    }
                ),
                "{bad}: {error:?}"
            );
            assert!(error.to_string().contains("ROOMS_CATEGORY_ID"), "{error}");
        }
    }

    #[test]
    fn turn_urls_and_secret_go_together() {
        let base = with(worker_env(), "JWT_ISSUER", "https://coven.example");
        let none = HubConfig::from_env(&env(&base)).unwrap().turn;
        assert!(none.urls.is_empty() && none.secret.is_none());
        let stun = with(base.clone(), "TURN_URLS", "stun:127.0.0.1:3478");
        assert_eq!(
            HubConfig::from_env(&env(&stun)).unwrap().turn.urls,
            ["stun:127.0.0.1:3478"]
        );
        let turn = with(
            with(
                base.clone(),
                "TURN_URLS",
                "turn:turn.example.com:3478?transport=udp, turns:turn.example.com:5349",
            ),
            "TURN_SECRET",
            "coturn-static-secret",
        );
        let config = HubConfig::from_env(&env(&turn)).unwrap().turn;
        assert_eq!(config.urls.len(), 2);
        assert_eq!(config.secret.unwrap().expose(), "coturn-static-secret");
        assert!(
            !format!("{:?}", HubConfig::from_env(&env(&turn)).unwrap()).contains("coturn-static")
        );
        let unkeyed = with(base.clone(), "TURN_URLS", "turn:127.0.0.1:3478");
        assert_eq!(
            HubConfig::from_env(&env(&unkeyed)).unwrap_err(),
            ConfigError::Missing("TURN_SECRET")
        );
        let unused = with(base.clone(), "TURN_SECRET", "coturn-static-secret");
        let error = HubConfig::from_env(&env(&unused)).unwrap_err();
        assert!(
            matches!(
                error,
                ConfigError::Invalid {
                    name: "TURN_SECRET",
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(!error.to_string().contains("coturn-static"), "{error}");
        for bad in [
            "http://turn.example.com",
            "turn:",
            "turn:a b",
            "turn:x,,stun:y",
        ] {
            let error =
                HubConfig::from_env(&env(&with(base.clone(), "TURN_URLS", bad))).unwrap_err();
            assert!(
                matches!(
                    error,
                    ConfigError::Invalid {
                        name: "TURN_URLS",
                        ..
                    }
                ),
                "{bad}: {error:?}"
            );
        }
    }

    #[test]
    fn connection_limits_default_and_are_checked() {
        let base = with(worker_env(), "JWT_ISSUER", "https://coven.example");
        let limits = HubConfig::from_env(&env(&base)).unwrap().limits;
        assert_eq!(
            limits,
            LimitsConfig {
                max_connections: 20_000,
                max_connections_per_ip: 256,
                max_unauthenticated_per_ip: 32,
                max_sockets_per_user: 16,
                trusted_proxies: Vec::new(),
            }
        );
        let set = with(
            with(base.clone(), "MAX_SOCKETS_PER_USER", "4"),
            "TRUSTED_PROXIES",
            "10.0.0.1, ::1",
        );
        let limits = HubConfig::from_env(&env(&set)).unwrap().limits;
        assert_eq!(limits.max_sockets_per_user, 4);
        assert_eq!(limits.trusted_proxies.len(), 2);
        for (name, value) in [
            ("MAX_CONNECTIONS", "0"),
            ("MAX_CONNECTIONS_PER_IP", "lots"),
            ("TRUSTED_PROXIES", "10.0.0.0/8"),
        ] {
            let error = HubConfig::from_env(&env(&with(base.clone(), name, value))).unwrap_err();
            assert!(
                matches!(&error, ConfigError::Invalid { name: n, reason } if *n == name && !reason.contains(value)),
                "{error}"
            );
        }
    }

    #[test]
    fn run_defaults_to_loopback_between_its_halves() {
        let pairs = with(
            without(worker_env(), "HUB_ENDPOINT"),
            "JWT_ISSUER",
            "https://coven.example",
        );
        let config = RunConfig::from_env(&env(&with(pairs, "PORT", "4000"))).unwrap();
        assert_eq!(
            config.worker.hub_endpoint.as_str(),
            "http://127.0.0.1:4000/api/internal/events"
        );
        assert_eq!(
            config
                .hub
                .worker_endpoints
                .iter()
                .map(Url::as_str)
                .collect::<Vec<_>>(),
            ["http://127.0.0.1:8080/"]
        );
        assert_eq!(
            config.worker.shared.primary_guild_id,
            config.hub.shared.primary_guild_id
        );
    }

    #[test]
    fn worker_endpoint_may_list_the_pair() {
        let base = with(worker_env(), "JWT_ISSUER", "https://coven.example");
        let endpoints = |value: &'static str| {
            HubConfig::from_env(&env(&with(base.clone(), "WORKER_ENDPOINT", value))).map(|c| {
                c.worker_endpoints
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(endpoints("http://w:8080").unwrap(), ["http://w:8080/"]);
        assert_eq!(
            endpoints(" http://a:8080 , https://b:8443/x ").unwrap(),
            ["http://a:8080/", "https://b:8443/x"]
        );
        for bad in [
            "http://a:8080,,http://b:8080",
            "http://a:8080,",
            "http://a:8080,ftp://secret-host-b",
            "http://a:8080,not a url secret-host-b",
        ] {
            let error = endpoints(bad).unwrap_err();
            assert!(
                matches!(
                    error,
                    ConfigError::Invalid {
                        name: "WORKER_ENDPOINT",
                        ..
                    }
                ),
                "{bad}: {error:?}"
            );
            let text = error.to_string();
            assert!(
                !text.contains("secret-host-b") && !text.contains("a:8080"),
                "{text}"
            );
        }
        // `coven run` keeps its loopback default only when the variable is unset.
        let run = with(
            without(base, "HUB_ENDPOINT"),
            "WORKER_ENDPOINT",
            "http://a:1,http://b:2",
        );
        assert_eq!(
            RunConfig::from_env(&env(&run))
                .unwrap()
                .hub
                .worker_endpoints
                .len(),
            2
        );
    }

    #[test]
    fn log_config() {
        assert_eq!(
            LogConfig::from_env(&env(&[])).unwrap(),
            LogConfig::default()
        );
        let config =
            LogConfig::from_env(&env(&[("LOG_LEVEL", "debug"), ("LOG_FORMAT", "JSON")])).unwrap();
        assert_eq!(
            (config.level, config.format),
            (LogLevel::Debug, LogFormat::Json)
        );
        assert!(LogConfig::from_env(&env(&[("LOG_FORMAT", "xml")])).is_err());
    }
}
