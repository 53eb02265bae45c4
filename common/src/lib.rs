//! What the COFRAP credential functions share.
//!
//! Each function (generate-password, generate-2fa, authenticate) is a small
//! binary that the OpenFaaS classic watchdog starts once per request: the
//! request body on stdin, the response on stdout. The binaries are thin; this
//! library holds everything else, one module per concern:
//!
//! - [`function`]: the life of one invocation, shared by all functions;
//! - [`protocol`]: the request and response on stdin and stdout;
//! - [`error`]: the one error type and its mapping to JSON and exit status;
//! - [`config`]: settings (environment) and secrets (files);
//! - [`deadline`]: the request's deadline and the guard that enforces it;
//! - [`db`]: the connection (time bounds, TLS), transactions, the schema check;
//! - [`account`]: the account lifecycle (pending, active, expired);
//! - [`password`]: generating, hashing and checking passwords;
//! - [`totp`]: TOTP secrets, codes and the otpauth URI;
//! - [`encryption`]: Fernet with key rotation;
//! - [`renewal`]: the tokens that let expired credentials be renewed;
//! - [`request_id`]: generate-password's retry after a lost reply;
//! - [`qr`]: QR codes as base64 PNG.

pub mod account;
pub mod config;
pub mod db;
pub mod deadline;
pub mod encryption;
pub mod error;
pub mod function;
pub mod password;
pub mod protocol;
pub mod qr;
pub mod renewal;
pub mod request_id;
pub mod totp;

pub use error::Error;
