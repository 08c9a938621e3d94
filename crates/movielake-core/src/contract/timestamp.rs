//! Timestamps as sources write them: RFC 3339, or a date and time without an offset (read as
//! UTC), as the Functions host sends enqueue times (`2024-05-01T10:00:00.5`).
//!
//! Every event carries two (its enqueue time and its `occurred_at`). chrono's general parsers
//! cost a failed RFC 3339 attempt and a format-string walk per naive time; the usual shape is
//! read here byte by byte instead, and anything else goes the general way. A property test holds
//! both to the same result on the canonical shape and on strings near it.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, Utc};

pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    canonical(text.as_bytes()).or_else(|| general(text))
}

fn general(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .map(|naive| naive.and_utc())
}

/// `YYYY-MM-DD(T| )HH:MM:SS(.f{1,9})?` then nothing, or with `T`, `Z` or `±HH:MM`. `None` when
/// the text has another shape or a field out of range: the general path then decides (and says
/// no to what is invalid), so this path never answers differently, only sooner.
fn canonical(b: &[u8]) -> Option<DateTime<Utc>> {
    fn number(digits: &[u8]) -> Option<u32> {
        digits
            .iter()
            .try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    }
    let head = b.get(..19)?;
    let sep = head[10];
    if head[4] != b'-' || head[7] != b'-' || head[13] != b':' || head[16] != b':' || !matches!(sep, b'T' | b' ') {
        return None;
    }
    let year = number(&head[0..4])?;
    let (month, day) = (number(&head[5..7])?, number(&head[8..10])?);
    let (hour, minute, second) = (number(&head[11..13])?, number(&head[14..16])?, number(&head[17..19])?);
    // Leap seconds and far years: rare, and where parsers differ most; the general path decides.
    if !(1900..=2999).contains(&year) || second > 59 {
        return None;
    }
    let mut rest = &b[19..];
    let mut nanos = 0;
    if let [b'.', fraction @ ..] = rest {
        let n = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&n) {
            return None;
        }
        nanos = number(&fraction[..n])? * 10u32.pow(9 - n as u32);
        rest = &fraction[n..];
    }
    let offset_minutes = match rest {
        [] => 0,
        [b'Z'] if sep == b'T' => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] if sep == b'T' => {
            let (h, m) = (number(&[*h1, *h2])?, number(&[*m1, *m2])?);
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = i64::from(h * 60 + m);
            if *sign == b'-' { -minutes } else { minutes }
        }
        _ => return None,
    };
    let date = NaiveDate::from_ymd_opt(year as i32, month, day)?;
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
    let utc = NaiveDateTime::new(date, time).checked_sub_signed(Duration::minutes(offset_minutes))?;
    Some(utc.and_utc())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_shapes_sources_send() {
        let millis = |s: &str| parse_timestamp(s).map(|t| t.timestamp_millis());
        let at = Some(1_714_557_600_500);
        assert_eq!(millis("2024-05-01T10:00:00.5"), at);
        assert_eq!(millis("2024-05-01 10:00:00.500"), at);
        assert_eq!(millis("2024-05-01T10:00:00.5Z"), at);
        assert_eq!(millis("2024-05-01T12:30:00.500+02:30"), at);
        assert_eq!(millis("2024-05-01T07:00:00.500-03:00"), at);
        assert!(canonical(b"2024-05-01T10:00:00.5").is_some());
        for bad in [
            "2024-02-30T10:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01",
            "2024-05-01T10:00:00.Z",
            "",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    /// Strings on and around the canonical shape: every field drawn wide of its range, any
    /// separator, fraction length and suffix, and some characters replaced.
    fn near_canonical() -> impl Strategy<Value = String> {
        let field = |max: u32, width: usize| (0..=max).prop_map(move |n| format!("{n:0width$}"));
        (
            (
                field(3100, 4),
                field(13, 2),
                field(32, 2),
                field(25, 2),
                field(61, 2),
                field(61, 2),
            ),
            prop_oneof![Just('T'), Just(' '), Just('t'), Just('x')],
            prop_oneof![Just(String::new()), "\\.[0-9]{0,11}"],
            prop_oneof![
                Just(String::new()),
                Just("Z".to_string()),
                Just("z".to_string()),
                "[+-][0-9]{2}:[0-9]{2}",
                "[+-][0-9]{4}",
                ".{1,3}",
            ],
            proptest::option::of((0usize..30, proptest::char::any())),
        )
            .prop_map(|((y, mo, d, h, mi, s), sep, fraction, suffix, swap)| {
                let text = format!("{y}-{mo}-{d}{sep}{h}:{mi}:{s}{fraction}{suffix}");
                match swap {
                    Some((at, c)) if at < text.len() && text.is_char_boundary(at) => {
                        let mut chars: Vec<char> = text.chars().collect();
                        let index = text[..at].chars().count();
                        chars[index] = c;
                        chars.into_iter().collect()
                    }
                    _ => text,
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]
        #[test]
        fn the_fast_path_answers_as_the_general_one(text in near_canonical()) {
            if let Some(fast) = canonical(text.as_bytes()) {
                prop_assert_eq!(Some(fast), general(&text), "{}", text);
            }
        }
    }
}
