//! What the COFRAP credential functions share.
//!
//! Each function (generate-password, generate-2fa, authenticate, refresh,
//! sign-out, jwks) is a small binary that the OpenFaaS classic watchdog
//! starts once per request: the request body on stdin, the response on
//! stdout. The binaries are thin; this library holds everything else, one
//! module per concern:
//!
//! - [`function`]: the life of one invocation, shared by all functions;
//! - [`log`]: the invocation's one log line, and its optional profile;
//! - [`protocol`]: the request and response on stdin and stdout;
//! - [`error`]: the one error type and its mapping to JSON and exit status;
//! - [`config`]: settings (environment) and secrets (files);
//! - [`deadline`]: the request's deadline and the guard that enforces it;
//! - [`db`]: the connection (time bounds, TLS), transactions, the schema check;
//! - [`cross_site`]: refusing requests other web sites make browsers send;
//! - [`account`]: the account lifecycle (pending, active, expired);
//! - [`events`]: the audit trail of every account;
//! - [`username`]: valid usernames, and when two are the same account;
//! - [`password`]: generating, hashing and checking passwords;
//! - [`totp`]: TOTP secrets, codes and the otpauth URI;
//! - [`encryption`]: Fernet with key rotation;
//! - [`keyfile`]: secret files of keys, one per line (rotation);
//! - [`random`]: the operating system's random generator;
//! - [`renewal`]: the tokens that let expired credentials be renewed;
//! - [`request_id`]: generate-password's retry after a lost reply;
//! - [`qr`]: QR codes as base64 PNG;
//! - [`session`]: sessions after sign-in: access and refresh tokens, rotation, sign-out;
//! - [`jwt`]: signing access tokens (Ed25519) and publishing the keys (JWKS).

pub mod account;
pub mod config;
pub mod cross_site;
pub mod db;
pub mod deadline;
pub mod encryption;
pub mod error;
pub mod events;
pub mod function;
pub mod jwt;
pub mod keyfile;
pub mod log;
pub mod password;
pub mod protocol;
pub mod qr;
pub mod random;
pub mod renewal;
pub mod request_id;
pub mod session;
pub mod totp;
pub mod username;

pub use error::Error;
