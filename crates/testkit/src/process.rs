//! Child processes that never outlive a failing test or benchmark.

/// A child process that is killed when dropped, so a failing test or benchmark
/// never leaves a worker running.
pub struct KillOnDrop(Option<std::process::Child>);

impl KillOnDrop {
    /// Owns `child` until dropped or taken back.
    pub fn new(child: std::process::Child) -> Self {
        Self(Some(child))
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.0.as_ref().expect("present until taken").id()
    }

    /// Gives the child back, e.g. to wait for its exit status.
    pub fn into_inner(mut self) -> std::process::Child {
        self.0.take().expect("present until taken")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
