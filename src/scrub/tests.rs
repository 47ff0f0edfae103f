use super::*;

const SECRET: &str = "Rt_0123456789abcdefGHIJ+/=";

#[test]
fn removes_echoed_tokens() {
    assert_eq!(
        scrub("bad token abcd1234 given", &["abcd1234"]),
        "bad token [redacted] given"
    );
    assert_eq!(scrub("t=a%2Bb%2F%3Dcc!", &["a+b/=cc"]), "t=[redacted]!");
    assert_eq!(
        scrub("token rt_0123456789ab…", &["rt_0123456789abcdef"]),
        "token [redacted]…"
    );
}

#[test]
fn every_spelling_of_a_secret_is_removed() {
    let form: String = url::form_urlencoded::byte_serialize(SECRET.as_bytes()).collect();
    let lower_hex: String = SECRET.bytes().map(|b| format!("%{b:02x}")).collect();
    let upper_hex: String = SECRET.bytes().map(|b| format!("%{b:02X}")).collect();
    let json_escaped: String = SECRET
        .chars()
        .map(|c| format!("\\u{:04x}", c as u32))
        .collect();
    for echoed in [
        SECRET.to_owned(),
        SECRET.to_lowercase(),
        SECRET.to_uppercase(),
        form.clone(),
        form.to_lowercase(),
        lower_hex,
        upper_hex,
        json_escaped,
        serde_json::to_string(SECRET).unwrap(),
        // Percent-encoded twice, and inside JSON.
        url::form_urlencoded::byte_serialize(form.as_bytes()).collect(),
        serde_json::to_string(&form).unwrap(),
        SECRET[3..15].to_owned(),
        SECRET[10..].to_lowercase(),
    ] {
        let text = format!("error: token {echoed} rejected");
        let scrubbed = scrub(&text, &[SECRET]);
        let rest = scrubbed.replace('"', "");
        assert_eq!(rest, "error: token [redacted] rejected", "{echoed}");
    }
}

#[test]
fn shorter_runs_and_other_text_are_kept() {
    let text = format!("id {} and Rt_0123456789a", &SECRET[..11]);
    assert_eq!(scrub(&text, &[SECRET]).matches(MARKER).count(), 1);
    assert!(scrub(&text, &[SECRET]).starts_with("id Rt_01234567 and "));
    assert_eq!(scrub("nothing here", &[SECRET]), "nothing here");
    assert_eq!(scrub("abc", &["ab"]), "abc", "too short to search for");
}

#[test]
fn multibyte_text_around_and_inside_secrets_is_cut_at_characters() {
    let secret = "жжжжжжsecretsecret";
    let text = format!("é{}ü", &secret[2..]);
    assert_eq!(scrub(&text, &[secret]), "é[redacted]ü");
    // A run that starts inside a character takes the whole character.
    let secret = "éabcdefghijklm";
    assert_eq!(scrub("zéabcdefghijk!", &[secret]), "z[redacted]!");
    assert_eq!(scrub(r"z\u00e9abcdefghijk!", &[secret]), "z[redacted]!");
    // Escapes cut short or invalid are text like any other.
    let broken = r"%C3%A9%\u12\ud800\";
    assert_eq!(scrub(broken, &[SECRET]), broken);
}

#[test]
fn markers_in_the_text_are_left_alone() {
    assert_eq!(scrub("[redacted] ok", &["dact"]), "[redacted] ok");
    let once = scrub(&format!("{SECRET}{SECRET}"), &[SECRET]);
    assert_eq!(once, MARKER);
    assert_eq!(scrub(&once, &[SECRET]), once);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// The spellings a platform may echo a secret in; each maps every
    /// character on its own, so a piece of an encoded secret is the
    /// encoding of a piece of the secret.
    const ENCODINGS: usize = 10;

    fn encode(text: &str, how: usize) -> String {
        let percent = |upper: bool| -> String {
            text.bytes()
                .map(|b| {
                    if upper {
                        format!("%{b:02X}")
                    } else {
                        format!("%{b:02x}")
                    }
                })
                .collect()
        };
        let unicode_escapes = |upper: bool| -> String {
            text.encode_utf16()
                .map(|u| {
                    if upper {
                        format!("\\u{u:04X}")
                    } else {
                        format!("\\u{u:04x}")
                    }
                })
                .collect()
        };
        match how {
            0 => text.to_owned(),
            1 => text.to_ascii_uppercase(),
            2 => text.to_ascii_lowercase(),
            3 => percent(true),
            4 => percent(false),
            5 => url::form_urlencoded::byte_serialize(text.as_bytes()).collect(),
            6 => url::form_urlencoded::byte_serialize(text.as_bytes())
                .collect::<String>()
                .to_ascii_lowercase(),
            7 => {
                let quoted = serde_json::to_string(text).unwrap();
                quoted[1..quoted.len() - 1].to_owned()
            }
            8 => unicode_escapes(false),
            _ => unicode_escapes(true),
        }
    }

    fn secret() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[A-Za-z0-9._~+/=-]{12,48}",
            1 => "[a-z0-9 \"\\\\%&é中😀]{12,32}",
            1 => "\\PC{12,24}",
        ]
    }

    fn surrounding() -> impl Strategy<Value = String> {
        prop_oneof!["\\PC{0,40}", "[a-zA-Z0-9 %\\\\u\"+/=:{}]{0,40}",]
    }

    /// Every piece of `FRAGMENT` characters of `secret`.
    fn pieces(secret: &str) -> Vec<String> {
        let chars: Vec<char> = secret.chars().collect();
        chars
            .windows(FRAGMENT)
            .map(|w| w.iter().collect())
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        /// Whatever piece of a secret is echoed, in whatever spelling,
        /// no piece of `FRAGMENT` characters survives in any spelling.
        #[test]
        fn no_piece_of_a_secret_survives_in_any_spelling(
            secret in secret(),
            prefix in surrounding(),
            suffix in surrounding(),
            start in any::<prop::sample::Index>(),
            extra in 0usize..40,
            how in 0..ENCODINGS,
            twice in any::<bool>(),
        ) {
            let chars: Vec<char> = secret.chars().collect();
            let start = start.index(chars.len() - FRAGMENT + 1);
            let end = (start + FRAGMENT + extra).min(chars.len());
            let piece: String = chars[start..end].iter().collect();
            let echoed = encode(&piece, how);
            let mut text = format!("{prefix}{echoed}{suffix}");
            if twice {
                text = format!("{text} / {}", encode(&secret, (how + 3) % ENCODINGS));
            }
            let scrubbed = scrub(&text, &[&secret]);
            let folded = scrubbed.to_ascii_lowercase();
            for piece in pieces(&secret) {
                for how in 0..ENCODINGS {
                    let spelled = encode(&piece, how).to_ascii_lowercase();
                    prop_assert!(
                        !folded.contains(&spelled),
                        "{spelled:?} survives in {scrubbed:?} (from {text:?})"
                    );
                }
            }
            prop_assert!(scrubbed.contains(MARKER));
            prop_assert_eq!(scrub(&scrubbed, &[&secret]), scrubbed.clone());
        }

        /// Any text, any secrets: no panic, and a second scrub changes
        /// nothing.
        #[test]
        fn scrubbing_never_panics_and_is_idempotent(
            text in prop_oneof![
                "\\PC{0,80}",
                "[a-fA-F0-9%\\\\uUdD\"/+ \\[\\]redacté]{0,80}",
            ],
            secrets in prop::collection::vec(
                prop_oneof!["\\PC{0,30}", "[a-f0-9%\\\\u\\[\\]redact]{0,16}"],
                0..4,
            ),
            take in any::<prop::sample::Index>(),
        ) {
            let mut secrets = secrets;
            // A secret taken from the text itself, cut at any byte.
            let bytes = text.as_bytes();
            let from = take.index(bytes.len() + 1);
            secrets.push(String::from_utf8_lossy(&bytes[from..]).into_owned());
            let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
            let once = scrub(&text, &refs);
            let again = scrub(&once, &refs);
            prop_assert_eq!(&again, &once);
            if refs.iter().all(|s| s.len() < MIN_SECRET) {
                prop_assert_eq!(once, text);
            }
        }
    }
}
