//! Maps a JSON pointer (`/topology/links/3/b`) to the line and column where that value
//! starts in the source text, so semantic errors can point at the offending value.
//!
//! Why hand-written rather than a crate (`jsonc-parser` and friends give ranges): the
//! text has already been accepted by serde_json when this runs, so a ~80-line scanner
//! that only skips strings and literals is enough, and it keeps the dependency tree and
//! the "unknown fields are errors" behaviour in one parser (serde_json) instead of two.

use std::collections::HashMap;

/// A 1-based line and column; the column counts characters, as editors do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

/// Byte span (start, end exclusive) of every value in a JSON text, by JSON pointer.
pub struct Locator<'a> {
    source: &'a str,
    offsets: HashMap<String, (usize, usize)>,
}

impl<'a> Locator<'a> {
    /// Scans `source`. Malformed text never panics; it just yields fewer pointers.
    pub fn new(source: &'a str) -> Self {
        let mut s = Scanner {
            bytes: source.as_bytes(),
            pos: 0,
            offsets: HashMap::new(),
        };
        s.value(String::new(), 0);
        Locator {
            source,
            offsets: s.offsets,
        }
    }

    /// Where the value at `pointer` starts; for a pointer that is absent (a defaulted
    /// field), where its nearest present ancestor starts.
    pub fn position(&self, pointer: &str) -> Position {
        let mut p = pointer;
        loop {
            if let Some(&(off, _)) = self.offsets.get(p) {
                return self.position_of_offset(off);
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return Position { line: 1, column: 1 },
            }
        }
    }

    /// Line and character column of a byte offset.
    pub fn position_of_offset(&self, offset: usize) -> Position {
        let offset = offset.min(self.source.len());
        let before = &self.source.as_bytes()[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        Position { line, column }
    }

    /// serde_json's (line, byte column) as (line, character column), unchanged otherwise.
    pub fn position_of_serde(&self, line: usize, byte_column: usize) -> Position {
        let text = self
            .source
            .split('\n')
            .nth(line.saturating_sub(1))
            .unwrap_or("");
        let cut = byte_column.saturating_sub(1).min(text.len());
        let column = String::from_utf8_lossy(&text.as_bytes()[..cut])
            .chars()
            .count()
            + 1;
        Position {
            line: line.max(1),
            column,
        }
    }

    /// Where to report a serde_json data error given at (line, byte column).
    ///
    /// serde_json points at the last byte it read. For a value it rejected (wrong type,
    /// bad port string) that is the value's last byte; for a step, whose fields serde
    /// buffers before checking them, it is the first byte after the step object. In both
    /// cases we point at the start of that value instead; otherwise (syntax errors,
    /// unknown keys in plain structs) at serde_json's own position.
    pub fn from_serde(&self, line: usize, byte_column: usize) -> Position {
        let line_start: usize = self
            .source
            .split('\n')
            .take(line.saturating_sub(1))
            .map(|l| l.len() + 1)
            .sum();
        let at = (line_start + byte_column.saturating_sub(1)).min(self.source.len());
        let bytes = self.source.as_bytes();
        let skip_ws = |mut i: usize| {
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            i
        };
        let value = self
            .offsets
            .values()
            .filter(|(start, end)| {
                *end == at + 1 || (*end <= at && skip_ws(*end) == at && *start < *end)
            })
            // A container's closing byte also "ends" there; the innermost value (the
            // latest start) is the one serde rejected.
            .max_by_key(|(start, _)| *start);
        match value {
            Some(&(start, _)) => self.position_of_offset(start),
            None => self.position_of_serde(line, byte_column),
        }
    }
}

/// Escapes one pointer segment (RFC 6901).
pub fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

struct Scanner<'b> {
    bytes: &'b [u8],
    pos: usize,
    offsets: HashMap<String, (usize, usize)>,
}

impl Scanner<'_> {
    fn ws(&mut self) {
        while self.pos < self.bytes.len() && self.bytes[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Skips a string starting at `"` and returns its raw contents (escapes kept, which
    /// is fine for field names).
    fn string(&mut self) -> String {
        let start = self.pos + 1;
        self.pos += 1;
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'\\' => self.pos += 1,
                b'"' => break,
                _ => {}
            }
        }
        let end = self.pos.saturating_sub(1).max(start).min(self.bytes.len());
        String::from_utf8_lossy(&self.bytes[start.min(end)..end]).into_owned()
    }

    fn value(&mut self, pointer: String, depth: usize) {
        self.ws();
        let start = self.pos;
        self.offsets.insert(pointer.clone(), (start, start));
        self.scan_value(&pointer, depth);
        self.offsets.insert(pointer, (start, self.pos));
    }

    fn scan_value(&mut self, pointer: &str, depth: usize) {
        if depth > 512 {
            self.pos = self.bytes.len();
            return;
        }
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                loop {
                    self.ws();
                    match self.peek() {
                        Some(b'"') => {
                            let key = self.string();
                            self.ws();
                            if self.peek() == Some(b':') {
                                self.pos += 1;
                            }
                            self.value(format!("{pointer}/{}", escape(&key)), depth + 1);
                            self.ws();
                            if self.peek() == Some(b',') {
                                self.pos += 1;
                            }
                        }
                        Some(b'}') => {
                            self.pos += 1;
                            return;
                        }
                        _ => return,
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                let mut i = 0usize;
                loop {
                    self.ws();
                    match self.peek() {
                        Some(b']') => {
                            self.pos += 1;
                            return;
                        }
                        None => return,
                        Some(_) => {
                            let before = self.pos;
                            self.value(format!("{pointer}/{i}"), depth + 1);
                            i += 1;
                            self.ws();
                            if self.peek() == Some(b',') {
                                self.pos += 1;
                            } else if self.pos == before {
                                return;
                            }
                        }
                    }
                }
            }
            Some(b'"') => {
                self.string();
            }
            Some(_) => {
                while let Some(b) = self.peek() {
                    if matches!(b, b',' | b'}' | b']') || b.is_ascii_whitespace() {
                        break;
                    }
                    self.pos += 1;
                }
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_values() {
        let src = "{\n  \"a\": [1, {\"b\": \"x/y\"}],\n  \"c~/\": true\n}";
        let l = Locator::new(src);
        assert_eq!(l.position(""), Position { line: 1, column: 1 });
        assert_eq!(l.position("/a"), Position { line: 2, column: 8 });
        assert_eq!(l.position("/a/0"), Position { line: 2, column: 9 });
        assert_eq!(
            l.position("/a/1/b"),
            Position {
                line: 2,
                column: 18
            }
        );
        assert_eq!(
            l.position("/c~0~1"),
            Position {
                line: 3,
                column: 10
            }
        );
        // Absent pointer: nearest ancestor.
        assert_eq!(
            l.position("/a/1/zz"),
            Position {
                line: 2,
                column: 12
            }
        );
    }

    #[test]
    fn columns_count_characters() {
        let src = "{\"µ\": 1, \"b\": 2}";
        let l = Locator::new(src);
        assert_eq!(l.position("/b").column, 15);
    }

    #[test]
    fn garbage_never_panics() {
        for s in [
            "", "{", "[", "{\"a\"", "{\"a\":", "[1,", "\"abc", "{\"a\\", "]]]", "{{{{",
        ] {
            let l = Locator::new(s);
            let _ = l.position("/a/0");
        }
    }
}
