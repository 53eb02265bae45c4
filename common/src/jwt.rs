//! Access tokens as JSON Web Tokens (RFC 7519) signed with Ed25519 (EdDSA,
//! RFC 8037), and the JSON Web Key Set (RFC 7517) that publishes the keys.
//!
//! Applications verify an access token on their own, offline, with any JWT
//! library and the output of the `jwks` function: that is the point of
//! signing with an asymmetric key. Ed25519 rather than ES256: signatures are
//! deterministic (no per-signature random number to get wrong), keys are 32
//! bytes (a secret file line anyone can generate with `head -c 32
//! /dev/urandom | base64`), and ed25519-dalek is pure Rust. Every common JWT
//! library verifies EdDSA (PyJWT, jose, jsonwebtoken, Nimbus...).
//!
//! A JWT is three base64url parts, so it is written here with serde_json and
//! base64 rather than pulled from a crate: `header.claims.signature`, the
//! signature over the first two parts.
//!
//! The `jwt-signing-keys` secret holds one key per line, each a 32-byte
//! Ed25519 seed in base64 (standard or URL-safe, padding optional). The first
//! key signs; all of them are published, so that tokens signed by a retired
//! key stay verifiable until they expire (rotation). Each key is named (`kid`)
//! by its RFC 7638 thumbprint, so a name never has to be chosen or kept.

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// The signing keys of the `jwt-signing-keys` secret, the signing one first.
pub struct SigningKeys {
    keys: Vec<NamedKey>,
}

struct NamedKey {
    kid: String,
    key: SigningKey,
}

impl SigningKeys {
    /// Parses one base64 Ed25519 seed per line, ignoring blank lines. The
    /// error says which line is wrong, never what it holds.
    pub fn parse(text: &str) -> Result<SigningKeys, String> {
        let keys = crate::keyfile::parse(text, "an Ed25519 key (32 bytes in base64)", |line| {
            let seed: [u8; 32] = decode_base64(line)?.try_into().ok()?;
            let key = SigningKey::from_bytes(&seed);
            Some(NamedKey {
                kid: thumbprint(&public_x(&key)),
                key,
            })
        })?;
        Ok(SigningKeys { keys })
    }

    /// The `kid` of the key that signs.
    pub fn signing_kid(&self) -> &str {
        &self.keys[0].kid
    }

    /// Signs `claims` with the first key: a compact JWS, `header.claims.signature`.
    pub fn sign(&self, claims: &Map<String, Value>) -> String {
        crate::log::profile::during("signing", || self.sign_now(claims))
    }

    fn sign_now(&self, claims: &Map<String, Value>) -> String {
        let signer = &self.keys[0];
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": signer.kid});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string())
        );
        let signature = signer.key.sign(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }

    /// The public keys as a JSON Web Key Set: every key of the secret, the
    /// signing one first.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .map(|named| {
                json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": public_x(&named.key),
                    "kid": named.kid,
                    "use": "sig",
                    "alg": "EdDSA",
                })
            })
            .collect();
        json!({ "keys": keys })
    }
}

/// Standard or URL-safe base64, with or without padding.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let unpadded = text.trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(unpadded)
        .or_else(|_| STANDARD_NO_PAD.decode(unpadded))
        .ok()
}

/// The public key, base64url: the JWK's `x`.
fn public_x(key: &SigningKey) -> String {
    URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes())
}

/// RFC 7638: SHA-256 of the JWK's required members, in lexical order and
/// without white space, base64url.
fn thumbprint(x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};

    /// RFC 8037, appendix A.1: the example key, its public key (A.2) and
    /// its thumbprint (A.3).
    const RFC_SEED: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
    const RFC_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    const RFC_KID: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";

    #[test]
    fn keys_are_named_by_their_rfc_7638_thumbprint() {
        let keys = SigningKeys::parse(RFC_SEED).unwrap();
        assert_eq!(keys.signing_kid(), RFC_KID);
        let jwks = keys.jwks();
        assert_eq!(jwks["keys"][0]["x"], RFC_X);
        assert_eq!(jwks["keys"][0]["kid"], RFC_KID);
        assert_eq!(jwks["keys"][0]["kty"], "OKP");
        assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
        assert!(jwks["keys"][0].get("d").is_none(), "no private part");
    }

    #[test]
    fn the_first_key_signs_and_every_key_is_published() {
        let second = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA=";
        let keys = SigningKeys::parse(&format!("\n{RFC_SEED}\n\n{second}\n")).unwrap();
        assert_eq!(keys.jwks()["keys"].as_array().unwrap().len(), 2);
        let mut claims = Map::new();
        claims.insert("sub".into(), "42".into());
        let token = keys.sign(&claims);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(
            header,
            json!({"alg": "EdDSA", "typ": "JWT", "kid": RFC_KID})
        );
        let public: [u8; 32] = URL_SAFE_NO_PAD.decode(RFC_X).unwrap().try_into().unwrap();
        let signature: [u8; 64] = URL_SAFE_NO_PAD
            .decode(parts[2])
            .unwrap()
            .try_into()
            .unwrap();
        let verifying = VerifyingKey::from_bytes(&public).unwrap();
        let input = format!("{}.{}", parts[0], parts[1]);
        assert!(verifying
            .verify(input.as_bytes(), &Signature::from_bytes(&signature))
            .is_ok());
        assert!(verifying
            .verify(b"tampered", &Signature::from_bytes(&signature))
            .is_err());
    }

    #[test]
    fn malformed_keys_are_refused_without_showing_them() {
        assert_eq!(
            SigningKeys::parse(&format!("{RFC_SEED}\nnot-a-key")).err(),
            Some("line 2 is not an Ed25519 key (32 bytes in base64)".to_owned())
        );
        assert_eq!(
            SigningKeys::parse(" \n").err(),
            Some("holds no key".to_owned())
        );
        // Standard alphabet and padding are accepted too.
        assert!(SigningKeys::parse("+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/8=").is_ok());
    }
}
