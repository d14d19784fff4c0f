//! Text from SkyPilot (cluster names, users, error messages) on its way to a person's
//! terminal: control characters and bidi overrides are shown escaped, never obeyed, so
//! a name cannot retitle or clear a terminal or forge table rows.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether a terminal would obey `c` rather than show it: control characters and the
/// bidi controls.
pub(crate) fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

/// `s` with every control character and bidi control written as an escape (`\x1b`,
/// `\n`, `\u{202e}`); borrowed when there is none.
pub(crate) fn clean(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_a_terminal_would_obey() {
        assert!(matches!(clean("plain-name_1"), Cow::Borrowed(_)));
        assert_eq!(clean("a\x1b]0;pwned\x07b"), "a\\x1b]0;pwned\\x07b");
        assert_eq!(clean("row\nUP fake"), "row\\nUP fake");
        assert_eq!(clean("x\ry"), "x\\ry");
        assert_eq!(clean("evil\u{202e}txt"), "evil\\u{202e}txt");
        assert_eq!(clean("\u{9b}31m"), "\\x9b31m");
        assert_eq!(clean("ünïcode ok"), "ünïcode ok");
    }
}
