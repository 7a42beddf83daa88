//! Cell text to the values form fields expect. Lenient: people type numbers and dates in
//! many ways, and a spreadsheet export adds its own.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::Number;
use trellis_meta::text::{fold, half_width};

/// Currency marks stripped before or after a number.
const CURRENCY_SYMBOLS: [char; 5] = ['¥', '￥', '$', '€', '£'];
/// Currency words stripped before or after a number (ASCII, any case).
const CURRENCY_WORDS: [&str; 3] = ["CNY", "RMB", "USD"];

/// A number: "1,234.50", "¥1,234", "(1,234.50)", "50万", "1.2亿", "1.5e3", full-width digits.
pub fn number(s: &str) -> Option<Number> {
    let text = half_width(s);
    let mut t = text.trim();
    let mut negative = false;
    let mut signed = false;
    // Accounting style: parentheses mean negative.
    if let Some(inner) = t.strip_prefix('(').and_then(|x| x.strip_suffix(')')) {
        negative = true;
        signed = true;
        t = inner.trim();
    }
    // Sign and currency come in either order: "-¥5", "¥-5", "5元".
    loop {
        let before = t;
        t = strip_currency(t);
        if !signed {
            if let Some(rest) = t.strip_prefix('-') {
                negative = true;
                signed = true;
                t = rest.trim_start();
            } else if let Some(rest) = t.strip_prefix('+') {
                signed = true;
                t = rest.trim_start();
            }
        }
        if t == before {
            break;
        }
    }
    let mut exponent: i64 = 0;
    if let Some(rest) = t.strip_suffix('万') {
        exponent = 4;
        t = rest.trim_end();
    } else if let Some(rest) = t.strip_suffix('亿') {
        exponent = 8;
        t = rest.trim_end();
    }
    let (digits, frac_len, exp) = parse_plain(t)?;
    decimal_to_number(negative, &digits, exponent + exp - frac_len as i64)
}

/// Strip currency marks and words from both ends, repeatedly.
fn strip_currency(mut t: &str) -> &str {
    loop {
        let before = t;
        t = t.trim();
        t = t.trim_start_matches(CURRENCY_SYMBOLS);
        t = t.trim_end_matches(CURRENCY_SYMBOLS);
        t = t.strip_suffix('元').unwrap_or(t);
        for word in CURRENCY_WORDS {
            if t.get(..word.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(word))
            {
                t = &t[word.len()..];
            }
            if let Some(at) = t.len().checked_sub(word.len())
                && t.get(at..).is_some_and(|p| p.eq_ignore_ascii_case(word))
            {
                t = &t[..at];
            }
        }
        t = t.trim();
        if t == before {
            return t;
        }
    }
}

/// Characters accepted as thousands separators between digits.
fn is_group_separator(c: char) -> bool {
    matches!(
        c,
        ',' | '\'' | '_' | ' ' | '\u{00A0}' | '\u{2009}' | '\u{202F}' | '\u{2019}'
    )
}

/// Parse `digits[.digits][e[+-]digits]` with separators between digits; returns the
/// digits, how many of them follow the point, and the exponent.
fn parse_plain(t: &str) -> Option<(String, usize, i64)> {
    let chars: Vec<char> = t.chars().collect();
    let mut digits = String::new();
    let mut frac_len = 0usize;
    let mut point = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() {
            digits.push(c);
            if point {
                frac_len += 1;
            }
        } else if c == '.' && !point {
            point = true;
        } else if is_group_separator(c) {
            let prev_digit = i > 0 && chars[i - 1].is_ascii_digit();
            let next_digit = chars.get(i + 1).is_some_and(char::is_ascii_digit);
            // "1.234,5" is a European decimal comma: refuse rather than misread it.
            if point || !prev_digit || !next_digit {
                return None;
            }
        } else {
            break;
        }
        i += 1;
    }
    if digits.is_empty() {
        return None;
    }
    let mut exp = 0i64;
    if i < chars.len() {
        if !matches!(chars[i], 'e' | 'E') {
            return None;
        }
        i += 1;
        let mut exp_negative = false;
        match chars.get(i) {
            Some('-') => {
                exp_negative = true;
                i += 1;
            }
            Some('+') => i += 1,
            _ => {}
        }
        let exp_digits: String = chars[i..].iter().collect();
        if exp_digits.is_empty()
            || exp_digits.len() > 6
            || !exp_digits.chars().all(|c| c.is_ascii_digit())
        {
            return None;
        }
        exp = exp_digits.parse().ok()?;
        if exp_negative {
            exp = -exp;
        }
    }
    Some((digits, frac_len, exp))
}

/// `digits × 10^scale` as an integer when whole and within i64, else as f64.
fn decimal_to_number(negative: bool, digits: &str, scale: i64) -> Option<Number> {
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Some(Number::from(0));
    }
    let significant = digits.trim_end_matches('0');
    let scale = scale + (digits.len() - significant.len()) as i64;
    if scale >= 0 && significant.len() as i64 + scale <= 19 {
        let mut v: i128 = significant.parse().ok()?;
        for _ in 0..scale {
            v *= 10;
        }
        if negative {
            v = -v;
        }
        if let Ok(i) = i64::try_from(v) {
            return Some(Number::from(i));
        }
    }
    let sign = if negative { "-" } else { "" };
    let f: f64 = format!("{sign}{significant}e{scale}").parse().ok()?;
    Number::from_f64(f)
}

/// A whole number (via [`number`], so "1,000" and "5万" work).
pub fn integer(s: &str) -> Option<i64> {
    number(s)?.as_i64()
}

/// Yes or no in English, Chinese and checkmarks.
pub fn boolean(s: &str) -> Option<bool> {
    match fold(s.trim()).as_str() {
        "true" | "yes" | "y" | "t" | "1" | "on" | "是" | "对" | "真" | "有" | "√" | "✓" | "✔" => {
            Some(true)
        }
        "false" | "no" | "n" | "f" | "0" | "off" | "否" | "错" | "假" | "无" | "×" | "✗" | "✘" => {
            Some(false)
        }
        _ => None,
    }
}

/// A calendar date: "2024-03-05", "2024/3/5", "2024.3.5", "2024年3月5日", "20240305", or
/// any datetime form (its written date). Day-first or month-first forms are ambiguous
/// and refused.
pub fn date(s: &str) -> Option<NaiveDate> {
    let text = half_width(s);
    let (date, rest, chinese) = date_prefix(text.trim())?;
    if !rest.trim().is_empty() {
        time_suffix(rest, chinese)?;
    }
    Some(date)
}

/// An instant: RFC 3339 with an offset, or a naive date and time read in `tz` (a date
/// alone is midnight). A time skipped by a DST change is refused; a repeated one is the
/// earlier instant.
pub fn datetime(s: &str, tz: Tz) -> Option<DateTime<Utc>> {
    let text = half_width(s);
    let (date, rest, chinese) = date_prefix(text.trim())?;
    let (time, offset) = if rest.trim().is_empty() {
        (NaiveTime::MIN, None)
    } else {
        time_suffix(rest, chinese)?
    };
    let naive = date.and_time(time);
    match offset {
        Some(offset) => offset
            .from_local_datetime(&naive)
            .single()
            .map(|d| d.with_timezone(&Utc)),
        None => tz
            .from_local_datetime(&naive)
            .earliest()
            .map(|d| d.with_timezone(&Utc)),
    }
}

/// Split off `n` leading ASCII digits, `min..=max` of them.
fn take_digits(s: &str, min: usize, max: usize) -> Option<(u32, &str)> {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    if n < min || n > max {
        return None;
    }
    Some((s[..n].parse().ok()?, &s[n..]))
}

/// A leading date; returns it, the rest, and whether it was written the Chinese way.
fn date_prefix(s: &str) -> Option<(NaiveDate, &str, bool)> {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    if n == 8 {
        let (y, m, d) = (
            s[..4].parse().ok()?,
            s[4..6].parse().ok()?,
            s[6..8].parse().ok()?,
        );
        return Some((NaiveDate::from_ymd_opt(y, m, d)?, &s[8..], false));
    }
    let (year, rest) = take_digits(s, 4, 4)?;
    let sep = rest.chars().next()?;
    let rest = &rest[sep.len_utf8()..];
    let (month_end, day_end) = match sep {
        '-' | '/' | '.' => (sep, None),
        '年' => ('月', Some(['日', '号'])),
        _ => return None,
    };
    let (month, rest) = take_digits(rest, 1, 2)?;
    let rest = rest.strip_prefix(month_end)?;
    let (day, mut rest) = take_digits(rest, 1, 2)?;
    if let Some(ends) = day_end {
        rest = rest.strip_prefix(ends).unwrap_or(rest);
    }
    let date = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?;
    Some((date, rest, day_end.is_some()))
}

/// A time after a date: "14:30", "T14:30:15.5Z", "14时30分", "14点30分05秒", with an
/// optional offset.
fn time_suffix(s: &str, chinese: bool) -> Option<(NaiveTime, Option<FixedOffset>)> {
    let t = if let Some(rest) = s.strip_prefix(['T', 't']) {
        rest
    } else {
        let trimmed = s.trim_start();
        // Only the Chinese form may run date and time together ("5日14点").
        if trimmed.len() == s.len() && !chinese {
            return None;
        }
        trimmed
    };
    let (hour, rest) = take_digits(t, 1, 2)?;
    let (minute, second, nanos, rest) = if let Some(rest) = rest.strip_prefix(':') {
        let (minute, rest) = take_digits(rest, 2, 2)?;
        if let Some(rest) = rest.strip_prefix(':') {
            let (second, rest) = take_digits(rest, 2, 2)?;
            let (nanos, rest) = fraction(rest)?;
            (minute, second, nanos, rest)
        } else {
            (minute, 0, 0, rest)
        }
    } else if let Some(rest) = rest.strip_prefix(['时', '点']) {
        let (minute, rest) = take_digits(rest, 1, 2)?;
        let rest = rest.strip_prefix('分').unwrap_or(rest);
        match take_digits(rest, 1, 2) {
            Some((second, rest)) => (minute, second, 0, rest.strip_prefix('秒')?),
            None => (minute, 0, 0, rest),
        }
    } else {
        return None;
    };
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
    let offset = parse_offset(rest.trim())?;
    Some((time, offset))
}

/// Fractional seconds after `.` or `,`, as nanoseconds.
fn fraction(s: &str) -> Option<(u32, &str)> {
    let Some(rest) = s.strip_prefix(['.', ',']) else {
        return Some((0, s));
    };
    let n = rest.bytes().take_while(u8::is_ascii_digit).count();
    if n == 0 {
        return None;
    }
    // Digits past nanoseconds are dropped, not rounded.
    let mut nanos = 0u32;
    for (i, b) in rest.bytes().take(n).enumerate() {
        if i < 9 {
            nanos = nanos * 10 + u32::from(b - b'0');
        }
    }
    for _ in n..9 {
        nanos *= 10;
    }
    Some((nanos, &rest[n..]))
}

/// The offset at the end: none, "Z", "+08:00", "+0800" or "+08". `None` when malformed.
fn parse_offset(s: &str) -> Option<Option<FixedOffset>> {
    if s.is_empty() {
        return Some(None);
    }
    if s.eq_ignore_ascii_case("z") {
        return Some(FixedOffset::east_opt(0));
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let two = |t: &str| -> Option<u32> {
        (t.len() == 2 && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let (hours, minutes) = match rest.len() {
        2 => (two(rest)?, 0),
        4 => (two(rest.get(..2)?)?, two(rest.get(2..)?)?),
        5 if rest.as_bytes()[2] == b':' => (two(rest.get(..2)?)?, two(rest.get(3..)?)?),
        _ => return None,
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    let seconds = i32::try_from(hours * 3600 + minutes * 60).ok()?;
    Some(Some(FixedOffset::east_opt(sign * seconds)?))
}

/// The values of a multi-value cell: split on , ， ; ； 、 | and line breaks, trimmed.
pub fn split_list(s: &str) -> Vec<String> {
    s.split([',', '，', ';', '；', '、', '|', '\n', '\r'])
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::{NaiveDateTime, Timelike};

    fn n(s: &str) -> Option<String> {
        number(s).map(|v| v.to_string())
    }

    #[test]
    fn numbers_in_many_spellings() {
        assert_eq!(n("1234"), Some("1234".into()));
        assert_eq!(n("  1,234.50 "), Some("1234.5".into()));
        assert_eq!(n("1,234"), Some("1234".into()));
        assert_eq!(n("1，234"), Some("1234".into()));
        assert_eq!(n("1'234'567"), Some("1234567".into()));
        assert_eq!(n("1_000"), Some("1000".into()));
        assert_eq!(n("1 234 567"), Some("1234567".into()));
        assert_eq!(n("1,2,3"), Some("123".into()));
        assert_eq!(n("１２３．５"), Some("123.5".into()));
        assert_eq!(n("¥1,234"), Some("1234".into()));
        assert_eq!(n("￥1,234.00"), Some("1234".into()));
        assert_eq!(n("$ 99.90"), Some("99.9".into()));
        assert_eq!(n("€5"), Some("5".into()));
        assert_eq!(n("£5"), Some("5".into()));
        assert_eq!(n("100元"), Some("100".into()));
        assert_eq!(n("CNY 100"), Some("100".into()));
        assert_eq!(n("100 rmb"), Some("100".into()));
        assert_eq!(n("USD100"), Some("100".into()));
        assert_eq!(n("-¥1,234"), Some("-1234".into()));
        assert_eq!(n("¥-1,234"), Some("-1234".into()));
        assert_eq!(n("(1,234.50)"), Some("-1234.5".into()));
        assert_eq!(n("（1,234.50）"), Some("-1234.5".into()));
        assert_eq!(n("+5"), Some("5".into()));
        assert_eq!(n("-0"), Some("0".into()));
        assert_eq!(n("50万"), Some("500000".into()));
        assert_eq!(n("50万元"), Some("500000".into()));
        assert_eq!(n("1.2亿"), Some("120000000".into()));
        assert_eq!(n("1.23456万"), Some("12345.6".into()));
        assert_eq!(n("1.5e3"), Some("1500".into()));
        assert_eq!(n("1.5E-3"), Some("0.0015".into()));
        assert_eq!(n("2.0"), Some("2".into()));
        assert_eq!(n(".5"), Some("0.5".into()));
        assert_eq!(n("9223372036854775807"), Some("9223372036854775807".into()));
        assert_eq!(
            n("-9223372036854775808"),
            Some("-9223372036854775808".into())
        );
        // Beyond i64: a float.
        assert_eq!(number("9223372036854775808").unwrap().as_i64(), None);
        assert!(number("1e20").unwrap().is_f64());
        assert!(number("1234").unwrap().is_i64());
        assert!(number("1.5").unwrap().is_f64());
    }

    #[test]
    fn numbers_refused() {
        for bad in [
            "", " ", "abc", "1.2.3", "1.234,5", ",123", "123,", "1,,2", "--5", "-", "e5", "1e",
            "1e5e5", "inf", "NaN", "12%", "1e999999", "5 apples", "¥", "万", "0x10", "1-2",
        ] {
            assert_eq!(number(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn integers() {
        assert_eq!(integer("1,000"), Some(1000));
        assert_eq!(integer("3万"), Some(30000));
        assert_eq!(integer("2.0"), Some(2));
        assert_eq!(integer("2.5"), None);
        assert_eq!(integer("x"), None);
    }

    #[test]
    fn booleans() {
        for t in [
            "true",
            "TRUE",
            "Yes",
            "y",
            "T",
            "1",
            "on",
            "是",
            "对",
            "真",
            "有",
            "√",
            "✓",
            "✔",
            " ｙｅｓ ",
        ] {
            assert_eq!(boolean(t), Some(true), "{t}");
        }
        for f in [
            "false", "No", "N", "f", "0", "OFF", "否", "错", "假", "无", "×", "✗", "✘",
        ] {
            assert_eq!(boolean(f), Some(false), "{f}");
        }
        for x in ["", "2", "maybe", "是的"] {
            assert_eq!(boolean(x), None, "{x}");
        }
    }

    fn d(y: i32, m: u32, day: u32) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(y, m, day)
    }

    #[test]
    fn dates() {
        for s in [
            "2024-03-05",
            "2024-3-5",
            "2024/03/05",
            "2024/3/5",
            "2024.3.5",
            "2024年3月5日",
            "2024年03月05号",
            "2024年3月5",
            "20240305",
            " ２０２４－０３－０５ ",
            "2024-03-05 14:30",
            "2024-03-05T14:30:15",
            "2024-03-05T23:30:15+08:00",
            "2024-03-05T23:30:15Z",
            "2024/3/5 14:30",
            "2024年3月5日 14时30分",
            "2024年3月5日14点30分",
        ] {
            assert_eq!(date(s), d(2024, 3, 5), "{s}");
        }
        for s in [
            "2024-02-30",
            "2023-02-29",
            "2024-13-01",
            "05/03/2024",
            "03/05/2024",
            "2024-03",
            "2024-03-05x",
            "2024-03-0514:30",
            "2024-03/05",
            "2024-003-05",
            "202403051",
            "2024-03-05 25:00",
            "",
        ] {
            assert_eq!(date(s), None, "{s}");
        }
        assert_eq!(date("2024-02-29"), d(2024, 2, 29));
    }

    fn utc(s: &str) -> DateTime<Utc> {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
            .unwrap()
            .and_utc()
    }

    #[test]
    fn datetimes() {
        let sh = chrono_tz::Asia::Shanghai;
        let expect = Some(utc("2024-03-05 06:30:00"));
        for s in [
            "2024-03-05 14:30",
            "2024-03-05 14:30:00",
            "2024-03-05T14:30:00",
            "2024/3/5 14:30",
            "2024年3月5日 14:30",
            "2024年3月5日 14时30分",
            "2024年3月5日14点30分",
            "2024-03-05T06:30:00Z",
            "2024-03-05T07:30:00+01:00",
            "2024-03-05T01:30:00-05:00",
            "2024-03-05T14:30:00+0800",
        ] {
            assert_eq!(datetime(s, sh), expect, "{s}");
        }
        assert_eq!(datetime("2024-03-05", sh), Some(utc("2024-03-04 16:00:00")));
        assert_eq!(
            datetime("2024-03-05 14:30:15", sh),
            Some(utc("2024-03-05 06:30:15"))
        );
        assert_eq!(
            datetime("2024年3月5日14点30分15秒", sh),
            Some(utc("2024-03-05 06:30:15"))
        );
        let frac = datetime("2024-03-05 14:30:15.250", sh).unwrap();
        assert_eq!(frac.nanosecond(), 250_000_000);
        // The offset wins over the zone.
        assert_eq!(
            datetime("2024-03-05T14:30:00Z", chrono_tz::America::New_York),
            Some(utc("2024-03-05 14:30:00"))
        );
        // New York skips 02:00-03:00 on 2024-03-10 and repeats 01:00-02:00 on 2024-11-03.
        let ny = chrono_tz::America::New_York;
        assert_eq!(datetime("2024-03-10 02:30", ny), None);
        assert_eq!(
            datetime("2024-11-03 01:30", ny),
            Some(utc("2024-11-03 05:30:00"))
        );
        for bad in [
            "2024-03-05 14",
            "2024-03-05 14:3",
            "2024-03-05 24:00",
            "2024-03-05 14:30 +25:00",
            "14:30",
            "2024-02-30 10:00",
        ] {
            assert_eq!(datetime(bad, sh), None, "{bad}");
        }
    }

    #[test]
    fn lists() {
        assert_eq!(
            split_list(" a, b，c;d；e、f|g\nh\r\n , "),
            ["a", "b", "c", "d", "e", "f", "g", "h"]
        );
        assert!(split_list("  ").is_empty());
    }
}
