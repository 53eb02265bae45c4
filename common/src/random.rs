//! The operating system's random generator: the one source of every
//! secret this system makes (passwords, TOTP secrets, refresh tokens, token
//! ids).

use crate::error::Error;

/// Fills `bytes` from the operating system's generator.
pub fn fill(bytes: &mut [u8]) -> Result<(), Error> {
    getrandom::fill(bytes).map_err(|e| Error::Internal(format!("getrandom failed: {e}")))
}
