//! Recovery of an Event Hub batch whose bodies array does not parse as a whole.
//!
//! The host hands the bodies over as one string holding a JSON array of strings. When one
//! element of that array is unreadable (seen in black-box testing: a lone UTF-16 surrogate
//! escape such as `\ud800`, which JSON parsers refuse), parsing the whole array fails, and the
//! batch used to become a single body while its metadata arrays counted hundreds of events.
//! Here the array is split element by element instead, so the counts stay per event: a readable
//! element is taken as it is, an unreadable one is read once more with its lone surrogates
//! replaced by U+FFFD (what the host's own UTF-8 decoding does with bytes it cannot read) and
//! is marked, so that the pipeline quarantines it with its raw text.

/// An element that could not be read as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Unreadable {
    /// The element exactly as it stood in the array (a JSON string literal, quotes included).
    pub raw: String,
    /// Why it could not be read.
    pub detail: String,
}

/// The bodies of a batch, and which of them (by index, ascending) could not be read as sent.
pub type Bodies = (Vec<String>, Vec<(usize, Unreadable)>);

/// The bodies of an array that did not parse as a whole, and which of them were unreadable.
/// `None` when `text` is not an array whose elements can be told apart.
pub fn recover_bodies(text: &str) -> Option<Bodies> {
    let mut bodies = Vec::new();
    let mut unreadable = Vec::new();
    for (i, span) in split_array(text)?.into_iter().enumerate() {
        match serde_json::from_str::<serde_json::Value>(span) {
            Ok(value) => bodies.push(body_text(value)),
            Err(e) => {
                let repaired = replace_lone_surrogates(span);
                let body = serde_json::from_str::<serde_json::Value>(&repaired)
                    .map(body_text)
                    .unwrap_or_else(|_| span.to_string());
                bodies.push(body);
                unreadable.push((
                    i,
                    Unreadable {
                        raw: span.to_string(),
                        detail: e.to_string(),
                    },
                ));
            }
        }
    }
    Some((bodies, unreadable))
}

/// A string element as its text, anything else as its JSON text (as the batch reads bodies).
fn body_text(value: serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

/// The raw text of each element of a top-level JSON array, found by its structure only
/// (strings, escapes, nesting), so that an element with a bad escape is still one element.
fn split_array(text: &str) -> Option<Vec<&str>> {
    let bytes = text.as_bytes();
    let mut i = skip_ws(bytes, 0);
    if bytes.get(i) != Some(&b'[') {
        return None;
    }
    i = skip_ws(bytes, i + 1);
    let mut spans = Vec::new();
    if bytes.get(i) == Some(&b']') {
        return (skip_ws(bytes, i + 1) == bytes.len()).then_some(spans);
    }
    loop {
        let start = i;
        let (mut depth, mut in_string) = (0usize, false);
        while i < bytes.len() {
            let b = bytes[i];
            if in_string {
                match b {
                    b'\\' => i += 1,
                    b'"' => in_string = false,
                    _ => {}
                }
            } else {
                match b {
                    b'"' => in_string = true,
                    b'[' | b'{' => depth += 1,
                    b']' | b'}' if depth > 0 => depth -= 1,
                    b',' | b']' if depth == 0 => break,
                    _ => {}
                }
            }
            i += 1;
        }
        let span = text.get(start..i.min(bytes.len()))?.trim_end();
        if span.is_empty() || in_string || depth != 0 {
            return None;
        }
        spans.push(span);
        match bytes.get(i) {
            Some(b',') => i = skip_ws(bytes, i + 1),
            Some(b']') => return (skip_ws(bytes, i + 1) == bytes.len()).then_some(spans),
            _ => return None,
        }
    }
}

fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
        i += 1;
    }
    i
}

/// `\uD800`–`\uDFFF` escapes that do not form a high–low pair become `\uFFFD`; everything else
/// (escaped backslashes included) is kept as it is.
pub fn replace_lone_surrogates(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        let Some(unit) = escape_unit(bytes, i) else {
            i += 2; // any other escape: skip the escaped character
            continue;
        };
        let high = (0xD800..0xDC00).contains(&unit);
        let low = (0xDC00..0xE000).contains(&unit);
        if high && escape_unit(bytes, i + 6).is_some_and(|next| (0xDC00..0xE000).contains(&next)) {
            i += 12; // a proper pair
            continue;
        }
        if high || low {
            out.push_str(&text[copied..i]);
            out.push_str("\\uFFFD");
            copied = i + 6;
        }
        i += 6;
    }
    out.push_str(&text[copied..]);
    out
}

/// The code unit of a `\uXXXX` escape starting at `at`, if there is one.
fn escape_unit(bytes: &[u8], at: usize) -> Option<u32> {
    if bytes.get(at) != Some(&b'\\') || bytes.get(at + 1) != Some(&b'u') {
        return None;
    }
    let hex = std::str::from_utf8(bytes.get(at + 2..at + 6)?).ok()?;
    u32::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lone_surrogates_are_replaced_and_pairs_kept() {
        assert_eq!(replace_lone_surrogates(r#""a\ud800b""#), r#""a\uFFFDb""#);
        assert_eq!(replace_lone_surrogates(r#""\udc00""#), r#""\uFFFD""#);
        assert_eq!(replace_lone_surrogates(r#""\ud83d\ude00""#), r#""\ud83d\ude00""#);
        // A high surrogate followed by another high one: both lone.
        assert_eq!(replace_lone_surrogates(r#""\ud800\ud800""#), r#""\uFFFD\uFFFD""#);
        // An escaped backslash before `ud800` is text, not an escape.
        assert_eq!(replace_lone_surrogates(r#""\\ud800""#), r#""\\ud800""#);
        assert_eq!(replace_lone_surrogates(r#""é\u00e9""#), r#""é\u00e9""#);
    }

    #[test]
    fn an_array_with_one_bad_element_is_split_per_element() {
        let text = r#"["{\"a\":1}", "bad \ud800 here", 7, {"k": [1, "]"]}, "{\"a\":2}"]"#;
        let (bodies, unreadable) = recover_bodies(text).expect("recovered");
        assert_eq!(
            bodies,
            ["{\"a\":1}", "bad \u{fffd} here", "7", "{\"k\":[1,\"]\"]}", "{\"a\":2}"]
        );
        assert_eq!(unreadable.len(), 1);
        assert_eq!(unreadable[0].0, 1);
        assert_eq!(unreadable[0].1.raw, r#""bad \ud800 here""#);
        assert!(!unreadable[0].1.detail.is_empty(), "the parser's reason is kept");
    }

    #[test]
    fn what_is_no_array_is_not_recovered() {
        for text in ["", "{}", "[", "[\"a\"", "[\"a\",]", "[\"a\"] x", "not json", "[1 2]x"] {
            assert_eq!(recover_bodies(text), None, "{text:?}");
        }
        assert_eq!(recover_bodies(" [ ] "), Some((vec![], vec![])));
    }
}
