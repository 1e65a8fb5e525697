//! The Discord API origin (`DISCORD_API_URL`): its validation, how twilight-http is pointed
//! at it, and the URLs of the OAuth2 endpoints below it.

use url::Url;

use crate::error::DiscordError;

/// Discord's own origin, which twilight-http reaches without a proxy setting.
const DISCORD_HOST: &str = "discord.com";

/// Checks that `url` is a bare `http(s)` origin: a host, an optional port, no path,
/// query, fragment or credentials (the client appends `/api/v10/...` itself).
pub(crate) fn check(url: &Url) -> Result<(), DiscordError> {
    let bad = |reason: &str| Err(DiscordError::validation("apiUrl", reason));
    if !matches!(url.scheme(), "http" | "https") {
        return bad("must be an http or https URL");
    }
    if url.host_str().is_none_or(str::is_empty) {
        return bad("must have a host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return bad("must not contain credentials");
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return bad("must be an origin without path, query or fragment");
    }
    Ok(())
}

/// The twilight-http `proxy(host_port, use_http)` setting that makes it send requests to
/// `{origin}/api/v10/...`; `None` for `https://discord.com`, twilight's default.
pub(crate) fn twilight_proxy(url: &Url) -> Option<(String, bool)> {
    let host = url.host_str()?;
    let https = url.scheme() == "https";
    if https && host == DISCORD_HOST && url.port().is_none() {
        return None;
    }
    let host_port = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    Some((host_port, !https))
}

/// `{origin}{path}`, `path` starting with `/`.
pub(crate) fn join(origin: &Url, path: &str) -> Url {
    let mut url = origin.clone();
    url.set_path(path);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn accepts_origins_only() {
        assert!(check(&url("https://discord.com")).is_ok());
        assert!(check(&url("http://127.0.0.1:4000/")).is_ok());
        assert!(check(&url("http://[::1]:4000")).is_ok());
        for bad in [
            "ftp://discord.com",
            "https://discord.com/api",
            "https://discord.com/?x=1",
            "https://user:pw@discord.com",
            "https://discord.com/#f",
        ] {
            assert!(check(&url(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn proxies_everything_but_discord() {
        assert_eq!(twilight_proxy(&url("https://discord.com")), None);
        assert_eq!(
            twilight_proxy(&url("http://127.0.0.1:4000")),
            Some(("127.0.0.1:4000".to_owned(), true))
        );
        assert_eq!(
            twilight_proxy(&url("https://discord.example:8443")),
            Some(("discord.example:8443".to_owned(), false))
        );
        assert_eq!(
            twilight_proxy(&url("http://[::1]:4000")),
            Some(("[::1]:4000".to_owned(), true))
        );
    }

    #[test]
    fn joins_paths() {
        assert_eq!(
            join(&url("http://127.0.0.1:4000"), "/api/v10/oauth2/token").as_str(),
            "http://127.0.0.1:4000/api/v10/oauth2/token"
        );
    }
}
