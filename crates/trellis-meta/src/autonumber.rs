//! Autonumber formats: `C-{YYYY}-{seq:5}` → `C-2026-00042`.

use chrono::{Datelike, NaiveDate};

/// One piece of a parsed format.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Year4,
    Year2,
    Month,
    Day,
    Seq(usize),
}

/// A parsed autonumber format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    parts: Vec<Part>,
}

impl Format {
    /// Parse a format; exactly one `{seq:N}` (N in 1..=12) is required.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        let mut seqs = 0;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("unclosed '{{' in {s:?}"))?;
            let token = &after[..close];
            parts.push(match token {
                "YYYY" => Part::Year4,
                "YY" => Part::Year2,
                "MM" => Part::Month,
                "DD" => Part::Day,
                t if t.starts_with("seq") => {
                    seqs += 1;
                    let width = match t.strip_prefix("seq:") {
                        Some(n) => n
                            .parse::<usize>()
                            .map_err(|_| format!("bad width in {{{t}}}"))?,
                        None if t == "seq" => 1,
                        None => return Err(format!("unknown placeholder {{{t}}}")),
                    };
                    if !(1..=12).contains(&width) {
                        return Err(format!("sequence width must be 1 to 12, got {width}"));
                    }
                    Part::Seq(width)
                }
                t => {
                    return Err(format!(
                        "unknown placeholder {{{t}}}; use YYYY, YY, MM, DD or seq:N"
                    ));
                }
            });
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("unmatched '}}' in {s:?}"));
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        if seqs != 1 {
            return Err("the format needs exactly one {seq:N}".to_owned());
        }
        Ok(Self { parts })
    }

    /// The sequence scope on `date`: the format with the sequence left out, so the
    /// counter restarts whenever a date part changes (each year for `{YYYY}`).
    pub fn scope(&self, date: NaiveDate) -> String {
        self.render_with(date, None)
    }

    /// The number for sequence value `seq` on `date`.
    pub fn render(&self, date: NaiveDate, seq: u64) -> String {
        self.render_with(date, Some(seq))
    }

    fn render_with(&self, date: NaiveDate, seq: Option<u64>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Year4 => out.push_str(&format!("{:04}", date.year())),
                Part::Year2 => out.push_str(&format!("{:02}", date.year().rem_euclid(100))),
                Part::Month => out.push_str(&format!("{:02}", date.month())),
                Part::Day => out.push_str(&format!("{:02}", date.day())),
                Part::Seq(w) => match seq {
                    Some(n) => out.push_str(&format!("{n:0w$}", w = *w)),
                    None => out.push_str("{seq}"),
                },
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn renders_dates_and_padded_sequence() {
        let f = Format::parse("C-{YYYY}-{seq:5}").unwrap();
        let d = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        assert_eq!(f.render(d, 42), "C-2026-00042");
        assert_eq!(f.scope(d), "C-2026-{seq}");
        let g = Format::parse("SO-{YY}{MM}{DD}-{seq:3}").unwrap();
        assert_eq!(g.render(d, 7), "SO-261122-007");
        assert_eq!(g.render(d, 12345), "SO-261122-12345");
    }

    #[test]
    fn rejects_bad_formats() {
        assert!(Format::parse("C-{YYYY}").is_err());
        assert!(Format::parse("{seq:3}{seq:2}").is_err());
        assert!(Format::parse("{seq:0}").is_err());
        assert!(Format::parse("{XX}{seq:2}").is_err());
        assert!(Format::parse("{seq:2").is_err());
    }
}
