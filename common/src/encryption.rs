//! Fernet encryption with key rotation, compatible with Python's
//! `cryptography.fernet` (the Python version encrypts 2FA secrets with it).
//!
//! The `encryption-key` secret holds one Fernet key per line. The first one
//! encrypts; every one of them is tried to decrypt, as Python's `MultiFernet`
//! does. To rotate: put a new key on the first line, keep the old ones below
//! until every stored token has been re-encrypted or has expired.

use crate::log::profile;
use fernet::Fernet;

/// The Fernet keys of the `encryption-key` secret, the encrypting one first.
pub struct Keyring {
    keys: Vec<Fernet>,
}

impl Keyring {
    /// Parses one key per line, ignoring blank lines. The error says what is
    /// wrong and on which line, never the key itself.
    pub fn parse(text: &str) -> Result<Keyring, String> {
        let keys = crate::keyfile::parse(
            text,
            "a Fernet key (32 bytes in URL-safe base64)",
            Fernet::new,
        )?;
        Ok(Keyring { keys })
    }

    /// Encrypts with the first key.
    pub fn encrypt(&self, plaintext: &[u8]) -> String {
        profile::during("fernet", || self.keys[0].encrypt(plaintext))
    }

    /// Decrypts with whichever key fits; `None` when none does or the token
    /// was tampered with.
    pub fn decrypt(&self, token: &str) -> Option<Vec<u8>> {
        profile::during("fernet", || {
            self.keys.iter().find_map(|key| key.decrypt(token).ok())
        })
    }

    /// Like [`Keyring::decrypt`], but also refuses a token older than
    /// `ttl_seconds` (or dated more than a minute in the future).
    pub fn decrypt_with_ttl(&self, token: &str, ttl_seconds: u64) -> Option<Vec<u8>> {
        profile::during("fernet", || {
            self.keys
                .iter()
                .find_map(|key| key.decrypt_with_ttl(token, ttl_seconds).ok())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=";
    const NEW: &str = "X8bcvS3bUJ1AYQQrWx5Is5AZmM8Fc5RX6C-vVFG1bDw=";

    #[test]
    fn first_key_encrypts_all_keys_decrypt() {
        let old_only = Keyring::parse(OLD).unwrap();
        let rotated = Keyring::parse(&format!("{NEW}\n\n{OLD}\n")).unwrap();
        let legacy_token = old_only.encrypt(b"JBSWY3DPEHPK3PXP");
        assert_eq!(rotated.decrypt(&legacy_token).unwrap(), b"JBSWY3DPEHPK3PXP");
        let new_token = rotated.encrypt(b"secret");
        assert!(old_only.decrypt(&new_token).is_none());
        assert_eq!(
            Keyring::parse(NEW).unwrap().decrypt(&new_token).unwrap(),
            b"secret"
        );
    }

    #[test]
    fn tampered_tokens_and_bad_keys_are_refused() {
        let keyring = Keyring::parse(OLD).unwrap();
        let mut token = keyring.encrypt(b"secret").into_bytes();
        let middle = token.len() / 2;
        token[middle] = if token[middle] == b'A' { b'B' } else { b'A' };
        assert!(keyring
            .decrypt(std::str::from_utf8(&token).unwrap())
            .is_none());
        assert_eq!(
            Keyring::parse(&format!("{OLD}\nshort")).err().unwrap(),
            "line 2 is not a Fernet key (32 bytes in URL-safe base64)"
        );
        assert_eq!(Keyring::parse("\n \n").err().unwrap(), "holds no key");
    }
}
