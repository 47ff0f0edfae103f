//! Values dropped from serde's error messages, what was expected kept.

/// serde quotes the offending value (`invalid type: string "..."`,
/// ``unknown variant `...` ``); that value may be a token put in the wrong
/// place. Keeps what was expected, drops what was given: quoted runs before
/// the word "expected" (outside quotes) become `…`.
pub fn redact_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut closing: Option<char> = None;
    let mut escaped = false;
    for (at, c) in message.char_indices() {
        match closing {
            // Debug-quoted strings escape their quotes.
            Some('"') if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            // serde does not escape backticks: the closing one is the one
            // that ends the phrase.
            Some('`') if c == '`' && closes_backtick(&message[at + 1..]) => {
                out.push(c);
                closing = None;
            }
            Some(end) if end == c && end == '"' => {
                out.push(c);
                closing = None;
            }
            Some(_) => {}
            None if message[at..].starts_with("expected") => {
                out.push_str(&message[at..]);
                return out;
            }
            None if c == '"' || c == '`' => {
                out.push(c);
                out.push('…');
                closing = Some(c);
            }
            None => out.push(c),
        }
    }
    if let Some(end) = closing {
        out.push(end);
    }
    out
}

fn closes_backtick(rest: &str) -> bool {
    rest.is_empty() || rest.starts_with(',') || rest.starts_with(" at line")
}

#[cfg(test)]
mod tests {
    use super::redact_values;

    #[test]
    fn redaction_keeps_what_was_expected_and_drops_what_was_given() {
        assert_eq!(
            redact_values(r#"invalid type: string "a\"b expected c", expected i64"#),
            r#"invalid type: string "…", expected i64"#
        );
        assert_eq!(
            redact_values("unknown variant `ya29.x`, expected one of `X`, `Y`"),
            "unknown variant `…`, expected one of `X`, `Y`"
        );
        assert_eq!(
            redact_values("invalid value: integer `123`, expected u8 at line 1"),
            "invalid value: integer `…`, expected u8 at line 1"
        );
    }
}
