//! Escaping file names (and text that carries them) for a terminal or a log.
//!
//! A file name may hold any byte but `/` and NUL: an ESC that starts a
//! terminal control sequence, a CR that rewinds the line, a newline that
//! forges a second report line (and splits a line the bashrc snippet hands
//! to `ewarn`), bytes that are not UTF-8. Every text line this tool prints
//! with a path goes through [`escape_bytes`] (or its wrappers), so such a
//! name is shown as `\x1b`, `\r`, `\n`, `\t`, `\xNN`, `\u{202e}` and a
//! backslash as `\\`, which keeps the output unambiguous. JSON output is left
//! to serde_json, which escapes control characters itself.
//!
//! Written here rather than taken from std: `str::escape_debug` also escapes
//! quotes and cannot show bytes that are not UTF-8, `ascii::escape_default`
//! escapes every non-ASCII letter (`café` would become unreadable).

use std::borrow::Cow;
use std::fmt::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// An error whose text is meant to span lines: a parser's excerpt of the
/// file with a caret under the mistake. The one-line form of an error
/// (`report::status::error_line`) keeps its line breaks and escapes the
/// rest, where any other newline, one in a path, is escaped so that no
/// text can forge a line of output.
#[derive(Debug)]
pub(crate) struct MultiLine(pub String);

impl std::fmt::Display for MultiLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MultiLine {}

/// `bytes` as printable text: control characters, Unicode direction
/// overrides and bytes that are not UTF-8 escaped, the rest unchanged.
pub(crate) fn escape_bytes(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        if !text.chars().any(needs_escape) {
            return Cow::Borrowed(text);
        }
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_char(&mut out, c);
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    Cow::Owned(out)
}

/// A path, escaped (its bytes as they are, not a lossy conversion).
pub(crate) fn escape_path(path: &Path) -> Cow<'_, str> {
    escape_bytes(path.as_os_str().as_bytes())
}

/// A text (a reason, an error message that may quote a path), escaped.
pub(crate) fn escape_text(text: &str) -> Cow<'_, str> {
    escape_bytes(text.as_bytes())
}

fn needs_escape(c: char) -> bool {
    c == '\\' || c.is_control() || is_direction_control(c)
}

/// Unicode format characters that reorder what follows them on screen
/// (a name can look like `exe.txt` but be `txt.exe`).
fn is_direction_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn push_char(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if c.is_control() && (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if c.is_control() || is_direction_control(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_controls_and_invalid_utf8() {
        assert_eq!(escape_bytes(b"/usr/bin/plain name"), "/usr/bin/plain name");
        assert!(matches!(
            escape_bytes(b"caf\xc3\xa9"),
            Cow::Borrowed("café")
        ));
        assert_eq!(
            escape_bytes(b"x\x1b[2K\rok   fake\nline\tz"),
            "x\\x1b[2K\\rok   fake\\nline\\tz"
        );
        assert_eq!(escape_bytes(b"a\xffb\x7f"), "a\\xffb\\x7f");
        assert_eq!(
            escape_bytes("\u{85}\u{202e}".as_bytes()),
            "\\u{85}\\u{202e}"
        );
        assert_eq!(escape_bytes(b"back\\slash"), "back\\\\slash");
        assert_eq!(escape_path(Path::new("/a\nb")), "/a\\nb");
        assert_eq!(escape_text("reason: /a\rb"), "reason: /a\\rb");
    }

    proptest! {
        /// Whatever the name, the escaped text holds no control character
        /// and is one line.
        #[test]
        fn output_is_always_printable(name in proptest::collection::vec(any::<u8>(), 0..64)) {
            let shown = escape_bytes(&name);
            prop_assert!(!shown.chars().any(|c| c.is_control() || is_direction_control(c)), "{shown:?}");
        }
    }
}
