//! Does the process' file limit fit `MAX_CONNECTIONS`? Checked once at start.
//!
//! Every connection is a file descriptor; when the soft `RLIMIT_NOFILE` is below
//! what `MAX_CONNECTIONS` needs, the kernel refuses connections (and Redis, JWKS
//! and worker requests) before the hub's own limit is reached, for everyone. The
//! hub cannot raise the limit without `unsafe` (forbidden in this workspace), so
//! it says so in one line; `deploy/coven.service` sets `LimitNOFILE` to match.
//! Read from `/proc/self/limits` (Linux); elsewhere nothing is checked.

/// Descriptors besides connections: listeners, Redis, JWKS and worker requests,
/// log and state files, refused connections being answered.
pub(crate) const HEADROOM: u64 = 1024;

/// Logs one warning when the soft file limit is below `max_connections` + headroom.
pub(crate) fn check(max_connections: usize) {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
        return;
    };
    let Some(soft) = soft_open_files(&limits) else {
        return;
    };
    let needed = u64::try_from(max_connections)
        .unwrap_or(u64::MAX)
        .saturating_add(HEADROOM);
    if soft < needed {
        tracing::warn!(
            soft_limit = soft,
            needed,
            "the open-file limit ({soft}) is below what MAX_CONNECTIONS={max_connections} needs \
             ({needed}): raise LimitNOFILE (deploy/coven.service) or `ulimit -n`, or lower MAX_CONNECTIONS"
        );
    }
}

/// The soft "Max open files" of a `/proc/<pid>/limits` text; `None` if unlimited
/// or unreadable.
fn soft_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_soft_limit() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             63422                63422                processes \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(soft_open_files(text), Some(1024));
        assert_eq!(
            soft_open_files("Max open files            unlimited unlimited files"),
            None
        );
    }
}
