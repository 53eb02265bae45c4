//! Usernames: what people may choose, and when two of them are the same
//! account.
//!
//! Two names that look alike to a person, or in an authenticator app, must
//! not be two accounts: `alice`, `Alice`, `ａｌｉｃｅ` (full width) are one,
//! and `alice` + U+200B (an invisible character) or `аlice` (a Cyrillic а)
//! are refused. So a name is
//! - trimmed of surrounding white space, then kept as written (its display
//!   form: what the account is shown as);
//! - 3 to 64 characters long, without `:` (authenticator apps read the label
//!   as "issuer:account");
//! - made of space-separated parts, each valid under RFC 8265's
//!   UsernameCaseMapped profile (PRECIS IdentifierClass: letters, digits and
//!   symbols, no control, format or invisible characters, no spaces of other
//!   kinds; width mapping, case mapping to lower case, NFC; the bidi rule);
//! - single-script in the sense of Unicode UTS #39 (Latin with Cyrillic is
//!   refused; digits and punctuation go with any script).
//!
//! Its compared form (the key) is the parts after the profile, joined by one
//! space. The database holds the key in `users.username_key` under a unique
//! index, so the database itself refuses two accounts with one key. The
//! tables come from the `precis-profiles` and `unicode-security` crates.

use crate::error::Error;
use precis_profiles::precis_core::profile::Profile;
use precis_profiles::UsernameCaseMapped;
use unicode_security::MixedScript;

/// A valid username: its display form and its compared form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username {
    display: String,
    key: String,
}

impl Username {
    pub const MIN_CHARS: usize = 3;
    pub const MAX_CHARS: usize = 64;

    pub fn parse(raw: &str) -> Result<Username, Error> {
        let trimmed = raw.trim();
        let length = trimmed.chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&length) {
            return Err(Error::InvalidUsername(
                "must be 3 to 64 characters long, not counting surrounding spaces",
            ));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(Error::InvalidUsername(
                "must not contain control characters",
            ));
        }
        if trimmed.contains(':') {
            return Err(Error::InvalidUsername("must not contain ':'"));
        }
        let profile = UsernameCaseMapped::new();
        let mut parts = Vec::new();
        for part in trimmed.split(' ') {
            if part.is_empty() {
                return Err(Error::InvalidUsername(
                    "must not contain two spaces in a row",
                ));
            }
            let enforced = profile.enforce(part).map_err(|_| {
                Error::InvalidUsername(
                    "may hold only letters, digits, symbols and single spaces: \
                     no invisible, formatting or compatibility characters",
                )
            })?;
            parts.push(enforced.into_owned());
        }
        let key = parts.join(" ");
        if !key.as_str().is_single_script() {
            return Err(Error::InvalidUsername(
                "must be written in one script (not, say, Latin and Cyrillic letters mixed)",
            ));
        }
        Ok(Username {
            display: trimmed.to_owned(),
            key,
        })
    }

    /// The name as its owner wrote it (trimmed).
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The compared form: equal keys are the same account.
    pub fn key(&self) -> &str {
        &self.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> String {
        Username::parse(name).unwrap().key().to_owned()
    }

    #[test]
    fn usernames_are_trimmed_and_checked() {
        assert_eq!(
            Username::parse("  Pierre Goujet \n").unwrap().as_str(),
            "Pierre Goujet"
        );
        assert_eq!(Username::parse("ébè").unwrap().as_str(), "ébè");
        assert!(Username::parse(&"x".repeat(64)).is_ok());
        for bad in [
            "ab",
            "  ab  ",
            "",
            &"x".repeat(65),
            "ali\u{0}ce",
            "ali\tce",
            "a:b:c",
            "bell\u{7}",
        ] {
            assert_eq!(
                Username::parse(bad).unwrap_err().code(),
                "invalid_username",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn look_alikes_have_one_key_or_are_refused() {
        assert_eq!(key("alice"), "alice");
        assert_eq!(key("ALICE"), "alice");
        assert_eq!(key("\u{ff41}\u{ff4c}\u{ff49}\u{ff43}\u{ff45}"), "alice"); // full width
        assert_eq!(key("Pierre Goujet"), "pierre goujet");
        // é precomposed and e + combining acute are one name.
        assert_eq!(key("caf\u{e9}"), key("cafe\u{301}"));
        for bad in [
            "alice\u{200b}",      // zero-width space
            "al\u{200d}ice",      // zero-width joiner
            "\u{430}lice",        // Cyrillic а with Latin
            "ali\u{a0}ce",        // no-break space
            "ali\u{3000}ce",      // ideographic space
            "two  spaces",        // an empty part
            "\u{2163}\u{2163}ab", // Roman numeral (compatibility)
        ] {
            assert_eq!(
                Username::parse(bad).unwrap_err().code(),
                "invalid_username",
                "{bad:?}"
            );
        }
        // One script at a time, other than Latin, is fine.
        assert_eq!(key("Алиса"), "алиса");
        assert_eq!(key("user_42"), "user_42");
    }

    #[test]
    fn the_display_form_is_kept_as_written() {
        let name = Username::parse(" Zoë Smith ").unwrap();
        assert_eq!(name.as_str(), "Zoë Smith");
        assert_eq!(name.key(), "zoë smith");
    }
}
