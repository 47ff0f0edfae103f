//! Removes credentials that a platform echoes back in its error text before
//! the text is stored, logged, sent in events or returned by the API.
//!
//! Platforms quote what they were sent in every shape: verbatim, upper- or
//! lower-cased, percent- or form-encoded (either hex case, `+` for space),
//! JSON-escaped, or cut short. So the text is searched through several views
//! — as written, and with up to three layers of percent escapes or JSON
//! escapes decoded, in every order — all compared ASCII case-insensitively
//! with space and `+` taken as one. Any run of `FRAGMENT` bytes of a secret found in any view is cut
//! out of the original text, as whole characters, and replaced by `MARKER`.
//! Secrets shorter than `FRAGMENT` are matched whole.
//!
//! Markers already in the text are opaque (never matched, never part of a
//! match), and scrubbing repeats until nothing changes, so scrubbing a
//! scrubbed text changes nothing.

/// What replaces a secret.
pub const MARKER: &str = "[redacted]";

/// The shortest run of a secret's bytes that is redacted wherever it appears.
pub const FRAGMENT: usize = 12;

/// Secrets shorter than this are not searched for: they would match ordinary
/// words (no real credential is this short).
const MIN_SECRET: usize = 4;

/// How many times escapes are decoded (text percent-encoded inside JSON
/// inside a query string is three layers).
const DECODE_DEPTH: usize = 3;

/// `text` with every echo of `secrets` replaced by `MARKER`.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let patterns = Patterns::new(secrets);
    if patterns.is_empty() {
        return text.to_owned();
    }
    let mut current = text.to_owned();
    // Each changing pass turns at least one byte outside markers into a
    // marker, so this ends.
    loop {
        let next = scrub_once(&current, &patterns);
        if next == current {
            return current;
        }
        current = next;
    }
}

/// The secrets in comparable form (canonical bytes), long enough to search.
struct Patterns(Vec<Vec<u8>>);

impl Patterns {
    fn new(secrets: &[&str]) -> Self {
        Self(
            secrets
                .iter()
                .map(|secret| secret.bytes().map(canonical).collect::<Vec<u8>>())
                .filter(|secret| secret.len() >= MIN_SECRET)
                .collect(),
        )
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// ASCII case and the space/`+` ambiguity of form encoding folded away.
fn canonical(byte: u8) -> u8 {
    match byte {
        b' ' => b'+',
        other => other.to_ascii_lowercase(),
    }
}

/// One byte of a view, and the span of the original text it stands for.
#[derive(Clone, Copy)]
struct Unit {
    byte: u8,
    start: usize,
    end: usize,
}

/// A run of text between markers, in one view.
type Segment = Vec<Unit>;

fn scrub_once(text: &str, patterns: &Patterns) -> String {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    // Each layer is decoded on its own: a secret may itself hold what looks
    // like an escape of the other kind (`%00` inside a JSON-escaped echo).
    let mut views = vec![segments(text)];
    for depth in 0..=DECODE_DEPTH {
        for view in &views {
            for segment in view {
                find(segment, patterns, &mut spans);
            }
        }
        if depth == DECODE_DEPTH {
            break;
        }
        views = views
            .iter()
            .flat_map(|view| [Escape::Percent, Escape::Json].map(|kind| decode_view(view, kind)))
            .flatten()
            .collect();
        if views.is_empty() {
            break;
        }
    }
    replace(text, spans)
}

#[derive(Clone, Copy)]
enum Escape {
    Percent,
    Json,
}

/// The view with one layer of `kind` decoded; None when it holds none.
fn decode_view(view: &[Segment], kind: Escape) -> Option<Vec<Segment>> {
    let decoded: Vec<Segment> = view.iter().map(|s| decode(s, kind)).collect();
    // Decoding always shortens what it decodes.
    let changed = decoded.iter().zip(view).any(|(a, b)| a.len() != b.len());
    changed.then_some(decoded)
}

/// The text as canonical bytes, split at the markers already in it.
fn segments(text: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    let mut from = 0;
    let mut push = |from: usize, to: usize| {
        let segment: Segment = text.as_bytes()[from..to]
            .iter()
            .enumerate()
            .map(|(i, b)| Unit {
                byte: canonical(*b),
                start: from + i,
                end: from + i + 1,
            })
            .collect();
        if !segment.is_empty() {
            segments.push(segment);
        }
    };
    for (at, _) in text.match_indices(MARKER) {
        push(from, at);
        from = at + MARKER.len();
    }
    push(from, text.len());
    segments
}

/// Records the original spans of every run of a secret found in
/// `segment`. An escape there may be meant either way (`%00%3D` is `%` then
/// an encoded `00=`, or an encoded NUL then `=`), so the segment is read as a
/// lattice: at each position the next byte is the one written, or the one a
/// percent or JSON escape starting there decodes to. For each position and
/// each offset in the secret the longest run of the secret ending there
/// along any path is kept, with where in the original text it starts.
fn find(segment: &[Unit], patterns: &Patterns, spans: &mut Vec<(usize, usize)>) {
    for secret in &patterns.0 {
        let needed = secret.len().min(FRAGMENT);
        // runs[node][j]: (length, start) of the longest path ending at node
        // that spells secret[j - length..j].
        let mut runs = vec![vec![(0usize, 0usize); secret.len() + 1]; segment.len() + 1];
        for node in 0..segment.len() {
            let unit = segment[node];
            let mut step =
                |bytes: &[u8], to: usize, end: usize, runs: &mut Vec<Vec<(usize, usize)>>| {
                    let mut current = runs[node].clone();
                    for &byte in bytes {
                        let mut next = vec![(0usize, 0usize); secret.len() + 1];
                        for j in 1..=secret.len() {
                            if secret[j - 1] == byte {
                                let (length, start) = current[j - 1];
                                let start = if length == 0 { unit.start } else { start };
                                next[j] = (length + 1, start);
                            }
                        }
                        current = next;
                    }
                    for (j, &(length, start)) in current.iter().enumerate() {
                        if length >= needed {
                            spans.push((start, end));
                        }
                        let best = &mut runs[to][j];
                        if length > best.0 || (length == best.0 && length > 0 && start < best.1) {
                            *best = (length, start);
                        }
                    }
                };
            step(&[unit.byte], node + 1, unit.end, &mut runs);
            if let Some((bytes, length)) = percent_escape(segment, node) {
                step(
                    &bytes,
                    node + length,
                    segment[node + length - 1].end,
                    &mut runs,
                );
            }
            if let Some((bytes, length)) = json_escape(segment, node) {
                step(
                    &bytes,
                    node + length,
                    segment[node + length - 1].end,
                    &mut runs,
                );
            }
        }
    }
}

/// One layer of percent escapes (`%2B`, `%2b`) or of JSON string escapes
/// (`\"`, `\/`, `\n`, `\u00e9`, surrogate pairs) decoded; anything else kept.
/// A decoded byte spans its whole escape in the original text.
fn decode(segment: &[Unit], kind: Escape) -> Segment {
    let mut out = Vec::with_capacity(segment.len());
    let mut i = 0;
    while i < segment.len() {
        let unit = segment[i];
        let span = |len: usize| (unit.start, segment[i + len - 1].end);
        let decoded: Option<(Vec<u8>, usize)> = match (kind, unit.byte) {
            (Escape::Percent, _) => percent_escape(segment, i),
            (Escape::Json, _) => json_escape(segment, i),
        };
        match decoded {
            Some((bytes, len)) => {
                let (start, end) = span(len);
                out.extend(bytes.into_iter().map(|b| Unit {
                    byte: canonical(b),
                    start,
                    end,
                }));
                i += len;
            }
            None => {
                out.push(unit);
                i += 1;
            }
        }
    }
    out
}

/// The percent escape starting at `at`, if one does: its byte and length.
fn percent_escape(segment: &[Unit], at: usize) -> Option<(Vec<u8>, usize)> {
    if segment[at].byte != b'%' {
        return None;
    }
    hex(segment, at + 1, 2).map(|value| (vec![value as u8], 3))
}

/// The JSON escape starting at `at`, if one does: its bytes and length.
fn json_escape(segment: &[Unit], at: usize) -> Option<(Vec<u8>, usize)> {
    if segment[at].byte != b'\\' {
        return None;
    }
    let simple = match segment.get(at + 1)?.byte {
        b'"' => b'"',
        b'\\' => b'\\',
        b'/' => b'/',
        b'b' => 0x08,
        b'f' => 0x0c,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'u' => {
            let first = hex(segment, at + 2, 4)?;
            let (c, len) = if (0xd800..0xdc00).contains(&first) {
                // A high surrogate needs its low half: `\udXXX`.
                let backslash = segment.get(at + 6)?.byte == b'\\';
                let u = segment.get(at + 7)?.byte == b'u';
                let second = hex(segment, at + 8, 4).filter(|s| (0xdc00..0xe000).contains(s))?;
                if !(backslash && u) {
                    return None;
                }
                let code = 0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00);
                (char::from_u32(code)?, 12)
            } else {
                (char::from_u32(first)?, 6)
            };
            let mut buf = [0u8; 4];
            return Some((c.encode_utf8(&mut buf).as_bytes().to_vec(), len));
        }
        _ => return None,
    };
    Some((vec![simple], 2))
}

/// `digits` hex digits starting at `at`, either case.
fn hex(segment: &[Unit], at: usize, digits: usize) -> Option<u32> {
    let mut value = 0u32;
    for offset in 0..digits {
        let digit = char::from(segment.get(at + offset)?.byte).to_digit(16)?;
        value = value * 16 + digit;
    }
    Some(value)
}

/// `text` with the spans (widened to whole characters, merged when they
/// touch) replaced by `MARKER`.
fn replace(text: &str, mut spans: Vec<(usize, usize)>) -> String {
    if spans.is_empty() {
        return text.to_owned();
    }
    for (start, end) in &mut spans {
        while !text.is_char_boundary(*start) {
            *start -= 1;
        }
        while !text.is_char_boundary(*end) {
            *end += 1;
        }
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut open: Option<(usize, usize)> = None;
    for (start, end) in spans {
        match &mut open {
            Some((_, open_end)) if start <= *open_end => *open_end = (*open_end).max(end),
            _ => {
                if let Some((open_start, open_end)) = open.take() {
                    out.push_str(&text[copied..open_start]);
                    out.push_str(MARKER);
                    copied = open_end;
                }
                open = Some((start, end));
            }
        }
    }
    if let Some((open_start, open_end)) = open {
        out.push_str(&text[copied..open_start]);
        out.push_str(MARKER);
        copied = open_end;
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests;
