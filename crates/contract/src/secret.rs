//! A string that must never be printed: bot tokens, webhook secrets, client secrets.
//!
//! `Secret` has no `Display`, its `Debug` prints a fixed placeholder, and it does not
//! implement `Serialize`, so the value cannot reach a log line, a response body or
//! a config dump by accident. Code that truly needs the value calls [`Secret::expose`].

use std::fmt;

/// A secret value whose `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret's value, for the one place that must use it (signing, an HTTP header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new("hunter2-very-secret");
        let printed = format!("{secret:?} {secret:#?}");
        assert!(!printed.contains("hunter2"));
        assert_eq!(secret.expose(), "hunter2-very-secret");
    }
}
