//! Python literals (what `repr()` of dicts, lists and strings prints) parsed into JSON values.
//!
//! The Movies Dataset stores `genres`, `belongs_to_collection`, the credits and the keywords as
//! Python literals: single-quoted strings with Python escapes, `None`, `True`, tuples. Replacing
//! quotes to make JSON of them breaks on the first name with an apostrophe (`'Ocean\'s Eleven'`,
//! `"Ocean's Eleven"`), so this is a small recursive-descent parser of the literal grammar
//! (what `ast.literal_eval` accepts, minus sets, bytes, complex numbers and operators).
//!
//! Errors carry the byte offset of the problem. No input can panic the parser: nesting is
//! bounded (a deep `[[[[…` is an error, not a stack overflow) and every index is checked.

use serde_json::{Map, Number, Value as Json};

/// Deeper nesting than any real record has; bounds the recursion.
pub const MAX_DEPTH: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at byte {offset}")]
pub struct PyLitError {
    pub offset: usize,
    pub message: String,
}

/// Parses one Python literal (surrounding whitespace allowed) into JSON: dicts become objects
/// (keys must be strings), lists and tuples arrays, `None` null.
pub fn parse(text: &str) -> Result<Json, PyLitError> {
    let mut p = Parser { text, pos: 0 };
    p.skip_ws();
    let value = p.value(0)?;
    p.skip_ws();
    if p.pos < text.len() {
        return Err(p.error("unexpected text after the literal"));
    }
    Ok(value)
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, message: impl Into<String>) -> PyLitError {
        self.error_at(self.pos, message)
    }

    fn error_at(&self, offset: usize, message: impl Into<String>) -> PyLitError {
        PyLitError {
            offset,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r' | b'\x0c') = self.peek() {
            self.pos += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, PyLitError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        match self.peek() {
            None => Err(self.error("expected a value, found the end of the text")),
            Some(b'{') => self.dict(depth),
            Some(b'[') => {
                self.pos += 1;
                self.sequence(b']', depth).map(Json::Array)
            }
            Some(b'(') => self.paren(depth),
            Some(b'\'' | b'"') => self.string(false).map(Json::String),
            Some(b'-' | b'+' | b'.' | b'0'..=b'9') => self.number(),
            Some(c) if c.is_ascii_alphabetic() || c == b'_' => self.name(),
            Some(_) => {
                let c = self.text[self.pos..].chars().next().unwrap_or('?');
                Err(self.error(format!("unexpected character {c:?}")))
            }
        }
    }

    /// Items up to `close`, separated by commas, a trailing comma allowed. The opening bracket
    /// has been consumed.
    fn sequence(&mut self, close: u8, depth: usize) -> Result<Vec<Json>, PyLitError> {
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok(items);
            }
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(c) if c == close => {}
                _ => return Err(self.error(format!("expected ',' or '{}'", close as char))),
            }
        }
    }

    /// `()` is an empty tuple, `(x,)` and `(x, y)` tuples, `(x)` just `x`.
    fn paren(&mut self, depth: usize) -> Result<Json, PyLitError> {
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(b')') {
            self.pos += 1;
            return Ok(Json::Array(Vec::new()));
        }
        let first = self.value(depth + 1)?;
        self.skip_ws();
        match self.peek() {
            Some(b')') => {
                self.pos += 1;
                Ok(first)
            }
            Some(b',') => {
                self.pos += 1;
                let mut rest = self.sequence(b')', depth)?;
                rest.insert(0, first);
                Ok(Json::Array(rest))
            }
            _ => Err(self.error("expected ',' or ')'")),
        }
    }

    fn dict(&mut self, depth: usize) -> Result<Json, PyLitError> {
        self.pos += 1;
        let mut map = Map::new();
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Json::Object(map));
                }
                Some(b'\'' | b'"') | Some(b'u' | b'U' | b'r' | b'R') => {}
                _ => return Err(self.error("expected a string key or '}'")),
            }
            let key_at = self.pos;
            let key = match self.value(depth + 1)? {
                Json::String(s) => s,
                _ => return Err(self.error_at(key_at, "dict keys must be strings")),
            };
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.error("expected ':' after a dict key"));
            }
            self.pos += 1;
            self.skip_ws();
            let value = self.value(depth + 1)?;
            // Python keeps the last of repeated keys; so does this.
            map.insert(key, value);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {}
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
    }

    /// `True`, `False`, `None`, or a string with a `u`/`r` prefix.
    fn name(&mut self) -> Result<Json, PyLitError> {
        let start = self.pos;
        let bytes = self.text.as_bytes();
        let mut end = start;
        while bytes.get(end).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_') {
            end += 1;
        }
        let word = &self.text[start..end];
        if matches!(bytes.get(end), Some(b'\'' | b'"')) {
            match word {
                "u" | "U" => {
                    self.pos = end;
                    return self.string(false).map(Json::String);
                }
                "r" | "R" => {
                    self.pos = end;
                    return self.string(true).map(Json::String);
                }
                _ => return Err(self.error(format!("unsupported string prefix '{word}'"))),
            }
        }
        let value = match word {
            "True" => Json::Bool(true),
            "False" => Json::Bool(false),
            "None" => Json::Null,
            _ => return Err(self.error(format!("unexpected name '{word}' (not True, False or None)"))),
        };
        self.pos = end;
        Ok(value)
    }

    fn string(&mut self, raw: bool) -> Result<String, PyLitError> {
        let start = self.pos;
        let Some(quote) = self.peek() else {
            return Err(self.error("expected a string"));
        };
        self.pos += 1;
        if self.text.as_bytes().get(self.pos..self.pos + 2) == Some(&[quote, quote]) {
            return Err(self.error_at(start, "triple-quoted strings are not supported"));
        }
        let mut out = String::new();
        loop {
            // Copy the run of plain characters in one go (always on char boundaries: the
            // delimiters searched for are ASCII).
            let rest = &self.text[self.pos..];
            let run = rest
                .bytes()
                .position(|b| b == quote || b == b'\\' || b == b'\n' || b == b'\r')
                .unwrap_or(rest.len());
            out.push_str(&rest[..run]);
            self.pos += run;
            match self.peek() {
                None => return Err(self.error_at(start, "unterminated string")),
                Some(b'\n' | b'\r') => return Err(self.error("line break inside a string")),
                Some(c) if c == quote => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(_) if raw => {
                    // In a raw string a backslash stays, and only keeps the next quote from
                    // ending the string.
                    out.push('\\');
                    self.pos += 1;
                    if let Some(c) = self.text[self.pos..].chars().next()
                        && c != '\n'
                        && c != '\r'
                    {
                        out.push(c);
                        self.pos += c.len_utf8();
                    }
                }
                Some(_) => self.escape(&mut out)?,
            }
        }
    }

    /// One backslash escape, the backslash at `self.pos`.
    fn escape(&mut self, out: &mut String) -> Result<(), PyLitError> {
        let at = self.pos;
        self.pos += 1;
        let Some(c) = self.text[self.pos..].chars().next() else {
            return Err(self.error_at(at, "unterminated string"));
        };
        self.pos += c.len_utf8();
        let simple = match c {
            '\\' => Some('\\'),
            '\'' => Some('\''),
            '"' => Some('"'),
            'n' => Some('\n'),
            't' => Some('\t'),
            'r' => Some('\r'),
            'a' => Some('\x07'),
            'b' => Some('\x08'),
            'f' => Some('\x0c'),
            'v' => Some('\x0b'),
            _ => None,
        };
        if let Some(s) = simple {
            out.push(s);
            return Ok(());
        }
        match c {
            // A backslash before a line break continues the literal on the next line.
            '\n' => Ok(()),
            '\r' => {
                if self.peek() == Some(b'\n') {
                    self.pos += 1;
                }
                Ok(())
            }
            'x' => self.hex_escape(at, 2, out),
            'u' => self.hex_escape(at, 4, out),
            'U' => self.hex_escape(at, 8, out),
            '0'..='7' => {
                let mut code = c as u32 - '0' as u32;
                for _ in 0..2 {
                    match self.peek() {
                        Some(d @ b'0'..=b'7') => {
                            code = code * 8 + u32::from(d - b'0');
                            self.pos += 1;
                        }
                        _ => break,
                    }
                }
                push_code(out, code).map_err(|m| self.error_at(at, m))
            }
            'N' => Err(self.error_at(at, "named escapes (\\N{...}) are not supported")),
            // Python keeps unknown escapes as written.
            other => {
                out.push('\\');
                out.push(other);
                Ok(())
            }
        }
    }

    fn hex_escape(&mut self, at: usize, digits: usize, out: &mut String) -> Result<(), PyLitError> {
        let hex = self
            .text
            .get(self.pos..self.pos + digits)
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.error_at(at, format!("escape needs {digits} hex digits")))?;
        let code = u32::from_str_radix(hex, 16).map_err(|_| self.error_at(at, "invalid hex escape"))?;
        self.pos += digits;
        push_code(out, code).map_err(|m| self.error_at(at, m))
    }

    fn number(&mut self) -> Result<Json, PyLitError> {
        let start = self.pos;
        let bytes = self.text.as_bytes();
        let mut end = start;
        if matches!(bytes.get(end), Some(b'-' | b'+')) {
            end += 1;
        }
        let digits_start = end;
        let mut is_float = false;
        while let Some(&b) = bytes.get(end) {
            match b {
                b'0'..=b'9' | b'_' => {}
                b'.' => is_float = true,
                b'e' | b'E' => {
                    is_float = true;
                    if matches!(bytes.get(end + 1), Some(b'-' | b'+')) {
                        end += 1;
                    }
                }
                _ => break,
            }
            end += 1;
        }
        let text = &self.text[start..end];
        let body = &self.text[digits_start..end];
        if !body.bytes().any(|b| b.is_ascii_digit()) {
            return Err(self.error_at(start, format!("{text:?} is not a number")));
        }
        if body.starts_with('_') || body.ends_with('_') || body.contains("__") {
            return Err(self.error_at(start, format!("misplaced '_' in number {text:?}")));
        }
        let clean = text.replace('_', "");
        self.pos = end;
        if is_float {
            return clean
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map(Json::Number)
                .ok_or_else(|| self.error_at(start, format!("{text:?} is not a finite float")));
        }
        let unsigned = clean.trim_start_matches(['-', '+']);
        if unsigned.len() > 1 && unsigned.starts_with('0') && unsigned.bytes().any(|b| b != b'0') {
            return Err(self.error_at(start, format!("leading zeros in integer {text:?}")));
        }
        if let Ok(i) = clean.parse::<i64>() {
            return Ok(Json::from(i));
        }
        if let Ok(u) = clean.trim_start_matches('+').parse::<u64>() {
            return Ok(Json::from(u));
        }
        Err(self.error_at(start, format!("integer {text:?} does not fit in 64 bits")))
    }
}

fn push_code(out: &mut String, code: u32) -> Result<(), String> {
    let c =
        char::from_u32(code).ok_or_else(|| format!("\\u{code:x} is not a character (lone surrogate or too large)"))?;
    out.push(c);
    Ok(())
}

/// Renders a JSON value as a Python literal, the way `repr()` prints it (used by tests and to
/// show what a parsed value looked like).
pub fn render(value: &Json) -> String {
    let mut out = String::new();
    render_into(value, &mut out);
    out
}

fn render_into(value: &Json, out: &mut String) {
    match value {
        Json::Null => out.push_str("None"),
        Json::Bool(true) => out.push_str("True"),
        Json::Bool(false) => out.push_str("False"),
        Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (_, Some(u), _) => out.push_str(&u.to_string()),
            // `{:?}` always marks a float as one (`1.0`, `1e-7`), as Python's repr does.
            (_, _, Some(f)) => out.push_str(&format!("{f:?}")),
            _ => out.push_str("None"),
        },
        Json::String(s) => render_str(s, out),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render_into(item, out);
            }
            out.push(']');
        }
        Json::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render_str(k, out);
                out.push_str(": ");
                render_into(v, out);
            }
            out.push('}');
        }
    }
}

fn render_str(s: &str, out: &mut String) {
    // Python's choice: single quotes unless the text has a single quote and no double quote.
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() && (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() && (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\U{:08x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn err(text: &str) -> PyLitError {
        match parse(text) {
            Ok(v) => panic!("{text:?} parsed as {v}"),
            Err(e) => e,
        }
    }

    #[test]
    fn movies_dataset_shapes() {
        let genres = "[{'id': 16, 'name': 'Animation'}, {'id': 35, 'name': 'Comedy'}]";
        assert_eq!(
            parse(genres),
            Ok(json!([{"id": 16, "name": "Animation"}, {"id": 35, "name": "Comedy"}]))
        );
        let collection = "{'id': 10194, 'name': 'Toy Story Collection', 'poster_path': None}";
        assert_eq!(
            parse(collection),
            Ok(json!({"id": 10194, "name": "Toy Story Collection", "poster_path": null}))
        );
        assert_eq!(
            parse(r#"[{'character': "Ocean's Eleven", 'x': 'It\'s'}]"#),
            Ok(json!([{"character": "Ocean's Eleven", "x": "It's"}]))
        );
        assert_eq!(parse(" [ ] "), Ok(json!([])));
        assert_eq!(parse("{}"), Ok(json!({})));
    }

    #[test]
    fn scalars_and_escapes() {
        assert_eq!(parse("True"), Ok(json!(true)));
        assert_eq!(parse("False"), Ok(json!(false)));
        assert_eq!(parse("None"), Ok(json!(null)));
        assert_eq!(parse("-42"), Ok(json!(-42)));
        assert_eq!(parse("+7"), Ok(json!(7)));
        assert_eq!(parse("18446744073709551615"), Ok(json!(u64::MAX)));
        assert_eq!(parse("1_000"), Ok(json!(1000)));
        assert_eq!(parse("-1.5e-3"), Ok(json!(-0.0015)));
        assert_eq!(parse("2E3"), Ok(json!(2000.0)));
        assert_eq!(parse(".5"), Ok(json!(0.5)));
        assert_eq!(parse("5."), Ok(json!(5.0)));
        assert_eq!(
            parse(r#"'a\\b\'c\"d\ne\tf\x41\u00e9\U0001F600\101\0'"#),
            Ok(json!("a\\b'c\"d\ne\tfAé😀A\u{0}"))
        );
        assert_eq!(parse(r#""it's""#), Ok(json!("it's")));
        assert_eq!(parse(r"'\d'"), Ok(json!("\\d")), "unknown escapes stay as written");
        assert_eq!(parse(r"r'\n'"), Ok(json!("\\n")));
        assert_eq!(parse(r"u'caf\xe9'"), Ok(json!("café")));
        assert_eq!(parse("'Amélie'"), Ok(json!("Amélie")));
        assert_eq!(parse("(1, 'a')"), Ok(json!([1, "a"])));
        assert_eq!(parse("(1,)"), Ok(json!([1])));
        assert_eq!(parse("(1)"), Ok(json!(1)));
        assert_eq!(parse("()"), Ok(json!([])));
        assert_eq!(parse("[1, 2,]"), Ok(json!([1, 2])));
    }

    #[test]
    fn errors_say_what_and_where() {
        assert_eq!(
            err("[{'id': 16, 'name': 'Animation'}").to_string(),
            "expected ',' or ']' at byte 32"
        );
        assert_eq!(
            err("{'id': 16, 'name': 'Anim").to_string(),
            "unterminated string at byte 19"
        );
        assert_eq!(
            err("{'a': nan}").to_string(),
            "unexpected name 'nan' (not True, False or None) at byte 6"
        );
        assert_eq!(err("{1: 2}").offset, 1);
        assert_eq!(err("[1] x").to_string(), "unexpected text after the literal at byte 4");
        assert_eq!(
            err("").to_string(),
            "expected a value, found the end of the text at byte 0"
        );
        assert_eq!(err("007").offset, 0);
        assert_eq!(err("1e999").message, "\"1e999\" is not a finite float");
        assert_eq!(err("99999999999999999999").offset, 0);
        assert_eq!(err(r"'\x4'").message, "escape needs 2 hex digits");
        assert_eq!(err(r"'\ud800'").offset, 1);
        assert_eq!(err("'a\nb'").message, "line break inside a string");
        assert_eq!(err("'''a'''").message, "triple-quoted strings are not supported");
        assert_eq!(err("b'x'").message, "unsupported string prefix 'b'");
        assert_eq!(err("-").offset, 0);
        let deep = "[".repeat(MAX_DEPTH + 5);
        assert!(err(&deep).message.contains("nested deeper"));
    }

    fn arbitrary_json() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            any::<i64>().prop_map(Json::from),
            any::<u64>().prop_map(Json::from),
            any::<f64>()
                .prop_filter_map("finite", Number::from_f64)
                .prop_map(Json::Number),
            any::<String>().prop_map(Json::String),
            "[ -~'\"\\\\]{0,12}".prop_map(Json::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| Json::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            let _ = parse(&text);
        }

        #[test]
        fn literal_looking_text_never_panics(text in "[\\[\\]{}(),:'\"\\\\ xuUNr0-9.eE+_TrueFalsNn-]{0,40}") {
            let _ = parse(&text);
        }

        #[test]
        fn rendered_values_round_trip(value in arbitrary_json()) {
            let text = render(&value);
            prop_assert_eq!(parse(&text), Ok(value), "{}", text);
        }
    }
}
