//! Text from manifests made safe for a terminal (issue 12 item 5): names, messages and paths printed by
//! `ironlb status` and the other human-readable output go through [`printable`], so a manifest cannot move the
//! cursor, clear the screen, start a new line or reverse the text direction to forge output.

use std::borrow::Cow;

/// True for characters that must not reach a terminal raw: C0 and C1 controls (newline and tab included),
/// DEL, and Unicode's bidirectional formatting characters (LRM, RLM, ALM, LRE/RLE/PDF/LRO/RLO, LRI/RLI/FSI/PDI),
/// and the line and paragraph separators.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}'
        )
}

/// `s` with every unsafe character written as a `\u{…}` escape (borrowed when there is none).
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_and_bidi() {
        assert!(matches!(printable("default/lb-1"), Cow::Borrowed(_)));
        assert_eq!(printable("a\nb"), "a\\u{a}b");
        assert_eq!(printable("\u{1b}[2Jx"), "\\u{1b}[2Jx");
        assert_eq!(printable("x\u{202e}y"), "x\\u{202e}y");
        assert_eq!(printable("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(printable("é ü"), "é ü");
    }
}
