//! Text folding shared by column matching and duplicate detection.

/// Full-width forms (ＡＢＣ１２３，) and the ideographic space turned into their ASCII forms.
pub fn half_width(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{3000}' => ' ',
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .collect()
}

/// Half-width and lower case: the form two spellings of one word compare equal in.
pub fn fold(s: &str) -> String {
    half_width(s).to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_width_and_case() {
        assert_eq!(half_width("ＡＢＣ　１２３，"), "ABC 123,");
        assert_eq!(fold("Ｈｕａ Wei"), "hua wei");
        assert_eq!(fold("华为"), "华为");
    }
}
