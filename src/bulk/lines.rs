//! NDJSON read one line at a time with a bound on each line, so a file or
//! request body of any size is read in constant memory and one absurd line
//! costs its length in reading, not in memory.

use std::io;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// One line of input: its number (from 1) and its bytes without the line
/// ending, or None when it was longer than the bound (then skipped).
pub struct Line<'a> {
    pub number: u64,
    pub bytes: Option<&'a [u8]>,
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

pub struct Lines<R> {
    reader: R,
    max_bytes: usize,
    number: u64,
    buffer: Vec<u8>,
    consumed: u64,
}

impl<R: AsyncBufRead + Unpin> Lines<R> {
    pub fn new(reader: R, max_bytes: usize) -> Self {
        Self {
            reader,
            max_bytes,
            number: 0,
            buffer: Vec::new(),
            consumed: 0,
        }
    }

    /// Bytes read so far (for progress over a file of known size).
    pub fn bytes_read(&self) -> u64 {
        self.consumed
    }

    /// The next line, or None at the end of the input. A last line without
    /// a newline is a line; `\r\n` endings are accepted.
    pub async fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.buffer.clear();
        let mut too_long = false;
        let mut seen_any = false;
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                if !seen_any {
                    return Ok(None);
                }
                break;
            }
            seen_any = true;
            let (taken, ends) = match available.iter().position(|&b| b == b'\n') {
                Some(at) => (at, true),
                None => (available.len(), false),
            };
            if !too_long {
                if self.buffer.len() + taken > self.max_bytes {
                    too_long = true;
                    self.buffer = Vec::new();
                } else {
                    self.buffer.extend_from_slice(&available[..taken]);
                }
            }
            let used = taken + usize::from(ends);
            self.reader.consume(used);
            self.consumed += used as u64;
            if ends {
                break;
            }
        }
        self.number += 1;
        if too_long {
            return Ok(Some(Line {
                number: self.number,
                bytes: None,
            }));
        }
        if self.buffer.last() == Some(&b'\r') {
            self.buffer.pop();
        }
        // Files saved by Windows tools often start with a byte order mark,
        // which would otherwise make the first line invalid JSON.
        if self.number == 1 && self.buffer.starts_with(UTF8_BOM) {
            self.buffer.drain(..UTF8_BOM.len());
        }
        Ok(Some(Line {
            number: self.number,
            bytes: Some(&self.buffer),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn all(input: &[u8], max: usize) -> Vec<(u64, Option<String>)> {
        let mut lines = Lines::new(tokio::io::BufReader::with_capacity(4, input), max);
        let mut out = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            out.push((
                line.number,
                line.bytes.map(|b| String::from_utf8_lossy(b).into_owned()),
            ));
        }
        assert_eq!(lines.bytes_read(), input.len() as u64);
        out
    }

    #[tokio::test]
    async fn lines_are_numbered_bounded_and_split_across_reads() {
        let got = all(b"ab\r\n\ntoo long line\nlast", 8).await;
        assert_eq!(
            got,
            vec![
                (1, Some("ab".into())),
                (2, Some(String::new())),
                (3, None),
                (4, Some("last".into())),
            ]
        );
        assert!(all(b"", 8).await.is_empty());
        assert_eq!(all(b"x\n", 8).await, vec![(1, Some("x".into()))]);
        assert_eq!(
            all(b"\xEF\xBB\xBF{}\r\n\xEF\xBB\xBF{}", 8).await,
            vec![(1, Some("{}".into())), (2, Some("\u{FEFF}{}".into()))]
        );
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_split_like_lines(input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), max in 1usize..20) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let got = rt.block_on(all(&input, max));
            let expected: Vec<&[u8]> = if input.is_empty() {
                Vec::new()
            } else {
                let mut parts: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
                if input.last() == Some(&b'\n') {
                    parts.pop();
                }
                parts
            };
            proptest::prop_assert_eq!(got.len(), expected.len());
            for (index, ((_, bytes), raw)) in got.iter().zip(expected).enumerate() {
                let part = raw.strip_suffix(b"\r").unwrap_or(raw);
                let part = if index == 0 { part.strip_prefix(UTF8_BOM).unwrap_or(part) } else { part };
                match bytes {
                    Some(text) => proptest::prop_assert_eq!(text, &String::from_utf8_lossy(part).into_owned()),
                    None => proptest::prop_assert!(raw.len() > max),
                }
            }
        }
    }
}
