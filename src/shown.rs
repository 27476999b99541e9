//! Text from outside — a server's messages and data, names in a file — made safe to show
//! people on a terminal or in a CI log: control characters (ANSI/OSC escapes, BEL,
//! backspace, CR, newlines, C1 controls) and invisible characters (zero-width, bidi
//! overrides, U+FEFF) are shown escaped as `\n`, `\r` or `\u{1b}`, so they cannot move the
//! cursor, recolour or retitle the terminal, hide text or start a line of their own; and
//! CI workflow-command markers (`::` at the start of a line, `##[` anywhere) are defused by
//! escaping their first character.
//!
//! Human outputs pass what they print through [`escape`]: the progress lines and the live
//! display, log lines, console messages, annotations and the step summary.
//!
//! Must not: mask secrets (`secrets` does, before this), or touch machine outputs (JSON
//! already escapes control characters; the report and `$GITHUB_OUTPUT` keep data as is).

use std::borrow::Cow;

/// Characters that show nothing, or reorder what is shown around them, but are not control
/// characters: zero-width spaces and joiners, bidi marks and overrides, the byte-order mark,
/// invisible separators and fillers, the line and paragraph separators, and the
/// noncharacters U+FFFE and U+FFFF.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{34f}'
            | '\u{61c}'
            | '\u{115f}'..='\u{1160}'
            | '\u{17b4}'..='\u{17b5}'
            | '\u{180b}'..='\u{180f}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{3164}'
            | '\u{feff}'
            | '\u{ffa0}'
            | '\u{fff0}'..='\u{fffb}'
            | '\u{fffe}'..='\u{ffff}'
            | '\u{e0000}'..='\u{e007f}'
    )
}

/// A character a person would not see as itself: shown escaped. Tabs are left alone.
fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\t') || is_invisible(c)
}

/// `text` as one safe line: control and invisible characters escaped, `##[` and a leading
/// `::` defused. Borrowed (no copy) when there is nothing to change.
pub fn escape(text: &str) -> Cow<'_, str> {
    let leading_colons = text.trim_start().starts_with("::");
    if !leading_colons && !text.contains("##") && !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    if leading_colons {
        let spaces = text.len() - text.trim_start().len();
        out.push_str(&text[..spaces]);
        out.push_str("\\u{3a}");
        rest = &text[spaces + 1..];
    }
    for (i, c) in rest.char_indices() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            // `##[command]` and `##vso[command]` are read anywhere in a line by some runners.
            '#' if rest[i..].starts_with("##[") || rest[i..].starts_with("##vso[") => {
                out.push_str("\\u{23}");
            }
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn controls_and_invisibles_are_shown_escaped() {
        assert_eq!(escape("plain text"), "plain text");
        assert!(matches!(escape("plain"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(
            escape("a\x1b[2J\x07b\x08c\rd\ne\u{9b}f"),
            "a\\u{1b}[2J\\u{7}b\\u{8}c\\rd\\ne\\u{9b}f"
        );
        assert_eq!(escape("a\u{feff}b\u{202e}c"), "a\\u{feff}b\\u{202e}c");
        assert_eq!(escape("tab\tkept"), "tab\tkept");
        assert_eq!(escape("é ✔ 日本"), "é ✔ 日本");
    }

    #[test]
    fn workflow_command_markers_are_defused() {
        assert_eq!(escape("::error ::forged"), "\\u{3a}:error ::forged");
        assert_eq!(escape("  ::add-mask::x"), "  \\u{3a}:add-mask::x");
        assert_eq!(escape("x ::error ::y"), "x ::error ::y");
        assert_eq!(escape("a ##[error]b"), "a \\u{23}#[error]b");
        assert_eq!(escape("##vso[task]"), "\\u{23}#vso[task]");
        assert_eq!(escape("issue #12 ## ok"), "issue #12 ## ok");
        assert_eq!(
            escape("x\n::error ::forged"),
            "x\\n::error ::forged",
            "a newline is escaped, so no line starts inside the text"
        );
    }
}
