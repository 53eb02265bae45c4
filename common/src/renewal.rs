//! Renewal tokens: what authenticate hands over when it finds valid but
//! expired credentials, and what generate-password asks for before it issues
//! new ones for an existing account.
//!
//! A token is a Fernet token (the `encryption-key` keyring) over a small JSON
//! payload: a purpose tag, the account's username and a SHA-256 fingerprint
//! of its current password hash. So a token
//! - cannot be forged or read without the key;
//! - lives [`TTL_SECONDS`] (Fernet carries its issue time);
//! - works for its own account only;
//! - works once: renewal replaces the password hash, and the fingerprint of
//!   the new one no longer matches.
//!
//! Nothing is stored. The purpose tag keeps 2FA secrets, encrypted with the
//! same keys, from ever passing for a token.

use crate::encryption::Keyring;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How long a renewal token is valid: 15 minutes.
pub const TTL_SECONDS: u64 = 15 * 60;

const PURPOSE: &str = "cofrap-renewal-v1";

/// Issues a token for the account `username` whose password hash is `password_hash`.
pub fn issue(keyring: &Keyring, username: &str, password_hash: &str) -> String {
    let payload = json!({
        "purpose": PURPOSE,
        "username": username,
        "credentials": fingerprint(password_hash),
    });
    keyring.encrypt(payload.to_string().as_bytes())
}

/// True when `token` was issued, less than [`TTL_SECONDS`] ago, for this
/// account and these very credentials.
pub fn is_valid(keyring: &Keyring, token: &str, username: &str, password_hash: &str) -> bool {
    let Some(plaintext) = keyring.decrypt_with_ttl(token, TTL_SECONDS) else {
        return false;
    };
    let Ok(payload) = serde_json::from_slice::<Value>(&plaintext) else {
        return false;
    };
    let expected = fingerprint(password_hash);
    let fingerprint_matches: bool = payload["credentials"]
        .as_str()
        .is_some_and(|found| found.as_bytes().ct_eq(expected.as_bytes()).into());
    payload["purpose"] == PURPOSE && payload["username"] == username && fingerprint_matches
}

fn fingerprint(password_hash: &str) -> String {
    Sha256::digest(password_hash.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring() -> Keyring {
        Keyring::parse("cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=").unwrap()
    }

    #[test]
    fn a_token_is_valid_for_its_account_and_credentials_only() {
        let keys = keyring();
        let token = issue(&keys, "alice", "$2b$12$hash-one");
        assert!(is_valid(&keys, &token, "alice", "$2b$12$hash-one"));
        assert!(!is_valid(&keys, &token, "bob", "$2b$12$hash-one"));
        assert!(!is_valid(&keys, &token, "alice", "$2b$12$hash-two"));
        let other_keys = Keyring::parse("X8bcvS3bUJ1AYQQrWx5Is5AZmM8Fc5RX6C-vVFG1bDw=").unwrap();
        assert!(!is_valid(&other_keys, &token, "alice", "$2b$12$hash-one"));
    }

    #[test]
    fn other_fernet_tokens_are_not_renewal_tokens() {
        let keys = keyring();
        let secret_token = keys.encrypt(b"JBSWY3DPEHPK3PXP");
        assert!(!is_valid(&keys, &secret_token, "alice", "$2b$12$hash-one"));
        let wrong_purpose = keys.encrypt(
            json!({"purpose": "other", "username": "alice",
                   "credentials": fingerprint("$2b$12$hash-one")})
            .to_string()
            .as_bytes(),
        );
        assert!(!is_valid(&keys, &wrong_purpose, "alice", "$2b$12$hash-one"));
        assert!(!is_valid(&keys, "garbage", "alice", "$2b$12$hash-one"));
    }
}
