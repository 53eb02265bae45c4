//! The request and the response as the classic watchdog carries them: the
//! HTTP body arrives on stdin, whatever is printed on stdout becomes the HTTP
//! body of the answer.
//!
//! A request is one JSON object. This module checks everything about its
//! shape — size, encoding, syntax, duplicate and unknown keys, types — so that
//! functions only see well-formed [`Fields`] and every malformed body gets its
//! own error code. serde's derive would catch most of this, but reports it as
//! free text; here each case is a variant of [`Error`].

use crate::error::Error;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use std::fmt;
use std::io::{Read, Write};

/// The largest request body accepted: 64 KiB. A larger one is refused
/// without being parsed.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Reads the whole request body, refusing (without reading on) one that is
/// larger than [`MAX_REQUEST_BYTES`].
pub fn read_body(input: impl Read) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    input
        .take(MAX_REQUEST_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| Error::Internal(format!("reading stdin: {e}")))?;
    if body.len() > MAX_REQUEST_BYTES {
        return Err(Error::RequestTooLarge {
            limit: MAX_REQUEST_BYTES,
        });
    }
    Ok(body)
}

/// Writes one JSON object and a newline on stdout, in a single write so that
/// nothing half-written can precede it.
pub fn write_response(output: impl Write, body: &Value) -> std::io::Result<()> {
    let mut line = body.to_string();
    line.push('\n');
    let mut output = output;
    output.write_all(line.as_bytes())?;
    output.flush()
}

/// The top-level keys of a request object, each key once, all of them known
/// to the function. Taken one by one with the `take_*` methods.
#[derive(Debug)]
pub struct Fields {
    entries: Vec<(String, Value)>,
}

impl Fields {
    /// Parses a request body into fields, accepting only the keys in `known`.
    pub fn parse(body: &[u8], known: &[&str]) -> Result<Fields, Error> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::EmptyRequest);
        }
        let text = std::str::from_utf8(body).map_err(|_| Error::InvalidUtf8)?;
        let object: RawObject = serde_json::from_str(text).map_err(|e| match e.classify() {
            // Our visitor only accepts a map: a data error means another JSON type.
            serde_json::error::Category::Data => Error::NotAnObject,
            _ => Error::InvalidJson(e.to_string()),
        })?;
        if let Some(name) = object.duplicate {
            return Err(Error::DuplicateField(name));
        }
        if let Some((name, _)) = object
            .entries
            .iter()
            .find(|(k, _)| !known.contains(&k.as_str()))
        {
            return Err(Error::UnknownField(name.clone()));
        }
        Ok(Fields {
            entries: object.entries,
        })
    }

    /// Takes a required string field.
    pub fn take_string(&mut self, name: &'static str) -> Result<String, Error> {
        self.take_optional_string(name)?
            .ok_or(Error::MissingField(name))
    }

    /// Takes an optional string field; absent gives `None`, `null` is refused
    /// like any other non-string value.
    pub fn take_optional_string(&mut self, name: &'static str) -> Result<Option<String>, Error> {
        let Some(index) = self.entries.iter().position(|(k, _)| k == name) else {
            return Ok(None);
        };
        match self.entries.swap_remove(index).1 {
            Value::String(value) => Ok(Some(value)),
            _ => Err(Error::InvalidFieldType {
                field: name,
                expected: "a string",
            }),
        }
    }
}

/// A JSON object as parsed, keeping the first duplicate key it met instead of
/// silently letting the last one win as `serde_json::Value` does.
struct RawObject {
    entries: Vec<(String, Value)>,
    duplicate: Option<String>,
}

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RawObjectVisitor)
    }
}

struct RawObjectVisitor;

impl<'de> Visitor<'de> for RawObjectVisitor {
    type Value = RawObject;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawObject, A::Error> {
        let mut object = RawObject {
            entries: Vec::new(),
            duplicate: None,
        };
        while let Some((key, value)) = map.next_entry::<String, Value>()? {
            if object.entries.iter().any(|(k, _)| *k == key) {
                object.duplicate.get_or_insert(key);
            } else {
                object.entries.push((key, value));
            }
        }
        Ok(object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Fields, Error> {
        Fields::parse(body.as_bytes(), &["username", "password"])
    }

    fn code(result: Result<Fields, Error>) -> &'static str {
        result.unwrap_err().code()
    }

    #[test]
    fn each_malformed_body_has_its_code() {
        assert_eq!(code(parse("")), "empty_request");
        assert_eq!(code(parse(" \n\t")), "empty_request");
        assert_eq!(code(Fields::parse(b"{\"a\xff\": 1}", &[])), "invalid_utf8");
        assert_eq!(code(parse("{\"username\": ")), "invalid_json");
        assert_eq!(code(parse("{} {}")), "invalid_json");
        assert_eq!(code(parse("[1, 2]")), "not_an_object");
        assert_eq!(code(parse("\"alice\"")), "not_an_object");
        assert_eq!(code(parse("null")), "not_an_object");
        assert_eq!(
            code(parse(r#"{"username": "a", "username": "b"}"#)),
            "duplicate_field"
        );
        assert_eq!(code(parse(r#"{"user": "a"}"#)), "unknown_field");
    }

    #[test]
    fn fields_are_taken_with_their_types_checked() {
        let mut fields = parse(r#"{"username": "alice", "password": 12}"#).unwrap();
        assert_eq!(fields.take_string("username").unwrap(), "alice");
        assert_eq!(
            fields.take_string("password").unwrap_err().code(),
            "invalid_field_type"
        );
        let mut fields = parse(r#"{"username": null}"#).unwrap();
        assert_eq!(
            fields.take_optional_string("username").unwrap_err().code(),
            "invalid_field_type"
        );
        let mut fields = parse("{}").unwrap();
        assert_eq!(fields.take_optional_string("password").unwrap(), None);
        assert_eq!(
            fields.take_string("username").unwrap_err().code(),
            "missing_field"
        );
    }

    #[test]
    fn a_body_over_the_limit_is_refused_unread() {
        let big = vec![b' '; MAX_REQUEST_BYTES + 10];
        assert_eq!(read_body(&big[..]).unwrap_err().code(), "request_too_large");
        let exact = vec![b' '; MAX_REQUEST_BYTES];
        assert_eq!(read_body(&exact[..]).unwrap().len(), MAX_REQUEST_BYTES);
    }

    #[test]
    fn json_errors_never_echo_the_body() {
        let error = parse(r#"{"password": "hunter2-secret" "#).unwrap_err();
        assert!(!error.to_string().contains("hunter2"));
    }
}
