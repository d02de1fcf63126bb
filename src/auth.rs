//! Signed logins: a backend vouches for a uid until an expiry time, and the server checks it
//! during the handshake.
//!
//! Browsers cannot set headers on a WebSocket connect, so the proof travels in the URL:
//! `?uid=<uid>&expires=<unix seconds>&sig=<hex HMAC-SHA256(secret, "<uid>:<expires>")>`. The
//! signature is checked in constant time; an expired or forged proof is refused before the
//! connection opens.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::uid::validate_uid;

type HmacSha256 = Hmac<Sha256>;

/// Why a login proof was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// A required query parameter is absent (`uid`, `expires` or `sig`).
    Missing(&'static str),
    /// A parameter appears twice, or `expires` or `sig` is not well formed.
    Malformed(&'static str),
    /// The uid breaks the uid rules.
    InvalidUid(crate::InvalidUid),
    /// `expires` is in the past.
    Expired,
    /// `expires` is further ahead than the server's maximum lifetime allows (a URL minted
    /// with milliseconds, or meant to be reused for days).
    TooFarAhead,
    /// The signature does not match.
    BadSignature,
}

impl std::fmt::Display for LoginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing(name) => write!(f, "missing {name} in the query string"),
            Self::Malformed(what) => write!(f, "malformed login: {what}"),
            Self::InvalidUid(reason) => write!(f, "invalid uid: {reason}"),
            Self::Expired => f.write_str("login expired"),
            Self::TooFarAhead => f.write_str("login expires too far ahead"),
            Self::BadSignature => f.write_str("bad login signature"),
        }
    }
}

impl std::error::Error for LoginError {}

/// The hex HMAC-SHA256 of `"<uid>:<expires>"` under `secret`: what a backend puts in `sig`.
pub fn sign_login(secret: &[u8], uid: &str, expires: u64) -> String {
    hex::encode(mac_for(secret, uid, expires).finalize().into_bytes())
}

/// Checks the login proof in a query string at time `now` (unix seconds) and returns the uid.
/// A proof that expires more than `max_ttl` seconds after `now` is refused: a login URL is a
/// bearer credential, and whoever holds it can connect as the uid until it expires.
pub fn verify_login(
    secret: &[u8],
    query: &str,
    now: u64,
    max_ttl: u64,
) -> Result<String, LoginError> {
    let (mut uid, mut expires, mut sig) = (None, None, None);
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let slot = match &*name {
            "uid" => &mut uid,
            "expires" => &mut expires,
            "sig" => &mut sig,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(LoginError::Malformed("a parameter appears twice"));
        }
    }
    let uid = uid.ok_or(LoginError::Missing("uid"))?;
    let expires = expires.ok_or(LoginError::Missing("expires"))?;
    let sig = sig.ok_or(LoginError::Missing("sig"))?;
    validate_uid(&uid).map_err(LoginError::InvalidUid)?;
    let expires: u64 = expires
        .parse()
        .map_err(|_| LoginError::Malformed("expires is not unix seconds"))?;
    let sig = hex::decode(&*sig).map_err(|_| LoginError::Malformed("sig is not hex"))?;
    if expires < now {
        return Err(LoginError::Expired);
    }
    if expires - now > max_ttl {
        return Err(LoginError::TooFarAhead);
    }
    mac_for(secret, &uid, expires)
        .verify_slice(&sig)
        .map_err(|_| LoginError::BadSignature)?;
    Ok(uid.into_owned())
}

/// The current time in unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

fn mac_for(secret: &[u8], uid: &str, expires: u64) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(uid.as_bytes());
    mac.update(b":");
    mac.update(expires.to_string().as_bytes());
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"s3cret";

    fn verify_login_1h(secret: &[u8], query: &str, now: u64) -> Result<String, LoginError> {
        verify_login(secret, query, now, 3600)
    }

    #[test]
    fn refuses_proofs_that_expire_beyond_the_maximum_lifetime() {
        let sig = sign_login(SECRET, "alice", 1_000 + 3_601);
        assert_eq!(
            verify_login_1h(SECRET, &query("alice", 1_000 + 3_601, &sig), 1_000),
            Err(LoginError::TooFarAhead)
        );
        // Milliseconds instead of seconds: ~50,000 years ahead.
        let millis = 1_700_000_000_000;
        let sig = sign_login(SECRET, "alice", millis);
        assert_eq!(
            verify_login_1h(SECRET, &query("alice", millis, &sig), 1_700_000_000),
            Err(LoginError::TooFarAhead)
        );
    }

    fn query(uid: &str, expires: u64, sig: &str) -> String {
        format!("uid={uid}&expires={expires}&sig={sig}")
    }

    #[test]
    fn matches_an_independent_hmac_sha256() {
        // HMAC-SHA256("s3cret", "alice:1700000000"), computed with Python's hmac module.
        assert_eq!(
            sign_login(SECRET, "alice", 1_700_000_000),
            "ae9629ee5cdbbfb29d9711630d5c877d8b4e9c4f5bdb690071a759606346d3d2"
        );
    }

    #[test]
    fn accepts_a_valid_proof_and_decodes_the_uid() {
        let sig = sign_login(SECRET, "bob smith", 2000);
        assert_eq!(
            verify_login_1h(SECRET, &query("bob%20smith", 2000, &sig), 1999),
            Ok("bob smith".to_owned())
        );
    }

    #[test]
    fn refuses_expired_forged_and_replayed_proofs() {
        let sig = sign_login(SECRET, "alice", 2000);
        assert_eq!(
            verify_login_1h(SECRET, &query("alice", 2000, &sig), 2001),
            Err(LoginError::Expired)
        );
        assert_eq!(
            verify_login_1h(SECRET, &query("mallory", 2000, &sig), 1000),
            Err(LoginError::BadSignature)
        );
        assert_eq!(
            verify_login_1h(SECRET, &query("alice", 3000, &sig), 1000),
            Err(LoginError::BadSignature)
        );
        assert_eq!(
            verify_login_1h(b"other", &query("alice", 2000, &sig), 1000),
            Err(LoginError::BadSignature)
        );
    }

    #[test]
    fn refuses_missing_duplicate_and_malformed_parameters() {
        assert_eq!(
            verify_login_1h(SECRET, "expires=1&sig=00", 0),
            Err(LoginError::Missing("uid"))
        );
        assert!(matches!(
            verify_login_1h(SECRET, "uid=a&uid=b&expires=1&sig=00", 0),
            Err(LoginError::Malformed(_))
        ));
        assert!(matches!(
            verify_login_1h(SECRET, "uid=a&expires=soon&sig=00", 0),
            Err(LoginError::Malformed(_))
        ));
        assert!(matches!(
            verify_login_1h(SECRET, "uid=a&expires=1&sig=zz", 0),
            Err(LoginError::Malformed(_))
        ));
        assert!(matches!(
            verify_login_1h(SECRET, "uid=all&expires=1&sig=00", 0),
            Err(LoginError::InvalidUid(_))
        ));
    }
}
