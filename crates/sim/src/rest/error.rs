//! Discord's JSON error bodies: `{"message", "code"}` and 50035's `errors` tree.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// A Discord API error response.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Discord JSON error code.
    pub code: u32,
    /// Message.
    pub message: String,
    /// The `errors` tree of 50035.
    pub errors: Option<Value>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: u32, message: &str) -> Self {
        Self {
            status,
            code,
            message: message.to_owned(),
            errors: None,
        }
    }

    /// 401 `{"message": "401: Unauthorized", "code": 0}`.
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized")
    }

    /// 404 10003 Unknown Channel.
    pub fn unknown_channel() -> Self {
        Self::new(StatusCode::NOT_FOUND, 10003, "Unknown Channel")
    }

    /// 404 10004 Unknown Guild.
    pub fn unknown_guild() -> Self {
        Self::new(StatusCode::NOT_FOUND, 10004, "Unknown Guild")
    }

    /// 404 10007 Unknown Member.
    pub fn unknown_member() -> Self {
        Self::new(StatusCode::NOT_FOUND, 10007, "Unknown Member")
    }

    /// 404 10013 Unknown User.
    pub fn unknown_user() -> Self {
        Self::new(StatusCode::NOT_FOUND, 10013, "Unknown User")
    }

    /// 403 50013 Missing Permissions.
    pub fn missing_permissions() -> Self {
        Self::new(StatusCode::FORBIDDEN, 50013, "Missing Permissions")
    }

    /// 400 50035 Invalid Form Body with its `errors` tree.
    pub fn invalid_form(errors: FormErrors) -> Self {
        Self {
            errors: Some(Value::Object(errors.0)),
            ..Self::new(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body")
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"message": self.message, "code": self.code});
        if let Some(e) = self.errors {
            body["errors"] = e;
        }
        (self.status, Json(body)).into_response()
    }
}

/// Builder of 50035's nested `errors` object.
#[derive(Debug, Default)]
pub struct FormErrors(Map<String, Value>);

impl FormErrors {
    /// Adds an error at a field path (array indexes as strings).
    pub fn add(&mut self, path: &[&str], code: &str, message: &str) {
        let mut node = &mut self.0;
        for key in path {
            let entry = node.entry((*key).to_owned()).or_insert_with(|| json!({}));
            let Some(obj) = entry.as_object_mut() else {
                return;
            };
            node = obj;
        }
        let list = node.entry("_errors").or_insert_with(|| json!([]));
        if let Some(a) = list.as_array_mut() {
            a.push(json!({"code": code, "message": message}));
        }
    }

    /// Whether no error was added.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Err(50035)` when errors were added.
    pub fn into_result(self) -> Result<(), ApiError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid_form(self))
        }
    }
}
