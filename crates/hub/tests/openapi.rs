//! docs/spec.md §11: the generated contract artifacts. The JSON Schemas and the
//! `OpenAPI` document under `schema/` are what `coven_hub::openapi` generates from the
//! Rust types (regenerate with `COVEN_REGENERATE=1`, docs/clients.md), the document
//! describes every route the router serves, and the hub serves it at
//! `GET /api/openapi.json`. The documents are validated by a real `OpenAPI` validator
//! in `clients/js` (`npm test`).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::TestHub;
use serde_json::Value;

fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema")
}

/// Every generated file: the schemas and `openapi.json`, as checked in (pretty, one
/// trailing newline).
fn generated() -> Vec<(String, String)> {
    let mut files: Vec<(String, Value)> = coven_hub::openapi::schema_files()
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    files.push(("openapi.json".into(), coven_hub::openapi::document()));
    files
        .into_iter()
        .map(|(name, value)| {
            let mut text = serde_json::to_string_pretty(&value).unwrap();
            text.push('\n');
            (name, text)
        })
        .collect()
}

#[test]
fn checked_in_schemas_and_openapi_are_current() {
    let dir = schema_dir();
    let files = generated();
    if std::env::var_os("COVEN_REGENERATE").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in &files {
            std::fs::write(dir.join(name), text).unwrap();
        }
    }
    let mut stale = Vec::new();
    for (name, text) in &files {
        match std::fs::read_to_string(dir.join(name)) {
            Ok(on_disk) if on_disk == *text => {}
            _ => stale.push(name.clone()),
        }
    }
    let expected: BTreeSet<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
    let extra: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| {
            Path::new(name)
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json"))
                && !expected.contains(name.as_str())
        })
        .collect();
    assert!(
        stale.is_empty() && extra.is_empty(),
        "schema/ is out of date (stale: {stale:?}, no longer generated: {extra:?}): \
         run `COVEN_REGENERATE=1 cargo test -p coven-hub --test openapi` (docs/clients.md)"
    );
}

/// The paths `routes.rs` registers, in `OpenAPI` spelling (`{channel_id}` → `{channelId}`).
fn routed_paths() -> BTreeSet<String> {
    let source = include_str!("../src/routes.rs");
    source
        .match_indices(".route(")
        .filter_map(|(at, _)| {
            let rest = &source[at..];
            let start = rest.find('"')? + 1;
            let end = start + rest[start..].find('"')?;
            Some(rest[start..end].replace("{channel_id}", "{channelId}"))
        })
        .collect()
}

#[test]
fn the_document_describes_every_route_and_only_those() {
    let document = coven_hub::openapi::document();
    let described: BTreeSet<String> = document["paths"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let routed = routed_paths();
    assert!(routed.len() >= 14, "{routed:?}");
    assert_eq!(described, routed);
    assert_eq!(document["openapi"], "3.1.0");
    // Every `$ref` resolves inside the document.
    let text = document.to_string();
    for (at, _) in text.match_indices("\"$ref\":\"#/") {
        let rest = &text[at + 9..];
        let pointer = &rest[..rest.find('"').unwrap()];
        assert!(
            document.pointer(pointer).is_some(),
            "{pointer} does not resolve"
        );
    }
}

#[test]
fn the_schemas_say_what_the_contract_says() {
    let files = coven_hub::openapi::schema_files();
    let bundle = &files
        .iter()
        .find(|(name, _)| *name == "contract.schema.json")
        .unwrap()
        .1;
    let defs = &bundle["$defs"];
    // Ids are strings, never numbers; `v` is exactly 1; a room's parent is nullable.
    assert_eq!(defs["Snowflake"]["type"], "string");
    assert_eq!(defs["Ack"]["properties"]["v"]["const"], 1);
    let parent = defs["RoomCreated"]["properties"]["parentId"].to_string();
    assert!(parent.contains("null"), "{parent}");
    assert!(
        defs["RoomCreated"]["required"]
            .as_array()
            .unwrap()
            .contains(&"parentId".into())
    );
    // Every event name of contract v1 is in the schema.
    let events = defs["Event"].to_string();
    for name in coven_contract::Event::NAMES {
        assert!(events.contains(&format!("\"{name}\"")), "{name}");
    }
    // The cue names come from `Cue`, the client message has `lastSeq`.
    for cue in coven_contract::Cue::ALL {
        assert!(defs["Cue"].to_string().contains(cue.name()));
    }
    assert!(defs["ClientMessage"].to_string().contains("lastSeq"));
}

#[tokio::test]
async fn the_hub_serves_the_document() {
    let (hub, _rooms) = TestHub::start().await;
    let response = hub
        .http
        .get(hub.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let served: Value = response.json().await.unwrap();
    assert_eq!(served, coven_hub::openapi::document());
}
