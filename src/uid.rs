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
    /// The uid contains a control character (C0, DEL or C1), such as the newline a line-based
    /// client appends.
    ControlCharacter,
    /// The uid is only whitespace.
    OnlyWhitespace,
}

impl std::fmt::Display for InvalidUid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Empty => "uid is empty",
            Self::TooLong => "uid is longer than 128 bytes",
            Self::ContainsColon => "uid contains ':'",
            Self::Reserved => "uid 'all' is reserved for broadcasts",
            Self::ControlCharacter => {
                "uid contains a control character (a trailing newline from the client?)"
            }
            Self::OnlyWhitespace => "uid is only whitespace",
        })
    }
}

impl std::error::Error for InvalidUid {}

/// Checks a uid against the rules: non-empty, at most 128 bytes, no `:`, not `all`, no control
/// characters (C0, DEL, C1), not only whitespace.
pub fn validate_uid(uid: &str) -> Result<(), InvalidUid> {
    if uid.is_empty() {
        Err(InvalidUid::Empty)
    } else if uid.len() > MAX_UID_LEN {
        Err(InvalidUid::TooLong)
    } else if uid.contains(':') {
        Err(InvalidUid::ContainsColon)
    } else if uid == BROADCAST_RECIPIENT {
        Err(InvalidUid::Reserved)
    } else if uid.chars().any(char::is_control) {
        Err(InvalidUid::ControlCharacter)
    } else if uid.chars().all(char::is_whitespace) {
        Err(InvalidUid::OnlyWhitespace)
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
        assert_eq!(validate_uid("alice\n"), Err(InvalidUid::ControlCharacter));
        assert_eq!(validate_uid("a\u{7f}"), Err(InvalidUid::ControlCharacter));
        assert_eq!(validate_uid("a\u{85}"), Err(InvalidUid::ControlCharacter));
        assert_eq!(validate_uid(" \u{3000} "), Err(InvalidUid::OnlyWhitespace));
        assert_eq!(validate_uid("bob smith"), Ok(()));
    }
}
