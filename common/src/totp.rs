//! Time-based one-time passwords (RFC 6238) as Google Authenticator and
//! pyotp use them: HMAC-SHA1, 6 digits, 30-second steps.
//!
//! A code is accepted for the current step and one step either side (clock
//! drift and typing time). Which step matched is returned, so that the caller
//! can refuse that step and every older one from then on (RFC 6238 §5.2): the
//! account lifecycle stores it.

use crate::error::Error;
use totp_rs::{Algorithm, Builder, Secret, Totp};

/// The issuer shown by authenticator apps.
pub const ISSUER: &str = "COFRAP";
/// Digits of a code.
pub const DIGITS: u8 = 6;
/// Seconds per step.
pub const STEP_SECONDS: u64 = 30;
/// Steps accepted either side of the current one.
pub const SKEW_STEPS: u16 = 1;
/// 160 bits, like `pyotp.random_base32()` (32 base32 characters).
pub const SECRET_BYTES: usize = 20;

/// A shared TOTP secret. Deliberately neither `Debug` nor `Display`.
pub struct TotpSecret {
    bytes: Vec<u8>,
}

impl TotpSecret {
    /// Draws a new secret from the operating system's generator.
    pub fn generate() -> Result<TotpSecret, Error> {
        let mut bytes = vec![0u8; SECRET_BYTES];
        crate::random::fill(&mut bytes)?;
        Ok(TotpSecret { bytes })
    }

    /// Reads a base32 secret however it was written: any case, with `=`
    /// padding, spaces or dashes (as apps display it). The Python version
    /// stored pyotp's upper-case, unpadded form; people type other forms.
    pub fn from_base32(text: &str) -> Option<TotpSecret> {
        let normalized: String = text
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '=' | '\t' | '\n' | '\r'))
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if normalized.is_empty() {
            return None;
        }
        let secret = Secret::try_from_base32(&normalized).ok()?;
        Some(TotpSecret {
            bytes: secret.as_bytes().to_vec(),
        })
    }

    /// The canonical form: upper case, unpadded RFC 4648 base32, as pyotp
    /// and authenticator apps expect for manual entry.
    pub fn to_base32(&self) -> String {
        Secret::from(self.bytes.clone()).to_base32()
    }

    /// Checks a code at `unix_time`; returns the step it belongs to, or `None`.
    /// The comparison is constant-time (totp-rs compares tokens with
    /// `constant_time_eq`).
    pub fn check(&self, code: &str, unix_time: u64) -> Option<u64> {
        crate::log::profile::during("totp", || self.totp().check(code, unix_time))
    }

    /// The code for `unix_time` (tests and tools use it).
    pub fn code_at(&self, unix_time: u64) -> String {
        self.totp().generate(unix_time).to_string()
    }

    fn totp(&self) -> Totp {
        // Not `build()`: it refuses secrets under 128 bits, and pyotp once
        // generated 80-bit ones that accounts may still hold. The parameters
        // themselves are constants that are known to be valid.
        Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(DIGITS)
            .with_skew(SKEW_STEPS)
            .with_step_duration(STEP_SECONDS)
            .with_secret(self.bytes.clone())
            .build_noncompliant()
    }
}

/// Validates the shape of a code typed by a person: six digits, spaces
/// allowed in between ("123 456", as apps display it).
pub fn parse_code(text: &str) -> Result<String, Error> {
    let code: String = text.chars().filter(|c| *c != ' ').collect();
    if code.len() == usize::from(DIGITS) && code.bytes().all(|b| b.is_ascii_digit()) {
        Ok(code)
    } else {
        Err(Error::InvalidField {
            field: "totp_code",
            reason: "must be the 6 digits shown by the authenticator app",
        })
    }
}

/// The `otpauth://` URI an authenticator app scans, exactly as pyotp's
/// `provisioning_uri(name=account, issuer_name=ISSUER)` writes it.
pub fn provisioning_uri(secret: &TotpSecret, account: &str) -> String {
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}",
        percent_encode(ISSUER),
        percent_encode(account),
        secret.to_base32(),
        percent_encode(ISSUER)
    )
}

/// Percent-encodes like Python's `urllib.parse.quote` (which pyotp uses):
/// letters, digits, `_.-~` and `/` stay, every other byte becomes `%XX`.
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"_.-~/".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Seconds since the Unix epoch, by the function's clock.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA1 rows. The secret is ASCII "12345678901234567890";
    /// a 6-digit code is the last 6 digits of the 8-digit value in the table.
    const RFC6238_SHA1: [(u64, &str); 6] = [
        (59, "94287082"),
        (1_111_111_109, "07081804"),
        (1_111_111_111, "14050471"),
        (1_234_567_890, "89005924"),
        (2_000_000_000, "69279037"),
        (20_000_000_000, "65353130"),
    ];

    fn rfc_secret() -> TotpSecret {
        TotpSecret {
            bytes: b"12345678901234567890".to_vec(),
        }
    }

    #[test]
    fn rfc6238_vectors_pass_the_check() {
        let secret = rfc_secret();
        for (time, eight_digits) in RFC6238_SHA1 {
            let code = &eight_digits[2..];
            assert_eq!(secret.check(code, time), Some(time / 30), "T={time}");
            assert_eq!(secret.code_at(time), code);
        }
    }

    #[test]
    fn one_step_either_side_is_accepted_and_no_further() {
        let secret = rfc_secret();
        let code = &RFC6238_SHA1[3].1[2..]; // at 1234567890, step 41152263
        let time = RFC6238_SHA1[3].0;
        assert_eq!(secret.check(code, time + 30), Some(time / 30));
        assert_eq!(secret.check(code, time - 30), Some(time / 30));
        assert_eq!(secret.check(code, time + 60), None);
        assert_eq!(secret.check(code, time - 60), None);
        assert_eq!(secret.check("000000", time), None);
    }

    #[test]
    fn base32_is_read_in_any_form_and_written_canonically() {
        let canonical = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
        for form in [
            canonical,
            "gezdgnbvgy3tqojqgezdgnbvgy3tqojq",
            "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ",
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ====",
        ] {
            let secret = TotpSecret::from_base32(form).unwrap();
            assert_eq!(secret.bytes, b"12345678901234567890", "{form}");
            assert_eq!(secret.to_base32(), canonical);
        }
        assert!(TotpSecret::from_base32("not base32!").is_none());
        assert!(TotpSecret::from_base32("").is_none());
    }

    #[test]
    fn generated_secrets_are_160_bits() {
        let secret = TotpSecret::generate().unwrap();
        assert_eq!(secret.bytes.len(), 20);
        assert_eq!(secret.to_base32().len(), 32);
    }

    #[test]
    fn codes_are_six_digits() {
        assert_eq!(parse_code("123 456").unwrap(), "123456");
        for bad in ["12345", "1234567", "12345a", "", "+12345", "١٢٣٤٥٦"] {
            assert_eq!(
                parse_code(bad).unwrap_err().code(),
                "invalid_field",
                "{bad}"
            );
        }
    }

    #[test]
    fn the_uri_is_pyotps() {
        let secret = rfc_secret();
        assert_eq!(
            provisioning_uri(&secret, "Pierre Goujet@cofrap/x"),
            "otpauth://totp/COFRAP:Pierre%20Goujet%40cofrap/x?\
             secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=COFRAP"
        );
    }
}
