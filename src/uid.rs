//! The rules a user id must follow, shared by every way one can be bound.

/// Longest uid accepted, in bytes.
pub const MAX_UID_LEN: usize = 128;

/// The recipient that means "everyone"; it can never be a uid.
pub const BROADCAST_RECIPIENT: &str = "all";

/// Why a uid was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidUid {
    /// The uid is empty.
    Empty,
    /// The uid is longer than `MAX_UID_LEN` bytes.
    TooLong,
    /// The uid contains `:`, which separates recipient from message.
    ContainsColon,
    /// The uid is the reserved word `all`.
    Reserved,
}

impl std::fmt::Display for InvalidUid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Empty => "uid is empty",
            Self::TooLong => "uid is longer than 128 bytes",
            Self::ContainsColon => "uid contains ':'",
            Self::Reserved => "uid 'all' is reserved for broadcasts",
        })
    }
}

impl std::error::Error for InvalidUid {}

/// Checks a uid against the rules: non-empty, at most 128 bytes, no `:`, not `all`.
pub fn validate_uid(uid: &str) -> Result<(), InvalidUid> {
    if uid.is_empty() {
        Err(InvalidUid::Empty)
    } else if uid.len() > MAX_UID_LEN {
        Err(InvalidUid::TooLong)
    } else if uid.contains(':') {
        Err(InvalidUid::ContainsColon)
    } else if uid == BROADCAST_RECIPIENT {
        Err(InvalidUid::Reserved)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_every_rule() {
        assert_eq!(validate_uid("alice"), Ok(()));
        assert_eq!(validate_uid(&"x".repeat(128)), Ok(()));
        assert_eq!(validate_uid(""), Err(InvalidUid::Empty));
        assert_eq!(validate_uid(&"x".repeat(129)), Err(InvalidUid::TooLong));
        assert_eq!(validate_uid("a:b"), Err(InvalidUid::ContainsColon));
        assert_eq!(validate_uid("all"), Err(InvalidUid::Reserved));
    }
}
