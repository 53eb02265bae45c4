//! Usernames: what people may choose, and when two of them are the same
//! account.
//!
//! The rule a person applies: two names that read the same on the page are
//! the same name. `alice`, `Alice`, `ａｌｉｃｅ` (full width), Cyrillic
//! `аӏісе`, `straße` and `strasse`, `admin` and `admın` (dotless ı) are one
//! account; `alice` + U+200B (an invisible character) and names mixing
//! scripts in ways nobody writes are refused. So a name is
//! - trimmed of surrounding white space, then kept as written (its display
//!   form: what the account is shown as);
//! - 3 to 64 characters long, without `:` (authenticator apps read the label
//!   as "issuer:account");
//! - made of space-separated parts, each valid under RFC 8265's
//!   UsernameCaseMapped profile (PRECIS IdentifierClass: letters, digits and
//!   symbols, no control, format or invisible characters, no spaces of other
//!   kinds; width mapping, case mapping to lower case, NFC; the bidi rule);
//! - within UTS #39's "Highly Restrictive" level (one script, or Latin with
//!   the Han, Kana and Hangul combinations of Chinese, Japanese and Korean
//!   names; digits and punctuation go with any script);
//! - without stacks of combining marks: at most four nonspacing marks in a
//!   row, never the same one twice in a row (UTS #39, section 5.4).
//!
//! Three forms identify it, each under a unique index of `users`, so that it
//! is the database that refuses a second account:
//! - [`Username::skeleton`], the account's key: the UTS #39 confusable
//!   skeleton (section 4) of the full case folding of the profile's form.
//!   Names with one skeleton read the same whatever their case: one account.
//!   Every lookup is by it.
//! - [`Username::display_skeleton`]: the skeleton of the name as written.
//!   Case folding comes before the skeleton in the key, so `Ivan` (key
//!   `ivan`) and `lvan` (key `lvan`) would be two accounts, yet a capital I
//!   and a small l are one glyph in many fonts, and names are shown as
//!   written. A new name whose written form is a look-alike of an existing
//!   account's is therefore refused too (`account_exists`): `Ivan` blocks
//!   `lvan` and the other way round, while `ivan` (its dot shows) and
//!   `lvan` may both exist.
//! - [`Username::key`], the profile's form, which the Python version's rows
//!   also get (from a trigger, in SQL): it finds accounts whose skeletons are
//!   not computed yet (see migration 0005 and `cofrap-admin rekey`).
//!
//! The tables come from the `precis-profiles`, `unicode-security`,
//! `caseless`, `unicode-normalization` and `unicode-properties` crates.

use crate::error::Error;
use precis_profiles::precis_core::profile::Profile;
use precis_profiles::UsernameCaseMapped;
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
use unicode_security::confusable_detection::skeleton;
use unicode_security::mixed_script::AugmentedScriptSet;
use unicode_security::{GeneralSecurityProfile, RestrictionLevel, RestrictionLevelDetection};

/// A valid username and the forms that identify it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username {
    display: String,
    key: String,
    skeleton: String,
    display_skeleton: String,
}

/// At most this many nonspacing marks in a row (UTS #39, section 5.4).
pub const MAX_MARKS_IN_A_ROW: usize = 4;

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
        if !all_identifier_allowed(&key) {
            return Err(Error::InvalidUsername(
                "may not hold rare, historic or technical letters (UTS #39's identifier \
                 profile), such as ȷ or ƿ",
            ));
        }
        if !within_highly_restrictive(&key) {
            return Err(Error::InvalidUsername(
                "must be written in one script (not, say, Latin and Cyrillic letters mixed)",
            ));
        }
        if has_stacked_marks(trimmed) {
            return Err(Error::InvalidUsername(
                "must not stack accents or other combining marks",
            ));
        }
        if has_hidden_dot(trimmed) {
            return Err(Error::InvalidUsername(
                "must not put a dot above an i or a j: it hides in their own dot",
            ));
        }
        if parts.len() > 1 && is_right_to_left(&key) {
            return Err(Error::InvalidUsername(
                "must be one word when written right to left: no spaces",
            ));
        }
        let folded = caseless::default_case_fold_str(&key);
        Ok(Username {
            skeleton: skeleton(&folded).collect(),
            display_skeleton: skeleton(trimmed).collect(),
            display: trimmed.to_owned(),
            key,
        })
    }

    /// The name as its owner wrote it (trimmed).
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The profile's form (case, width and normalisation mapped): the
    /// `username_key` column, which SQL can compute too.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The account's key: equal skeletons are the same account.
    pub fn skeleton(&self) -> &str {
        &self.skeleton
    }

    /// The skeleton of the name as written: a new name may not look like an
    /// existing account's as shown.
    pub fn display_skeleton(&self) -> &str {
        &self.display_skeleton
    }
}

/// Every letter, mark and digit is allowed in identifiers by UTS #39's
/// general security profile (Identifier_Status=Allowed): combining marks
/// too, which belong to every script (an overlaid stroke, U+0335, makes
/// `u̵ber` of `ʉber`). The other characters common to all scripts (spaces,
/// punctuation, symbols) are PRECIS's to judge.
fn all_identifier_allowed(key: &str) -> bool {
    key.chars()
        .filter(|c| !AugmentedScriptSet::for_char(*c).is_all() || is_mark(*c))
        .all(|c| c.identifier_allowed())
}

fn is_mark(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::NonspacingMark
            | GeneralCategory::SpacingMark
            | GeneralCategory::EnclosingMark
    )
}

/// UTS #39's restriction level of the name's letters, marks and digits is at
/// most Highly Restrictive. Characters that go with every script (spaces,
/// punctuation, symbols: Common and Inherited) say nothing of the mix and are
/// left out; PRECIS has already decided whether they are allowed.
fn within_highly_restrictive(key: &str) -> bool {
    let scripted: String = key
        .chars()
        .filter(|c| !AugmentedScriptSet::for_char(*c).is_all())
        .collect();
    scripted.as_str().detect_restriction_level() <= RestrictionLevel::HighlyRestrictive
}

/// A combining dot above (U+0307) on a letter that reads as i or j (its
/// skeleton): `i` + U+0307 and `ı` + U+0307 look like `i`, the dot hidden in
/// the letter's own (UTS #39, section 5.4, which names this very case).
fn has_hidden_dot(name: &str) -> bool {
    let mut dotted_base = false;
    for c in name.nfd() {
        if c == '\u{307}' && dotted_base {
            return true;
        }
        if !matches!(
            c.general_category(),
            GeneralCategory::NonspacingMark | GeneralCategory::EnclosingMark
        ) {
            let base: String = skeleton(c.encode_utf8(&mut [0; 4])).collect();
            // `i`, `ı`, `і`, and `ɨ` (its skeleton `i` and a stroke)...
            dotted_base = base.starts_with(['i', 'j']);
        }
    }
    false
}

/// Whether the name holds right-to-left characters (bidi classes R, AL or
/// AN, as RFC 5893 defines an RTL label). PRECIS applies the bidi rule to
/// each space-separated part; across a space, digits and letters reorder
/// on the page, so that `אב 12` and `12 אב` are both shown `12 בא`. Such a
/// name is therefore one part, to which the rule applies whole.
fn is_right_to_left(name: &str) -> bool {
    use unicode_bidi::{bidi_class, BidiClass};
    name.chars()
        .any(|c| matches!(bidi_class(c), BidiClass::R | BidiClass::AL | BidiClass::AN))
}

/// More than [`MAX_MARKS_IN_A_ROW`] nonspacing (or enclosing) marks in a
/// row, or one mark twice in a row, once decomposed (NFD).
fn has_stacked_marks(name: &str) -> bool {
    let mut run = 0;
    let mut previous = None;
    for c in name.nfd() {
        let mark = matches!(
            c.general_category(),
            GeneralCategory::NonspacingMark | GeneralCategory::EnclosingMark
        );
        if !mark {
            run = 0;
            previous = None;
            continue;
        }
        run += 1;
        if run > MAX_MARKS_IN_A_ROW || previous == Some(c) {
            return true;
        }
        previous = Some(c);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skeleton_of(name: &str) -> String {
        Username::parse(name).unwrap().skeleton().to_owned()
    }

    fn refused(name: &str) -> bool {
        Username::parse(name).is_err_and(|e| e.code() == "invalid_username")
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
            assert!(refused(bad), "{bad:?}");
        }
    }

    #[test]
    fn case_width_and_normalisation_make_one_account() {
        for same in [
            "ALICE",
            "Alice",
            "\u{ff41}\u{ff4c}\u{ff49}\u{ff43}\u{ff45}", // full width
        ] {
            assert_eq!(skeleton_of(same), skeleton_of("alice"), "{same}");
        }
        // é precomposed and e + combining acute.
        assert_eq!(skeleton_of("caf\u{e9}"), skeleton_of("cafe\u{301}"));
        // Full case folding, not only lower case.
        assert_eq!(skeleton_of("straße"), skeleton_of("STRASSE"));
        assert_eq!(skeleton_of("Pierre Goujet"), skeleton_of("pierre goujet"));
    }

    /// Whether the second of two names would be one account with the first
    /// (same key) or refused as its look-alike (same written look).
    fn one_account_or_refused(first: &str, second: &str) -> bool {
        let (first, second) = (
            Username::parse(first).unwrap(),
            Username::parse(second).unwrap(),
        );
        first.skeleton() == second.skeleton()
            || first.display_skeleton() == second.display_skeleton()
    }

    #[test]
    fn whole_script_confusables_are_one_account() {
        // Cyrillic names that read as Latin ones.
        assert_eq!(skeleton_of("аӏісе"), skeleton_of("alice"));
        assert_eq!(skeleton_of("ѕсоре"), skeleton_of("scope"));
        assert_eq!(skeleton_of("рауее"), skeleton_of("payee"));
        // Capitals that only look alike as capitals (small к is not k).
        assert!(one_account_or_refused("АЕК", "AEK"));
        // Greek, in capitals.
        assert!(one_account_or_refused("ΤΑΧΙ", "TAXI"));
        assert_eq!(skeleton_of("ορο"), skeleton_of("opo"));
    }

    #[test]
    fn same_script_confusables_are_one_account_or_refused() {
        assert_eq!(skeleton_of("admın"), skeleton_of("admin")); // dotless ı
        assert_eq!(skeleton_of("rnary"), skeleton_of("mary")); // r n and m
        assert_eq!(skeleton_of("paypa1"), skeleton_of("paypal")); // one and l
        assert!(one_account_or_refused("bob0", "bobO")); // zero and O
        assert!(one_account_or_refused("bobO", "bob0"));
        assert!(
            !one_account_or_refused("bob", "rob"),
            "different names stay apart"
        );
        assert!(!one_account_or_refused("alice", "alicia"));
    }

    #[test]
    fn a_capital_i_and_a_small_l_look_alike_as_written() {
        let ivan = Username::parse("Ivan").unwrap();
        let lvan = Username::parse("lvan").unwrap();
        assert_ne!(ivan.skeleton(), lvan.skeleton(), "two keys...");
        assert_eq!(
            ivan.display_skeleton(),
            lvan.display_skeleton(),
            "...but one look: the second is refused"
        );
        let dotted = Username::parse("ivan").unwrap();
        assert_eq!(dotted.skeleton(), ivan.skeleton(), "ivan is Ivan's account");
        assert_ne!(dotted.display_skeleton(), lvan.display_skeleton());
    }

    #[test]
    fn mixed_scripts_beyond_highly_restrictive_are_refused() {
        for bad in [
            "\u{430}lice",  // a Cyrillic а among Latin letters
            "p\u{430}ypal", // likewise
            "\u{3a9}mega",  // Greek Ω with Latin
            "alice\u{200b}",
            "al\u{200d}ice",
            "ali\u{a0}ce",
            "ali\u{3000}ce",
            "two  spaces",
            "\u{2163}\u{2163}ab", // Roman numeral (compatibility)
        ] {
            assert!(refused(bad), "{bad:?}");
        }
        // One script at a time, other than Latin, is fine; so are the usual
        // mixes of Japanese names, and digits and punctuation with any.
        for good in [
            "Алиса",
            "山田太郎",
            "山田Taro",
            "やまだ",
            "user_42",
            "Zoë Smith",
        ] {
            assert!(Username::parse(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn stacked_combining_marks_are_refused() {
        let stacked = format!("alice{}", "\u{301}".repeat(20));
        assert!(refused(&stacked));
        assert!(refused("alice\u{301}\u{301}"), "one mark twice");
        assert!(
            refused("e\u{300}\u{301}\u{302}\u{303}\u{304}xy"),
            "five marks"
        );
        // Four different marks are the most a letter may carry; Vietnamese
        // needs two.
        assert!(Username::parse("e\u{300}\u{301}\u{302}\u{303}xy").is_ok());
        assert!(Username::parse("Nguyễn Thị").is_ok());
    }

    #[test]
    fn a_dot_above_hidden_in_an_i_or_a_j_is_refused() {
        for bad in [
            "adm\u{131}\u{307}n", // dotless ı + dot above: admin
            "i\u{307}van3",
            "rooti\u{307}",
            "j\u{307}ojo",
            "\u{456}\u{307}\u{432}\u{430}\u{43d}", // Cyrillic і + dot above
            "\u{268}\u{307}van",                   // ɨ + dot above: ɨvan
        ] {
            assert!(refused(bad), "{bad:?}");
        }
        // A dot that shows is fine: on a capital I (İ), or on other letters.
        assert!(Username::parse("\u{130}smail").is_ok());
        assert!(Username::parse("I\u{307}smail").is_ok());
        assert!(Username::parse("z\u{307}aneta").is_ok()); // ż
    }

    #[test]
    fn rare_letters_are_refused_for_what_they_are() {
        for rare in [
            "\u{237}ohn",
            "\u{1bf}yn",
            "u\u{335}ber",       // an overlaid stroke: ʉber
            "\u{131}\u{312}van", // a turned comma above a dotless ı
            "a\u{1d167}nna",     // a musical mark
        ] {
            let Err(Error::InvalidUsername(why)) = Username::parse(rare) else {
                panic!("{rare:?} accepted");
            };
            assert!(why.contains("rare, historic"), "{rare:?}: {why}");
        }
    }

    #[test]
    fn a_right_to_left_name_is_one_word() {
        // Both shown `12 בא` on the page: the digits move across the space.
        assert!(refused("\u{5d0}\u{5d1} 12"));
        assert!(refused("12 \u{5d0}\u{5d1}"));
        assert!(refused("\u{633}\u{644}\u{627}\u{645} 12"));
        assert!(refused("\u{5d0}\u{5d1}\u{5d2} \u{5d3}\u{5d4}\u{5d5}"));
        // One word, and left-to-right names with spaces, are fine.
        assert!(Username::parse("\u{5d0}\u{5d1}\u{5d2}12").is_ok());
        assert!(Username::parse("\u{633}\u{644}\u{627}\u{645}").is_ok());
        assert!(Username::parse("ab 12").is_ok());
    }

    #[test]
    fn the_display_form_is_kept_as_written() {
        let name = Username::parse(" Zoë Smith ").unwrap();
        assert_eq!(name.as_str(), "Zoë Smith");
        assert_eq!(name.key(), "zoë smith");
    }
}
