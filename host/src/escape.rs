//! Text a guest controls, made safe to print for people: on a terminal, in a log file
//! read line by line.
//!
//! A panic message, an application error or a log line can hold newlines (a forged
//! second line), terminal escape sequences (a changed window title, a hidden line) or
//! bidirectional overrides (text that reads differently than it is). [`printable`]
//! writes each such character as an escape (`\n`, `\u{1b}`), so one guest string is
//! one visible line. JSON output needs none of this: serde escapes it.

use std::borrow::Cow;

/// `text` with control characters, newlines and bidirectional controls escaped.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unsafe_char(c) => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_guest_string_is_one_visible_line() {
        assert!(matches!(printable("plain text, ünïcode"), Cow::Borrowed(_)));
        assert_eq!(
            printable("boom\n     1.0s  root   supervisor gave up"),
            "boom\\n     1.0s  root   supervisor gave up"
        );
        assert_eq!(printable("\x1b]0;owned\x07title"), "\\u{1b}]0;owned\\u{7}title");
        assert_eq!(printable("a\tb\rc\u{202e}d\u{85}"), "a\\tb\\rc\\u{202e}d\\u{85}");
    }
}
