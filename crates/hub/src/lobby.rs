//! The lobby page: the files of `crates/hub/lobby/`, embedded at compile time (see
//! `build.rs`) and served at `/` with their content type, `Cache-Control: no-cache`,
//! a strict Content-Security-Policy and `X-Content-Type-Options: nosniff`.

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// Every embedded file, `(path relative to lobby/, bytes)`, sorted by path.
static FILES: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/lobby_files.rs"));

/// The Content-Security-Policy of every page the hub serves. `media-src` admits
/// the webcams' streams (docs/spec.md §12): a `<video>` showing a `MediaStream`
/// (the local camera or a peer's WebRTC track).
pub(crate) const CSP: &str = "default-src 'self'; img-src 'self' https://cdn.discordapp.com data:; \
     connect-src 'self' ws: wss:; media-src 'self' blob: mediastream:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The paths of the embedded lobby files (for tests and diagnostics).
pub fn lobby_files() -> impl Iterator<Item = &'static str> {
    FILES.iter().map(|(path, _)| *path)
}

/// Adds the headers every HTML/JS/CSS answer of the hub carries.
pub(crate) fn page_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

fn content_type(path: &str) -> &'static str {
    let extension = path.rsplit_once('.').map_or("", |(_, e)| e);
    match extension.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn lookup(path: &str) -> Option<&'static [u8]> {
    FILES
        .binary_search_by(|(p, _)| (*p).cmp(path))
        .ok()
        .map(|i| FILES[i].1)
}

/// `GET /<file>`: an embedded lobby file; `/` is `index.html`. Anything else is 404.
pub(crate) async fn serve(method: Method, uri: Uri) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
        )
            .into_response();
    }
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() || path.ends_with('/') {
        format!("{path}index.html")
    } else {
        path.to_owned()
    };
    let Some(body) = lookup(&path).filter(|_| !path.split('/').any(|s| s == "..")) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let mut response = (
        [
            (header::CONTENT_TYPE, content_type(&path)),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response();
    page_headers(response.headers_mut());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_sorted_for_lookup_and_typed() {
        assert!(FILES.windows(2).all(|w| w[0].0 < w[1].0));
        for (path, _) in FILES {
            assert_eq!(
                lookup(path).map(<[u8]>::len),
                Some(lookup(path).unwrap().len())
            );
        }
        assert_eq!(content_type("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("x/INDEX.HTML"), "text/html; charset=utf-8");
        assert_eq!(content_type("blob"), "application/octet-stream");
    }
}
