//! Checks of inputs against Discord's limits, run before any request is sent so that a
//! bad input never costs a request (invalid requests count towards Discord's IP ban).

use twilight_model::guild::Permissions;

use crate::error::DiscordError;
use crate::model::{InviteOptions, PermissionOverwrite};

/// Longest message content Discord accepts, in characters.
pub(crate) const MESSAGE_MAX_CHARS: usize = 2000;
/// Longest audit-log reason Discord accepts, in characters.
pub(crate) const AUDIT_REASON_MAX_CHARS: usize = 512;
/// Longest invite lifetime Discord accepts: 7 days.
pub(crate) const INVITE_MAX_AGE_SECS: u32 = 604_800;
/// Most invite uses Discord accepts.
pub(crate) const INVITE_MAX_USES: u16 = 100;
/// Most permission overwrites a channel may have.
pub(crate) const OVERWRITES_MAX: usize = 100;

/// Message content: 1 to 2000 characters, not only whitespace.
pub(crate) fn message_content(content: &str) -> Result<(), DiscordError> {
    if content.trim().is_empty() {
        return Err(DiscordError::validation("content", "must not be empty"));
    }
    if content.chars().count() > MESSAGE_MAX_CHARS {
        return Err(DiscordError::validation(
            "content",
            format!("must be at most {MESSAGE_MAX_CHARS} characters"),
        ));
    }
    Ok(())
}

/// An audit-log reason: at most 512 characters, no control characters, not blank.
pub(crate) fn audit_reason(reason: Option<&str>) -> Result<(), DiscordError> {
    let Some(reason) = reason else {
        return Ok(());
    };
    if reason.trim().is_empty() {
        return Err(DiscordError::validation(
            "reason",
            "must not be empty when given",
        ));
    }
    if reason.chars().count() > AUDIT_REASON_MAX_CHARS {
        return Err(DiscordError::validation(
            "reason",
            format!("must be at most {AUDIT_REASON_MAX_CHARS} characters"),
        ));
    }
    if reason.chars().any(char::is_control) {
        return Err(DiscordError::validation(
            "reason",
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// Invite limits: lifetime up to 7 days, up to 100 uses.
pub(crate) fn invite(options: InviteOptions) -> Result<(), DiscordError> {
    if options.max_age_secs > INVITE_MAX_AGE_SECS {
        return Err(DiscordError::validation(
            "maxAge",
            format!("must be at most {INVITE_MAX_AGE_SECS} seconds"),
        ));
    }
    if options.max_uses > INVITE_MAX_USES {
        return Err(DiscordError::validation(
            "maxUses",
            format!("must be at most {INVITE_MAX_USES}"),
        ));
    }
    Ok(())
}

/// Overwrites: known permission bits only, at most 100, one per target.
pub(crate) fn overwrites(list: &[PermissionOverwrite]) -> Result<(), DiscordError> {
    if list.len() > OVERWRITES_MAX {
        return Err(DiscordError::validation(
            "permissionOverwrites",
            format!("must have at most {OVERWRITES_MAX} entries"),
        ));
    }
    for (i, o) in list.iter().enumerate() {
        overwrite(o)?;
        if list[..i].iter().any(|p| p.id == o.id) {
            return Err(DiscordError::validation(
                "permissionOverwrites",
                format!("has two entries for {}", o.id),
            ));
        }
    }
    Ok(())
}

/// One overwrite: known permission bits only.
pub(crate) fn overwrite(o: &PermissionOverwrite) -> Result<(), DiscordError> {
    if Permissions::from_bits(o.allow).is_none() || Permissions::from_bits(o.deny).is_none() {
        return Err(DiscordError::validation(
            "permissionOverwrites",
            "contains unknown permission bits",
        ));
    }
    Ok(())
}

/// An OAuth2 access token passed to a REST call: present.
pub(crate) fn access_token(token: &str) -> Result<(), DiscordError> {
    if token.trim().is_empty() {
        return Err(DiscordError::validation("accessToken", "must not be empty"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use coven_contract::Snowflake;

    use super::*;
    use crate::model::OverwriteKind;

    #[test]
    fn message_bounds() {
        assert!(message_content("hi").is_ok());
        assert!(message_content(&"é".repeat(2000)).is_ok());
        assert!(message_content(&"é".repeat(2001)).is_err());
        assert!(message_content("").is_err());
        assert!(message_content(" \n").is_err());
    }

    #[test]
    fn reason_bounds() {
        assert!(audit_reason(None).is_ok());
        assert!(audit_reason(Some("room created by alice")).is_ok());
        assert!(audit_reason(Some(&"x".repeat(512))).is_ok());
        assert!(audit_reason(Some(&"x".repeat(513))).is_err());
        assert!(audit_reason(Some("a\nb")).is_err());
        assert!(audit_reason(Some("")).is_err());
    }

    #[test]
    fn invite_bounds() {
        assert!(invite(InviteOptions::default()).is_ok());
        assert!(
            invite(InviteOptions {
                max_age_secs: 604_800,
                max_uses: 100
            })
            .is_ok()
        );
        assert!(
            invite(InviteOptions {
                max_age_secs: 604_801,
                max_uses: 0
            })
            .is_err()
        );
        assert!(
            invite(InviteOptions {
                max_age_secs: 0,
                max_uses: 101
            })
            .is_err()
        );
    }

    #[test]
    fn overwrite_bits_and_duplicates() {
        let ow = |id, allow| PermissionOverwrite {
            id: Snowflake::new(id).unwrap(),
            kind: OverwriteKind::Role,
            allow,
            deny: 0,
        };
        assert!(overwrites(&[ow(1, crate::permissions::CONNECT)]).is_ok());
        assert!(overwrites(&[ow(1, 1 << 62)]).is_err());
        assert!(overwrites(&[ow(1, 0), ow(1, 0)]).is_err());
        assert!(overwrites(&vec![ow(1, 0); 101]).is_err());
    }
}
