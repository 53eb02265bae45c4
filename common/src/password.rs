//! Passwords: generating them, and hashing and checking them with bcrypt.
//!
//! A password is 24 characters from the 94 printable ASCII characters other
//! than space (upper case, lower case, digits and `string.punctuation`), with
//! at least one of each class. Each character is drawn uniformly from the
//! operating system's generator by rejection sampling, and a password missing
//! a class is thrown away whole and drawn again, so every valid password is
//! equally likely.

use crate::error::Error;
use crate::log::profile;

/// Length of a generated password.
pub const LENGTH: usize = 24;

/// The alphabet, by class: upper, lower, digits, then Python's `string.punctuation`.
pub const ALPHABET: &[u8; 94] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ\
abcdefghijklmnopqrstuvwxyz\
0123456789\
!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// Random bytes at or above this value are rejected: 188 is the largest
/// multiple of 94 that fits in a byte, so `byte % 94` is uniform below it.
const REJECT_FROM: u8 = (256 - 256 % ALPHABET.len()) as u8;

/// bcrypt reads at most 72 bytes; longer passwords are refused rather than
/// silently truncated.
pub const MAX_BYTES: usize = 72;

/// Validates a password typed by a person: 1 to [`MAX_BYTES`] bytes. Nothing
/// else is checked, since only the stored hash can say whether it is right.
pub fn parse_input(text: String) -> Result<String, Error> {
    if text.is_empty() || text.len() > MAX_BYTES {
        return Err(Error::InvalidField {
            field: "password",
            reason: "must be 1 to 72 bytes long",
        });
    }
    Ok(text)
}

/// Generates a password; see the module documentation.
pub fn generate() -> Result<String, Error> {
    profile::during("password_generation", draw)
}

/// Draws passwords until one has every class.
fn draw() -> Result<String, Error> {
    let mut random = RandomBytes::new();
    loop {
        let mut password = String::with_capacity(LENGTH);
        while password.len() < LENGTH {
            if let Some(index) = alphabet_index(random.next()?) {
                password.push(char::from(ALPHABET[index]));
            }
        }
        if has_every_class(&password) {
            return Ok(password);
        }
    }
}

/// Maps a random byte to an alphabet position, or rejects it.
fn alphabet_index(byte: u8) -> Option<usize> {
    (byte < REJECT_FROM).then_some(usize::from(byte) % ALPHABET.len())
}

fn has_every_class(password: &str) -> bool {
    let has = |class: fn(&u8) -> bool| password.bytes().any(|b| class(&b));
    has(u8::is_ascii_uppercase)
        && has(u8::is_ascii_lowercase)
        && has(u8::is_ascii_digit)
        && has(u8::is_ascii_punctuation)
}

/// A buffer of bytes from getrandom, refilled as it runs out (one system call
/// usually covers a whole password).
struct RandomBytes {
    buffer: [u8; 64],
    used: usize,
}

impl RandomBytes {
    fn new() -> RandomBytes {
        RandomBytes {
            buffer: [0; 64],
            used: 64,
        }
    }

    fn next(&mut self) -> Result<u8, Error> {
        if self.used == self.buffer.len() {
            crate::random::fill(&mut self.buffer)?;
            self.used = 0;
        }
        self.used += 1;
        Ok(self.buffer[self.used - 1])
    }
}

/// Hashes a password with bcrypt (`$2b$`, as Python's bcrypt writes it).
pub fn hash(password: &str, cost: u32) -> Result<String, Error> {
    profile::count_bcrypt(cost);
    profile::during("bcrypt", || bcrypt::hash(password, cost))
        .map_err(|e| Error::Internal(format!("bcrypt hash failed: {e}")))
}

/// Checks a password against a bcrypt hash in constant time. A hash that is
/// not bcrypt (a corrupt row) never matches.
pub fn verify(password: &str, hash: &str) -> bool {
    if let Some(cost) = cost_of(hash) {
        profile::count_bcrypt(cost);
    }
    profile::during("bcrypt", || bcrypt::verify(password, hash)).unwrap_or(false)
}

/// Checks a password against a stored hash with at least the work of a check
/// at `cost` (the configured `BCRYPT_COST`), so that an account whose hash
/// was made at a lower cost (an older `BCRYPT_COST`, the Python version's
/// 12 under a `BCRYPT_COST` of 13) is not refused faster than an unknown
/// user, whose dummy check is at `cost`. The work of a check doubles with
/// each step of cost, so dummy checks at the stored cost c, then c + 1, ...,
/// up to `cost - 1` add exactly 2^cost - 2^c: the total is one check at
/// `cost`. A hash that is not bcrypt gets a whole dummy check. (A hash of a
/// higher cost costs what it costs: it is redone at `cost` at its owner's
/// next sign-in.)
pub fn verify_with_work_of(password: &str, hash: &str, cost: u32) -> bool {
    let matches = verify(password, hash);
    match cost_of(hash) {
        Some(stored) => (stored..cost).for_each(|extra| verify_nothing(password, extra)),
        None => verify_nothing(password, cost),
    }
    matches
}

/// The work factor of a bcrypt hash (`$2b$12$...` gives 12), if it is one.
pub fn cost_of(hash: &str) -> Option<u32> {
    let mut fields = hash.split('$');
    match (fields.next(), fields.next(), fields.next()) {
        (Some(""), Some("2a" | "2b" | "2y"), Some(cost)) if cost.len() == 2 => cost.parse().ok(),
        _ => None,
    }
}

/// Spends the time of a real check without having a hash to check against,
/// so that an unknown account answers as slowly as a wrong password. `cost`
/// is the configured one: every account's hash is brought to it at its next
/// sign-in. (A locked account gets a real check of its own hash instead.)
pub fn verify_nothing(password: &str, cost: u32) {
    profile::count_bcrypt(cost);
    let _ = profile::during("bcrypt", || bcrypt::verify(password, &dummy_hash(cost)));
}

/// A well-formed hash at `cost` that no password is known to match. It must
/// parse, or bcrypt would refuse it at once instead of doing the work.
fn dummy_hash(cost: u32) -> String {
    format!("$2b${cost:02}$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_maps_evenly_or_is_rejected() {
        // Exhaustive, hence deterministic: each of the 94 characters is hit
        // by exactly two of the 256 byte values, the other 68 are rejected.
        let mut hits = [0u32; 94];
        let mut rejected = 0;
        for byte in 0..=255u8 {
            match alphabet_index(byte) {
                Some(index) => hits[index] += 1,
                None => rejected += 1,
            }
        }
        assert!(hits.iter().all(|&n| n == 2), "{hits:?}");
        assert_eq!(rejected, 256 - 188);
    }

    #[test]
    fn the_alphabet_is_printable_ascii_without_space() {
        let mut sorted = ALPHABET.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let printable: Vec<u8> = (b'!'..=b'~').collect();
        assert_eq!(sorted, printable);
    }

    #[test]
    fn passwords_have_the_length_the_alphabet_and_every_class() {
        // The classes written out independently of the code under test (a
        // generator that dropped a class would pass a check by its own
        // predicate): Python's string.ascii_uppercase, ascii_lowercase,
        // digits and punctuation. A class is missing from about 1 password
        // in 15 drawn without the check, so 2000 passwords always catch it.
        let classes: [&str; 4] = [
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            "abcdefghijklmnopqrstuvwxyz",
            "0123456789",
            r##"!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~"##,
        ];
        for _ in 0..2000 {
            let password = generate().unwrap();
            assert_eq!(password.chars().count(), LENGTH);
            for c in password.chars() {
                assert!(classes.iter().any(|class| class.contains(c)), "{c:?}");
            }
            for class in classes {
                assert!(
                    password.chars().any(|c| class.contains(c)),
                    "{password} lacks a character of {class}"
                );
            }
        }
    }

    #[test]
    fn characters_are_uniform_within_each_class() {
        // Rejecting passwords that miss a class favours the small classes a
        // little, so uniformity holds within a class, not across all 94.
        // Chi-square over 48,000 characters; each bound is the 1 - 1e-6
        // quantile for the class's degrees of freedom, so a correct generator
        // fails this test about once in 250,000 runs.
        let mut counts = [0u64; 94];
        for _ in 0..2000 {
            for byte in generate().unwrap().bytes() {
                counts[ALPHABET.iter().position(|&c| c == byte).unwrap()] += 1;
            }
        }
        // (class range, upper bound of chi-square for n-1 degrees of freedom)
        for (range, upper) in [
            (0..26, 74.5),
            (26..52, 74.5),
            (52..62, 46.0),
            (62..94, 84.2),
        ] {
            let class = &counts[range.clone()];
            let total: u64 = class.iter().sum();
            let expected = total as f64 / class.len() as f64;
            let chi2: f64 = class
                .iter()
                .map(|&n| (n as f64 - expected).powi(2) / expected)
                .sum();
            assert!(chi2 < upper, "class {range:?}: chi2 {chi2} >= {upper}");
        }
    }

    #[test]
    fn hashes_verify_and_wrong_passwords_do_not() {
        let hashed = hash("correct horse", 4).unwrap();
        assert!(hashed.starts_with("$2b$04$"));
        assert!(verify("correct horse", &hashed));
        assert!(!verify("wrong horse", &hashed));
        assert!(!verify("correct horse", "not a bcrypt hash"));
        assert_eq!(bcrypt::verify("anything", &dummy_hash(4)).ok(), Some(false));
        assert_eq!(cost_of(&hashed), Some(4));
        assert_eq!(cost_of(&dummy_hash(13)), Some(13));
        assert_eq!(cost_of("not a bcrypt hash"), None);
        assert_eq!(cost_of("$2b$x$"), None);
    }
}
