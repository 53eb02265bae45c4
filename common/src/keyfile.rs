//! Secret files that hold keys, one per line (`encryption-key`,
//! `jwt-signing-keys`): the first key is the one in use, the others are kept
//! for rotation. Blank lines are ignored; an error names the line, never
//! what it holds.

/// Parses every non-blank line of `text` with `key`; `what` describes a good
/// line for the error ("a Fernet key (32 bytes in URL-safe base64)").
pub fn parse<T>(text: &str, what: &str, key: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, String> {
    let mut keys = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        keys.push(key(line).ok_or_else(|| format!("line {} is not {what}", index + 1))?);
    }
    if keys.is_empty() {
        return Err("holds no key".to_owned());
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_lines_are_skipped_and_a_bad_line_is_named_not_shown() {
        let digits = |line: &str| line.parse::<u32>().ok();
        assert_eq!(parse("\n 1 \n\n2\n", "a number", digits), Ok(vec![1, 2]));
        assert_eq!(
            parse("1\nsecret-looking", "a number", digits),
            Err("line 2 is not a number".to_owned())
        );
        assert_eq!(
            parse(" \n", "a number", digits),
            Err("holds no key".to_owned())
        );
    }
}
