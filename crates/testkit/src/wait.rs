//! Waiting on a condition with a timeout instead of sleeping a fixed time: the
//! test is as fast as the system allows and fails with a message when it is not.

use std::time::Duration;

/// The longest any single wait of a test lasts.
pub const WAIT: Duration = Duration::from_secs(20);

/// How often [`eventually`] checks again.
const POLL: Duration = Duration::from_millis(20);

/// What a check of [`eventually`] yields: `bool` (done or not) or `Option<T>`
/// (the value, once there).
pub trait Outcome {
    /// What [`eventually`] returns once the check succeeds.
    type Value;

    /// The value when the check succeeded, `None` to check again.
    fn into_value(self) -> Option<Self::Value>;
}

impl Outcome for bool {
    type Value = ();

    fn into_value(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;

    fn into_value(self) -> Option<T> {
        self
    }
}

/// Runs `check` every 20 ms until it succeeds (true, or `Some(value)`), for at
/// most [`WAIT`]; panics naming `what` when it never does.
pub async fn eventually<R: Outcome>(what: &str, mut check: impl AsyncFnMut() -> R) -> R::Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await.into_value() {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}
