//! The machine-readable contract (docs/spec.md §11): the JSON Schemas of every
//! message and body, and the `OpenAPI` 3.1 document of the HTTP API, served at
//! `GET /api/openapi.json`.
//!
//! Nothing here is written twice: every schema is derived (`schemars`) from the
//! Rust type the hub itself reads or writes (the contract crate's envelopes,
//! events and errors, and the hub's own request and answer bodies), so a changed
//! type changes the schema. The route table below names, per route, those types and
//! the answers the handler can give; `crates/hub/tests/openapi.rs` checks that every
//! route the router serves is described, and the checked-in copies under `schema/`
//! match what this file generates (regenerate: docs/clients.md).

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use coven_contract::{
    Ack, ApiError, ClientMessage, CueList, ErrorEnvelope, Event, EventEnvelope, OkBody,
    RoomCreated, RoomDeleted, ServerMessage, VoiceFlags, VoiceJoined, VoiceLeft, VoiceSpeaking,
    VoiceStateChanged,
};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};

use crate::bot::CueRequest;
use crate::health::Health;
use crate::rooms::{CreateRoomBody, CreatedRoom};
use crate::snapshot::Snapshot;

/// The contract version every message carries as `v` (docs/contract.md "Versioning").
pub const CONTRACT_VERSION: u64 = coven_contract::Version::NUMBER;

/// The JSON Schema dialect of every schema here.
const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// A generator for types the hub writes (`for_serialize`: an `Option` field that is
/// always written is required, as `null` when empty) or reads (`for_deserialize`).
fn generator(definitions_path: &str, writes: bool) -> SchemaGenerator {
    let settings = SchemaSettings::draft2020_12().with(|s| {
        s.definitions_path = definitions_path.to_owned().into();
    });
    let settings = if writes {
        settings.for_serialize()
    } else {
        settings.for_deserialize()
    };
    settings.into_generator()
}

/// One schema generator per direction, whose definitions end up in one namespace.
struct Schemas {
    writes: SchemaGenerator,
    reads: SchemaGenerator,
}

impl Schemas {
    fn new(definitions_path: &str) -> Self {
        Self {
            writes: generator(definitions_path, true),
            reads: generator(definitions_path, false),
        }
    }

    /// A reference to `T`, a body the hub writes.
    fn out<T: JsonSchema>(&mut self) -> Value {
        self.writes.subschema_for::<T>().to_value()
    }

    /// A reference to `T`, a body the hub reads.
    fn input<T: JsonSchema>(&mut self) -> Value {
        self.reads.subschema_for::<T>().to_value()
    }

    /// Every type of the browser contract, registered so that each has a definition.
    fn register_contract(&mut self) {
        self.out::<ServerMessage>();
        self.out::<EventEnvelope>();
        self.out::<Ack>();
        self.out::<ErrorEnvelope>();
        self.out::<Event>();
        self.out::<RoomCreated>();
        self.out::<RoomDeleted>();
        self.out::<VoiceJoined>();
        self.out::<VoiceLeft>();
        self.out::<VoiceStateChanged>();
        self.out::<VoiceSpeaking>();
        self.out::<VoiceFlags>();
        self.out::<ApiError>();
        self.out::<OkBody>();
        self.out::<CueList>();
        self.out::<Snapshot>();
        self.out::<CreatedRoom>();
        self.out::<Health>();
        self.input::<ClientMessage>();
        self.input::<CreateRoomBody>();
        self.input::<CueRequest>();
    }

    /// The definitions of both directions in one map.
    ///
    /// # Panics
    ///
    /// When one name means two different schemas in the two directions: rename one
    /// of the types (a test builds this, so it cannot ship).
    fn into_definitions(mut self) -> Map<String, Value> {
        let mut all = self.writes.take_definitions(true);
        for (name, schema) in self.reads.take_definitions(true) {
            if let Some(existing) = all.get(&name) {
                assert_eq!(
                    existing, &schema,
                    "{name} has different schemas as written and as read"
                );
            } else {
                all.insert(name, schema);
            }
        }
        all.sort_keys();
        all
    }
}

/// The checked-in schema files under `schema/`: `(file name, schema)`, one
/// standalone schema (with the `$defs` it needs) per message and body, and
/// `contract.schema.json` holding every definition (the TypeScript types of
/// `clients/js` are generated from it).
pub fn schema_files() -> Vec<(&'static str, Value)> {
    fn standalone<T: JsonSchema>(writes: bool) -> Value {
        let mut schema = generator("/$defs", writes)
            .into_root_schema_for::<T>()
            .to_value();
        if let Some(object) = schema.as_object_mut() {
            object.insert("$schema".into(), DIALECT.into());
        }
        schema
    }
    let mut all = Schemas::new("/$defs");
    all.register_contract();
    let bundle = json!({
        "$schema": DIALECT,
        "title": "Spell Coven contract",
        "description": format!(
            "Every message and body of contract v{CONTRACT_VERSION} (docs/contract.md), generated from the Rust types. Do not edit: regenerate (docs/clients.md)."
        ),
        "$defs": all.into_definitions(),
    });
    vec![
        ("contract.schema.json", bundle),
        (
            "server-message.schema.json",
            standalone::<ServerMessage>(true),
        ),
        (
            "client-message.schema.json",
            standalone::<ClientMessage>(false),
        ),
        ("event.schema.json", standalone::<Event>(true)),
        ("api-error.schema.json", standalone::<ApiError>(true)),
        ("ok-body.schema.json", standalone::<OkBody>(true)),
        ("snapshot.schema.json", standalone::<Snapshot>(true)),
        (
            "create-room-request.schema.json",
            standalone::<CreateRoomBody>(false),
        ),
        ("created-room.schema.json", standalone::<CreatedRoom>(true)),
        ("cue-list.schema.json", standalone::<CueList>(true)),
        ("cue-request.schema.json", standalone::<CueRequest>(false)),
        ("health.schema.json", standalone::<Health>(true)),
    ]
}

/// A JSON body of `schema`.
fn json_content(schema: &Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

/// The `{channelId}` path parameter.
fn channel_id_parameter() -> Value {
    json!({
        "name": "channelId", "in": "path", "required": true,
        "description": "The room's voice channel id (a snowflake; anything else is 400).",
        "schema": {"$ref": "#/components/schemas/Snowflake"},
    })
}

/// An answer by name from `components.responses`.
fn shared(name: &str) -> Value {
    json!({"$ref": format!("#/components/responses/{name}")})
}

/// The errors every signed-in route can answer.
fn signed_in_errors(responses: &mut Map<String, Value>) {
    responses.insert("401".into(), shared("Unauthorized"));
    responses.insert("429".into(), shared("RateLimited"));
    responses.insert("500".into(), shared("InternalError"));
}

/// The errors of the routes acting on one room (docs/spec.md §7, §7.1).
fn room_errors(responses: &mut Map<String, Value>) {
    signed_in_errors(responses);
    responses.insert("400".into(), shared("ValidationFailed"));
    responses.insert("403".into(), shared("Forbidden"));
    responses.insert("404".into(), shared("NotFound"));
}

/// The answers of the bot routes: the room checks and the worker's refusals.
fn bot_responses(ok: &Value) -> Value {
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        json!({"description": "The worker accepted the command.", "content": json_content(ok)}),
    );
    room_errors(&mut responses);
    responses.insert(
        "409".into(),
        json!({"description": "The worker refused: e.g. the bot is not in that room.", "content": json_content(&json!({"$ref": "#/components/schemas/ApiError"}))}),
    );
    responses.insert("503".into(), shared("Unavailable"));
    Value::Object(responses)
}

/// The `paths` object: one entry per route of `routes.rs`.
#[allow(clippy::too_many_lines)] // One flat table of routes reads better split by route than by helper.
fn paths(s: &mut Schemas) -> Value {
    let ok = s.out::<OkBody>();
    let bearer = json!([{"bearer": []}]);
    let mut create_errors = Map::new();
    signed_in_errors(&mut create_errors);
    create_errors.insert("400".into(), shared("ValidationFailed"));
    create_errors.insert("403".into(), shared("Forbidden"));
    create_errors.insert("413".into(), shared("PayloadTooLarge"));
    create_errors.insert("502".into(), shared("Upstream"));
    create_errors.insert("503".into(), shared("Unavailable"));
    create_errors.insert(
        "201".into(),
        json!({"description": "The room was created (or this Idempotency-Key's earlier answer).", "content": json_content(&s.out::<CreatedRoom>())}),
    );
    let mut end_responses = Map::new();
    room_errors(&mut end_responses);
    end_responses.insert(
        "200".into(),
        json!({"description": "The room was deleted.", "content": json_content(&ok)}),
    );
    end_responses.insert("502".into(), shared("Upstream"));
    let mut rooms_responses = Map::new();
    signed_in_errors(&mut rooms_responses);
    rooms_responses.insert(
        "200".into(),
        json!({"description": "The snapshot.", "content": json_content(&s.out::<Snapshot>())}),
    );
    rooms_responses.insert("503".into(), shared("Unavailable"));
    let mut cues_responses = Map::new();
    signed_in_errors(&mut cues_responses);
    cues_responses.insert("200".into(), json!({"description": "The cues the bot can play.", "content": json_content(&s.out::<CueList>())}));
    let health = s.out::<Health>();
    let webhook_body = s.out::<Event>();
    let cue_body = s.input::<CueRequest>();
    let create_body = s.input::<CreateRoomBody>();
    json!({
        "/api/create-room": {"post": {
            "operationId": "createRoom",
            "summary": "Create a room (a voice channel) in the guild.",
            "description": "docs/spec.md §7. A user holds at most 3 live rooms created here, the guild at most 50 (403).",
            "security": bearer,
            "parameters": [{
                "name": "Idempotency-Key", "in": "header", "required": false,
                "description": "Makes retries safe: a repeat with the same key gets the first answer and creates nothing.",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            }],
            "requestBody": {"required": false, "content": json_content(&create_body)},
            "responses": create_errors,
        }},
        "/api/end-room/{channelId}": {"delete": {
            "operationId": "endRoom",
            "summary": "End (delete) a room: its creator or a member with MANAGE_CHANNELS / ADMINISTRATOR.",
            "security": bearer,
            "parameters": [channel_id_parameter()],
            "responses": end_responses,
        }},
        "/api/rooms": {"get": {
            "operationId": "getRooms",
            "summary": "The snapshot: every room with its members and flags, and the seq it is current at.",
            "security": bearer,
            "responses": rooms_responses,
        }},
        "/api/rooms/{channelId}/bot": {
            "post": {
                "operationId": "botJoin",
                "summary": "The bot joins the room's voice channel.",
                "security": bearer,
                "parameters": [channel_id_parameter()],
                "responses": bot_responses(&ok),
            },
            "delete": {
                "operationId": "botLeave",
                "summary": "The bot leaves the room's voice channel.",
                "security": bearer,
                "parameters": [channel_id_parameter()],
                "responses": bot_responses(&ok),
            },
        },
        "/api/rooms/{channelId}/cue": {"post": {
            "operationId": "playCue",
            "summary": "The bot plays a short audio cue in the room (a name from GET /api/cues).",
            "security": bearer,
            "parameters": [channel_id_parameter()],
            "requestBody": {"required": true, "content": json_content(&cue_body)},
            "responses": bot_responses(&ok),
        }},
        "/api/cues": {"get": {
            "operationId": "getCues",
            "summary": "The cues the bot can play.",
            "security": bearer,
            "responses": cues_responses,
        }},
        "/api/demo/sit/{channelId}": {
            "get": {
                "operationId": "demoSitAvailable",
                "summary": "`coven demo` only: 200 where \"Sit at this table\" works; 404 on every other hub.",
                "parameters": [channel_id_parameter()],
                "responses": {"200": {"description": "This hub is a demo.", "content": json_content(&ok)}, "404": shared("NotFound"), "429": shared("RateLimited")},
            },
            "post": {
                "operationId": "demoSit",
                "summary": "`coven demo` only: the caller joins the room's voice channel in the simulator (docs/lobby.md, webcams); 404 on every other hub.",
                "security": bearer,
                "parameters": [channel_id_parameter()],
                "responses": bot_responses(&ok),
            },
        },
        "/api/ws": {"get": {
            "operationId": "socket",
            "summary": "The live socket (docs/spec.md §6): upgrade, then send ClientMessage `auth` within 30 s; the hub sends ServerMessage frames.",
            "description": "Text frames only. Client messages: #/components/schemas/ClientMessage (at most 4 KiB). Server messages: #/components/schemas/ServerMessage. Close codes: 4401 (token refused or expired), 1008 / 1009 (bad or oversized message), 1013 (too slow a reader), 1001 (shutdown).",
            "x-client-message": s.input::<ClientMessage>(),
            "x-server-message": s.out::<ServerMessage>(),
            "responses": {
                "101": {"description": "Switching to the WebSocket protocol."},
                "429": shared("RateLimited"),
                "503": shared("Unavailable"),
            },
        }},
        "/api/internal/events": {"post": {
            "operationId": "ingestEvent",
            "summary": "The internal webhook (worker → hub, docs/spec.md §5), HMAC-signed.",
            "parameters": [
                {"name": "X-Hub-Timestamp", "in": "header", "required": true, "description": "Unix seconds, within 60 s of the hub's clock.", "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"}},
                {"name": "X-Hub-Signature", "in": "header", "required": true, "description": "`sha256=` and the lowercase hex HMAC-SHA256(secret, \"{timestamp}.{raw body}\").", "schema": {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"}},
                {"name": "X-Hub-Event-Id", "in": "header", "required": true, "description": "Stable across redeliveries; a repeat is acknowledged and not broadcast again.", "schema": {"type": "string", "minLength": 1}},
            ],
            "requestBody": {"required": true, "content": json_content(&webhook_body)},
            "responses": {
                "200": {"description": "Accepted (or a repeat).", "content": json_content(&ok)},
                "400": shared("ValidationFailed"),
                "403": {"description": "A missing or wrong signature, or a timestamp out of the window.", "content": json_content(&json!({"type": "object", "properties": {"message": {"const": "forbidden"}}, "required": ["message"]}))},
                "413": shared("PayloadTooLarge"),
            },
        }},
        "/auth/login": {"get": {
            "operationId": "login",
            "summary": "Starts Discord OAuth2 (PKCE S256), binding a state to this browser with a cookie.",
            "responses": {
                "303": {"description": "To Discord's authorize page.", "headers": {"Location": {"schema": {"type": "string"}}, "Set-Cookie": {"schema": {"type": "string"}}}},
                "429": {"description": "Too many sign-ins from this address; a page says so.", "content": {"text/html": {"schema": {"type": "string"}}}},
                "503": {"description": "Login is not configured on this hub.", "content": {"text/html": {"schema": {"type": "string"}}}},
            },
        }},
        "/auth/callback": {"get": {
            "operationId": "loginCallback",
            "summary": "Discord's redirect back: issues the app's JWT to a guild member and lands on `/#token=<jwt>`.",
            "parameters": [
                {"name": "code", "in": "query", "required": false, "schema": {"type": "string"}},
                {"name": "state", "in": "query", "required": false, "schema": {"type": "string"}},
                {"name": "error", "in": "query", "required": false, "schema": {"type": "string"}},
            ],
            "responses": {
                "303": {"description": "To `/#token=<jwt>`.", "headers": {"Location": {"schema": {"type": "string"}}}},
                "400": {"description": "A page saying why no token was issued.", "content": {"text/html": {"schema": {"type": "string"}}}},
                "403": {"description": "Discord refused to add the user to the guild; a page says so.", "content": {"text/html": {"schema": {"type": "string"}}}},
                "502": {"description": "Discord failed; a page says so.", "content": {"text/html": {"schema": {"type": "string"}}}},
                "503": {"description": "Login is not configured on this hub.", "content": {"text/html": {"schema": {"type": "string"}}}},
            },
        }},
        "/.well-known/jwks.json": {"get": {
            "operationId": "jwks",
            "summary": "The public keys of the hub's own issuer.",
            "responses": {
                "200": {"description": "A JWK set (RFC 7517).", "content": json_content(&json!({"type": "object", "properties": {"keys": {"type": "array", "items": {"type": "object"}}}, "required": ["keys"]}))},
                "404": shared("NotFound"),
            },
        }},
        "/api/openapi.json": {"get": {
            "operationId": "openapi",
            "summary": "This document.",
            "responses": {"200": {"description": "OpenAPI 3.1.", "content": {"application/json": {"schema": {"type": "object"}}}}},
        }},
        "/health": {"get": {
            "operationId": "health",
            "summary": "Liveness and readiness.",
            "responses": {
                "200": {"description": "Serving.", "content": json_content(&health)},
                "503": {"description": "Starting (no JWT keys yet) or shutting down.", "content": json_content(&health)},
            },
        }},
        "/metrics": {"get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics.",
            "responses": {"200": {"description": "Prometheus text format.", "content": {"text/plain": {"schema": {"type": "string"}}}}},
        }},
    })
}

/// The shared error answers, each an [`ApiError`] with its code.
fn error_responses() -> Value {
    let body = |code: &str| {
        json!({"application/json": {"schema": {"allOf": [
            {"$ref": "#/components/schemas/ApiError"},
            {"properties": {"code": {"const": code}}},
        ]}}})
    };
    let retry_after = json!({"Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer", "minimum": 0}}});
    json!({
        "ValidationFailed": {"description": "A malformed or invalid request (`details.field` names the field).", "content": body("VALIDATION_FAILED")},
        "Unauthorized": {"description": "A missing, bad or expired token.", "content": body("UNAUTHORIZED")},
        "Forbidden": {"description": "Not a room, or the caller may not act on it (docs/spec.md §7.1).", "content": body("FORBIDDEN")},
        "NotFound": {"description": "Discord does not know the channel (or the route is not configured).", "content": body("NOT_FOUND")},
        "RateLimited": {"description": "Too many requests: wait `Retry-After` seconds.", "headers": retry_after, "content": body("RATE_LIMITED")},
        "PayloadTooLarge": {"description": "The body is over the route's limit.", "content": body("VALIDATION_FAILED")},
        "Upstream": {"description": "Discord failed.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}}},
        "Unavailable": {"description": "A dependency (the worker, Discord's rate limit) is not available now; `Retry-After` when known.", "headers": retry_after, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}}},
        "InternalError": {"description": "A bug or a misconfiguration.", "content": body("INTERNAL_ERROR")},
    })
}

/// The `OpenAPI` 3.1 document of the hub's HTTP API.
pub fn document() -> Value {
    let mut schemas = Schemas::new("/components/schemas");
    schemas.register_contract();
    let paths = paths(&mut schemas);
    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": DIALECT,
        "info": {
            "title": "Spell Coven hub",
            "version": CONTRACT_VERSION.to_string(),
            "description": "The hub's HTTP API (docs/spec.md §7) and its WebSocket messages (§6), generated from the Rust types. `info.version` is the contract's `v`.",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "paths": paths,
        "components": {
            "schemas": schemas.into_definitions(),
            "responses": error_responses(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    })
}

/// `GET /api/openapi.json`: [`document`], built once.
pub(crate) async fn serve() -> Response {
    static BODY: OnceLock<Vec<u8>> = OnceLock::new();
    let body =
        BODY.get_or_init(|| serde_json::to_vec(&document()).expect("the document serialises"));
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.as_slice(),
    )
        .into_response()
}
