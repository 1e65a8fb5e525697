//! Payload quirks: dispatches as Discord has been seen to send them, valid JSON
//! that a strict client cannot read (see [`super::Fault::UnreadableVoiceStates`]).

use serde_json::Value;

/// `frame` rewritten with `self_stream: null` and its member's `roles` removed
/// (and `user_id` too with `without_user_id`), when it is a `VOICE_STATE_UPDATE`
/// dispatch; `None` otherwise.
pub(crate) fn unreadable_voice_state(frame: &str, without_user_id: bool) -> Option<String> {
    let mut payload: Value = serde_json::from_str(frame).ok()?;
    if payload["t"] != "VOICE_STATE_UPDATE" {
        return None;
    }
    let data = payload.get_mut("d")?.as_object_mut()?;
    data.insert("self_stream".into(), Value::Null);
    if let Some(member) = data.get_mut("member").and_then(Value::as_object_mut) {
        member.remove("roles");
    }
    if without_user_id {
        data.remove("user_id");
    }
    Some(payload.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_voice_state_updates_change() {
        let vsu = r#"{"op":0,"t":"VOICE_STATE_UPDATE","s":3,"d":{"self_stream":false,"member":{"roles":["1"],"nick":null}}}"#;
        let changed: Value =
            serde_json::from_str(&unreadable_voice_state(vsu, false).unwrap()).unwrap();
        assert_eq!(changed["d"]["self_stream"], Value::Null);
        assert!(changed["d"]["member"].get("roles").is_none());
        assert_eq!(changed["s"], 3);
        let vsu = r#"{"op":0,"t":"VOICE_STATE_UPDATE","d":{"user_id":"4"}}"#;
        let changed: Value =
            serde_json::from_str(&unreadable_voice_state(vsu, true).unwrap()).unwrap();
        assert!(changed["d"].get("user_id").is_none());
        let other = r#"{"op":0,"t":"CHANNEL_CREATE","d":{}}"#;
        assert!(unreadable_voice_state(other, false).is_none());
    }
}
