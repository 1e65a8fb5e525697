//! Discord snowflake ids and ISO 8601 timestamps, generated the way Discord does.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds between the Unix epoch and Discord's epoch (2015-01-01T00:00:00Z).
pub const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// The fixed creation time (2024-06-01T00:00:00Z) of the seeded world, so seeded ids are stable.
pub const SEED_TIME_MS: u64 = 1_717_200_000_000;

/// Serde helpers that write snowflakes as JSON strings, as Discord always does: a JSON number
/// above 2^53 loses precision in JavaScript (docs/simulator.md, "Control API").
pub mod as_string {
    use std::collections::BTreeMap;

    use serde::Serializer;
    use serde::ser::{SerializeMap, SerializeSeq};

    /// One snowflake as a string.
    ///
    /// # Errors
    /// Those of the serializer.
    #[allow(clippy::trivially_copy_pass_by_ref)] // serde's `serialize_with` passes a reference
    pub fn id<S: Serializer>(id: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    /// A list of snowflakes as strings.
    ///
    /// # Errors
    /// Those of the serializer.
    pub fn ids<S: Serializer>(ids: &[u64], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(ids.len()))?;
        for id in ids {
            seq.serialize_element(&id.to_string())?;
        }
        seq.end()
    }

    /// A map whose values are snowflakes, values as strings.
    ///
    /// # Errors
    /// Those of the serializer.
    pub fn id_values<K: serde::Serialize, S: Serializer>(
        map: &BTreeMap<K, u64>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(map.len()))?;
        for (k, v) in map {
            m.serialize_entry(k, &v.to_string())?;
        }
        m.end()
    }
}

/// Generates unique snowflakes: 42 bits of milliseconds since Discord's epoch,
/// 5 bits worker, 5 bits process, 12 bits increment.
#[derive(Debug)]
pub struct Snowflakes {
    increment: u64,
}

impl Snowflakes {
    /// A generator starting at increment 0.
    pub fn new() -> Self {
        Self { increment: 0 }
    }

    /// A snowflake for the given Unix time in milliseconds.
    pub fn at(&mut self, unix_ms: u64) -> u64 {
        self.increment = (self.increment + 1) & 0xfff;
        ((unix_ms - DISCORD_EPOCH_MS) << 22) | (1 << 17) | (1 << 12) | self.increment
    }

    /// A snowflake for the current time.
    pub fn now(&mut self) -> u64 {
        self.at(now_ms())
    }
}

impl Default for Snowflakes {
    fn default() -> Self {
        Self::new()
    }
}

/// The Unix time in milliseconds at which a snowflake was created.
pub fn created_ms(id: u64) -> u64 {
    (id >> 22) + DISCORD_EPOCH_MS
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

/// Formats Unix milliseconds the way Discord does: `2024-06-01T00:00:00.000000+00:00`.
pub fn iso8601(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let micros = (unix_ms % 1000) * 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}+00:00",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instant() {
        assert_eq!(iso8601(SEED_TIME_MS), "2024-06-01T00:00:00.000000+00:00");
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000000+00:00");
    }

    #[test]
    fn snowflake_round_trips_time() {
        let mut s = Snowflakes::new();
        let id = s.at(SEED_TIME_MS);
        assert_eq!(created_ms(id), SEED_TIME_MS);
        assert_ne!(s.at(SEED_TIME_MS), id);
    }

    #[test]
    fn voice_sessions_serialize_user_ids_as_strings() {
        let mut snap = crate::voice::VoiceSnapshot::default();
        snap.sessions.insert(7, 1_246_251_878_187_143_170);
        let v = serde_json::to_value(&snap).unwrap();
        assert_eq!(v["sessions"]["7"], "1246251878187143170");
    }
}
