//! Is this channel a room? (docs/spec.md §7.1) — the hub's side of the rule.
//!
//! The worker's tracker is the one place that decides which voice channels are
//! rooms (those `@everyone` may view, by Discord's permission algorithm): its view
//! holds rooms only. So the hub does not judge permissions itself; it asks the same
//! [`VoiceViewSource`] the snapshot reads, and a channel that is not in it is no
//! room: 403 `FORBIDDEN` for `end-room`, the bot and cues, exactly as the snapshot
//! never lists it. Without a worker the source is the rooms backend's voice channels
//! ([`ChannelsVoiceView`](crate::ChannelsVoiceView)).
//!
//! A channel may be newer than the view (a room created a moment ago, a worker that
//! has not seen `GUILD_CREATE` yet): the view is asked again a few times, over about
//! three seconds, before the answer is 403. A view that cannot be read is 503, never
//! a guess.

use std::time::Duration;

use coven_contract::Snowflake;

use crate::error::HubError;
use crate::snapshot::VoiceViewSource;

/// The pauses between asking the view again for a channel it does not list yet.
const RETRY_PAUSES_MS: [u64; 6] = [100, 200, 400, 800, 800, 800];

/// `Ok` when `channel_id` is a room of the view; 403 when the view keeps not
/// listing it; 503 when the view cannot be read.
pub(crate) async fn ensure_room(
    view: &dyn VoiceViewSource,
    channel_id: Snowflake,
) -> Result<(), HubError> {
    let mut pauses = RETRY_PAUSES_MS.iter();
    loop {
        let rooms = view.fetch().await.map_err(|error| {
            tracing::warn!(%error, channel = %channel_id, "room check: voice view unavailable");
            HubError::Unavailable(
                "the list of rooms is not reachable right now, retry shortly".into(),
            )
        })?;
        if rooms.rooms.contains_key(&channel_id) {
            return Ok(());
        }
        let Some(&pause) = pauses.next() else {
            return Err(HubError::Forbidden(
                "not a room: this channel is not open to everyone in the guild".into(),
            ));
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}
