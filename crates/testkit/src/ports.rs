//! Free TCP ports for child processes, chosen below the kernel's ephemeral range
//! so that no outgoing connection can take one between the pick and the child's
//! bind (the crate docs explain the race this avoids).

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::ops::RangeInclusive;
use std::sync::{Mutex, PoisonError};

/// Where the kernel's ephemeral range is read at run time.
const EPHEMERAL_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";
/// Linux's default ephemeral range, used when the file cannot be read.
const DEFAULT_EPHEMERAL: (u16, u16) = (32_768, 60_999);
/// The lowest port handed out: above the well-known services developers run
/// locally (databases, dev servers on 3000, 8080, ...).
const LOWEST: u16 = 15_000;
/// Fewer candidates than this and the pick would collide too often.
const ENOUGH: u16 = 1_000;

/// Ports handed out by this process: never twice, even after the child exits.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A TCP port that no one listens on and that neither the kernel (for port-0
/// binds and outgoing connections) nor another call in this process will hand
/// out, for a child process to listen on.
pub fn free_port() -> u16 {
    let candidates = candidates(ephemeral_range());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    for _ in 0..10_000 {
        let port = rand::random_range(candidates.clone());
        if !handed_out.contains(&port) && is_free(port) {
            handed_out.insert(port);
            return port;
        }
    }
    panic!("no free port in {candidates:?}");
}

/// The kernel's ephemeral range, `(low, high)`.
fn ephemeral_range() -> (u16, u16) {
    let Ok(text) = std::fs::read_to_string(EPHEMERAL_RANGE) else {
        return DEFAULT_EPHEMERAL;
    };
    let mut bounds = text.split_whitespace().map(str::parse::<u16>);
    match (bounds.next(), bounds.next()) {
        (Some(Ok(low)), Some(Ok(high))) if low <= high => (low, high),
        _ => DEFAULT_EPHEMERAL,
    }
}

/// Below the ephemeral range when it leaves room there, else above it.
fn candidates((low, high): (u16, u16)) -> RangeInclusive<u16> {
    if low.saturating_sub(LOWEST) >= ENOUGH {
        LOWEST..=low - 1
    } else if u16::MAX - high >= ENOUGH {
        high + 1..=u16::MAX
    } else {
        // An unusual kernel setting: only the bind check and the set protect.
        1_024..=u16::MAX
    }
}

/// Nothing listens on `port` on any IPv4 address.
fn is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_below_the_ephemeral_range_and_never_repeat() {
        let (low, _) = ephemeral_range();
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let unique: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len());
        if low >= LOWEST + ENOUGH {
            assert!(
                ports.iter().all(|&p| (LOWEST..low).contains(&p)),
                "{ports:?}"
            );
        }
    }

    #[test]
    fn a_narrow_range_below_moves_the_pick_above() {
        assert_eq!(candidates((32_768, 60_999)), 15_000..=32_767);
        assert_eq!(candidates((15_500, 60_999)), 61_000..=65_535);
    }
}
