//! IMA's measurement list in its text form,
//! `/sys/kernel/security/ima/ascii_runtime_measurements`.
//!
//! One line per measurement: the PCR, the template hash (SHA-1 in
//! `ascii_runtime_measurements`, the bank's algorithm in the
//! `ascii_runtime_measurements_<algo>` files), the template's name, then
//! the template's fields (Documentation/security/IMA-templates.rst):
//!
//! ```text
//! 10 <template-hash> ima     <sha1-hex> <path>
//! 10 <template-hash> ima-ng  sha256:<hex> <path>
//! 10 <template-hash> ima-sig sha256:<hex> <path> <security.ima hex, may be empty>
//! ```
//!
//! The kernel prints the path as it is (`ima_show_template_data_ascii`, `%s`):
//! a path may hold spaces, so `ima-ng` takes all the rest of the line, and
//! `ima-sig` splits at the last space (the kernel always writes that space,
//! also before an empty signature: `boot_aggregate ` ends with one). A path
//! holding a newline breaks its line in two; the pieces are reported. A
//! template hash of zeros is a violation (a file measured while open for
//! writing, or written while measured). Other templates (`ima-buf`,
//! `ima-modsig`, `evm-sig`, custom ones) are counted and passed over.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::{numbered_lines, BadLine};

/// The file templates understood.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Template {
    Ima,
    ImaNg,
    ImaSig,
}

/// One measurement of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Measurement {
    /// 1-based line number.
    pub line: usize,
    pub pcr: u32,
    pub template: Template,
    /// All zeros: a measurement violation.
    pub violation: bool,
    /// The digest's algorithm as the kernel names it (`sha1` for `ima`).
    pub algo: String,
    /// The file's digest.
    pub digest: Vec<u8>,
    /// The path as measured (`boot_aggregate` is not a file).
    pub path: PathBuf,
    /// The `security.ima` value (`ima-sig`), when there was one.
    pub signature: Option<Vec<u8>>,
}

/// The measurements of one list, the lines that could not be read, and
/// how many entries of other templates were passed over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MeasurementList {
    pub measurements: Vec<Measurement>,
    pub bad: Vec<BadLine>,
    pub other_templates: usize,
}

/// Reads a measurement list (see the module docs).
pub(crate) fn parse(data: &[u8]) -> MeasurementList {
    let mut list = MeasurementList::default();
    for (number, line) in numbered_lines(data) {
        match parse_line(number, line) {
            Ok(Some(m)) => list.measurements.push(m),
            Ok(None) => list.other_templates += 1,
            Err(reason) => list.bad.push(BadLine {
                line: number,
                reason,
            }),
        }
    }
    list
}

/// Splits off the first space-separated word.
fn word(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = s.iter().position(|&b| b == b' ')?;
    Some((&s[..at], &s[at + 1..]))
}

fn parse_line(line: usize, text: &[u8]) -> Result<Option<Measurement>, String> {
    let truncated = || "not `PCR TEMPLATE-HASH TEMPLATE FIELDS...` (truncated line?)".to_string();
    let (pcr, rest) = word(text).ok_or_else(truncated)?;
    let (template_hash, rest) = word(rest).ok_or_else(truncated)?;
    let (template, fields) = word(rest).ok_or_else(truncated)?;
    let pcr: u32 = std::str::from_utf8(pcr)
        .ok()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("PCR `{}` is not a number", lossy(pcr)))?;
    let template_hash = hex_of("template hash", template_hash)?;
    if ![20, 32, 48, 64].contains(&template_hash.len()) {
        return Err(format!(
            "the template hash has {} bytes, not a SHA-1, SHA-256, SHA-384 or SHA-512",
            template_hash.len()
        ));
    }
    let violation = template_hash.iter().all(|&b| b == 0);
    let template = match template {
        b"ima" => Template::Ima,
        b"ima-ng" => Template::ImaNg,
        b"ima-sig" => Template::ImaSig,
        other if !other.is_empty() && other.iter().all(|b| b.is_ascii_graphic()) => {
            return Ok(None)
        }
        other => return Err(format!("template name `{}` is not a word", lossy(other))),
    };
    let (digest_field, rest) = word(fields).ok_or_else(|| {
        format!(
            "{} entry without a path (truncated line?)",
            template_name(template)
        )
    })?;
    let (algo, digest) = match template {
        Template::Ima => ("sha1".to_string(), hex_of("digest", digest_field)?),
        Template::ImaNg | Template::ImaSig => {
            let colon = digest_field
                .iter()
                .position(|&b| b == b':')
                .ok_or_else(|| format!("digest `{}` is not `ALGO:HEX`", lossy(digest_field)))?;
            let algo = std::str::from_utf8(&digest_field[..colon])
                .ok()
                .filter(|a| {
                    !a.is_empty()
                        && a.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                })
                .ok_or_else(|| format!("digest `{}` is not `ALGO:HEX`", lossy(digest_field)))?;
            (
                algo.to_string(),
                hex_of("digest", &digest_field[colon + 1..])?,
            )
        }
    };
    if template == Template::Ima && digest.len() != 20 {
        return Err(format!(
            "an `ima` digest has 20 bytes, this one {}",
            digest.len()
        ));
    }
    if digest.is_empty() {
        return Err("empty digest".into());
    }
    let (path, signature) = match template {
        Template::Ima | Template::ImaNg => (rest, None),
        Template::ImaSig => {
            let at = rest.iter().rposition(|&b| b == b' ').ok_or_else(|| {
                "ima-sig entry without the space before its signature (truncated line?)".to_string()
            })?;
            let sig = &rest[at + 1..];
            let sig = if sig.is_empty() {
                None
            } else {
                Some(hex_of("signature", sig)?)
            };
            (&rest[..at], sig)
        }
    };
    if path.is_empty() {
        return Err("empty path".into());
    }
    Ok(Some(Measurement {
        line,
        pcr,
        template,
        violation,
        algo,
        digest,
        path: PathBuf::from(OsStr::from_bytes(path)),
        signature,
    }))
}

fn template_name(t: Template) -> &'static str {
    match t {
        Template::Ima => "ima",
        Template::ImaNg => "ima-ng",
        Template::ImaSig => "ima-sig",
    }
}

fn hex_of(what: &str, s: &[u8]) -> Result<Vec<u8>, String> {
    hex::decode(s).map_err(|_| format!("{what} `{}` is not hex", lossy(s)))
}

fn lossy(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(80)];
    crate::escape::escape_bytes(shown).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Lines of a real 6.12 boot's list (tests/kernel); signature shortened.
    const REAL: &str = "\
10 4f38ef8f82bbc2a73f2169c57ff5c76e14ce353d ima-sig sha256:0000000000000000000000000000000000000000000000000000000000000000 boot_aggregate 
10 f0cd51bc74fc820bcb1804d2fc75cd9daef96686 ima-sig sha256:3d9f2889d6782537624a4e1a10e68a2ddd53e0ee8bac02676f27308f42ec6bf6 /mnt/t/busybox.vm-sha256-rsa2048-openssl-signed-elf 0302049eccda000100ab68
";

    #[test]
    fn real_ima_sig_lines() {
        let list = parse(REAL.as_bytes());
        assert_eq!(list.bad, vec![]);
        assert_eq!(list.measurements.len(), 2);
        let boot = &list.measurements[0];
        assert_eq!(boot.path, PathBuf::from("boot_aggregate"));
        assert_eq!(boot.signature, None);
        assert_eq!(boot.algo, "sha256");
        let m = &list.measurements[1];
        assert_eq!(m.line, 2);
        assert_eq!(m.pcr, 10);
        assert_eq!(m.template, Template::ImaSig);
        assert_eq!(
            m.path,
            PathBuf::from("/mnt/t/busybox.vm-sha256-rsa2048-openssl-signed-elf")
        );
        assert_eq!(
            m.signature.as_deref(),
            Some(&hex::decode("0302049eccda000100ab68").unwrap()[..])
        );
        assert_eq!(
            hex::encode(&m.digest),
            "3d9f2889d6782537624a4e1a10e68a2ddd53e0ee8bac02676f27308f42ec6bf6"
        );
    }

    #[test]
    fn serial_console_line_ends() {
        let crlf = REAL.replace('\n', "\r\n");
        assert_eq!(parse(crlf.as_bytes()), parse(REAL.as_bytes()));
    }

    #[test]
    fn ima_and_ima_ng_with_spaces_and_other_templates() {
        let text = "\
10 0000000000000000000000000000000000000000 ima-ng sha256:aa /tmp/a file with spaces
10 91f34b5c671d73504b274a919661cf80dab1e127 ima 1f8b3c1a8f7e34fbd1c6bd1dcd7b0ad85bdf6b59 /usr/bin/kmod
10 91f34b5c671d73504b274a919661cf80dab1e127 ima-buf sha256:aa .ima 3082
";
        let list = parse(text.as_bytes());
        assert_eq!(list.bad, vec![]);
        assert_eq!(list.other_templates, 1);
        let ng = &list.measurements[0];
        assert_eq!(ng.template, Template::ImaNg);
        assert!(ng.violation);
        assert_eq!(ng.path, PathBuf::from("/tmp/a file with spaces"));
        let ima = &list.measurements[1];
        assert_eq!(ima.template, Template::Ima);
        assert_eq!(ima.algo, "sha1");
        assert_eq!(ima.path, PathBuf::from("/usr/bin/kmod"));
    }

    #[test]
    fn malformed_and_truncated_lines_are_reported_with_their_number() {
        let text = "\
10 f0cd51bc74fc820bcb1804d2fc75cd9daef96686 ima-sig sha256:3d9f /bin/true 0302
10 f0cd51bc74fc820bcb1804d2fc75cd9daef96686 ima-sig sha256:3d9f /bin/true
ten f0cd51bc74fc820bcb1804d2fc75cd9daef96686 ima-ng sha256:3d9f /bin/true
10 f0cd ima-ng sha256:3d9f /bin/true
10 f0cd51bc74fc820bcb1804d2fc75cd9daef96686 ima-ng sha256:xyz /bin/true
10 f0cd51bc74fc820bcb1804d2fc75cd9daef96686 ima-ng 3d9f /bin/true
10 f0cd51bc74fc820bcb1804d2fc75cd9daef96686 ima 3d9f /bin/true
10 f0cd51bc74fc820bcb1804d2fc75cd9daef96686 ima-ng sha256:3d9f
10 f0cd51bc74fc820bcb1804d2fc75cd9daef96686 ima-sig sha256:3d9f /bin/true nothex
10 f0cd51bc74fc820bc
";
        let list = parse(text.as_bytes());
        assert_eq!(list.measurements.len(), 1);
        let lines: Vec<usize> = list.bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, (2..=10).collect::<Vec<_>>());
        // An ima-sig line cut before its signature's space.
        assert!(list.bad[0].reason.contains("truncated"), "{}", list.bad[0]);
        assert!(list.bad[1].reason.contains("PCR"), "{}", list.bad[1]);
    }

    proptest! {
        #[test]
        fn never_panics_on_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&data);
        }

        #[test]
        fn never_panics_on_mangled_lines(
            cut in 0usize..400,
            junk in proptest::collection::vec(any::<u8>(), 0..20),
            at in 0usize..400,
        ) {
            let mut line = REAL.lines().nth(1).unwrap().as_bytes().to_vec();
            let at = at.min(line.len());
            line.splice(at..at, junk);
            line.truncate(line.len().saturating_sub(cut));
            let list = parse(&line);
            prop_assert!(list.measurements.len() + list.bad.len() + list.other_templates >= 1
                || line.is_empty() || line.contains(&b'\n'));
        }

        #[test]
        fn any_path_without_newline_round_trips(
            path in proptest::collection::vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 1..60),
            sig in proptest::option::of(proptest::collection::vec(any::<u8>(), 1..16)),
        ) {
            let mut line = b"10 f0cd51bc74fc820bcb1804d2fc75cd9daef96686 ima-sig sha256:3d9f ".to_vec();
            line.extend_from_slice(&path);
            line.push(b' ');
            if let Some(sig) = &sig {
                line.extend_from_slice(hex::encode(sig).as_bytes());
            }
            let list = parse(&line);
            // A path ending in CR with no signature after it loses the CR
            // (read as a CR LF line end); anything else is kept whole.
            prop_assume!(path.last() != Some(&b'\r') || sig.is_some());
            prop_assert_eq!(list.bad.len(), 0, "{:?}", list.bad);
            prop_assert_eq!(list.measurements[0].path.as_os_str().as_bytes(), &path[..]);
            prop_assert_eq!(&list.measurements[0].signature, &sig);
        }
    }
}
