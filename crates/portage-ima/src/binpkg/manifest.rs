//! `IMA_SIGNATURES`, the list of signatures a binary package carries in its
//! metadata (build-info, then the vdb entry): one line per signed file, its
//! `security.ima` in hex, a space, its CONTENTS path; `#` lines are
//! comments. Parsed and written here; what a client does with an entry is
//! [`super::client`]'s.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ima_core::{read_ima_xattr, ImaXattr};

/// The metadata file (in build-info and in the vdb entry) with the signatures.
pub const MANIFEST: &str = "IMA_SIGNATURES";

const HEADER: &str =
    "# portage-ima: security.ima of each signed file (hex), a space, its CONTENTS path\n";

/// The signatures of one package, by CONTENTS path.
#[derive(Debug, Default)]
pub struct Manifest {
    entries: HashMap<PathBuf, Vec<u8>>,
}

impl Manifest {
    /// Parses [`MANIFEST`] text; `origin` names the file in errors.
    pub fn parse(bytes: &[u8], origin: &Path) -> Result<Manifest> {
        let mut entries = HashMap::new();
        for (index, line) in bytes.split(|&b| b == b'\n').enumerate() {
            if line.is_empty() || line.starts_with(b"#") {
                continue;
            }
            let where_ = || format!("{} line {}", origin.display(), index + 1);
            let Some(space) = line.iter().position(|&b| b == b' ') else {
                bail!("{}: expected `HEX-VALUE /path`, found no space", where_());
            };
            let value = hex::decode(&line[..space])
                .with_context(|| format!("{}: the value is not hex", where_()))?;
            let path = &line[space + 1..];
            if !path.starts_with(b"/") {
                bail!("{}: the path must be absolute (as in CONTENTS)", where_());
            }
            entries.insert(PathBuf::from(OsStr::from_bytes(path)), value);
        }
        Ok(Manifest { entries })
    }

    /// The text for `entries` (CONTENTS path, `security.ima`), sorted by path.
    /// Paths with a newline cannot be written (CONTENTS cannot hold them either).
    pub fn render(entries: &BTreeMap<PathBuf, Vec<u8>>) -> Vec<u8> {
        let mut text = HEADER.as_bytes().to_vec();
        for (path, value) in entries {
            let path = path.as_os_str().as_bytes();
            if path.contains(&b'\n') {
                continue;
            }
            text.extend_from_slice(hex::encode(value).as_bytes());
            text.push(b' ');
            text.extend_from_slice(path);
            text.push(b'\n');
        }
        text
    }

    /// The `security.ima` value (raw bytes) listed for the CONTENTS path `path`.
    pub fn get(&self, path: &Path) -> Option<&[u8]> {
        self.entries.get(path).map(Vec::as_slice)
    }

    /// How many files have an entry.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No entry: the package carries no list, or an empty one.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `security.ima` when it holds a signature (not a bare digest).
pub fn signature_value(file: &File) -> Option<Vec<u8>> {
    let value = read_ima_xattr(file).ok()??;
    matches!(ImaXattr::decode(&value), Ok(ImaXattr::Signature { .. })).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips_paths_with_spaces() {
        let mut entries = BTreeMap::new();
        entries.insert(PathBuf::from("/usr/share/a file.txt"), vec![3, 2, 4, 0xab]);
        entries.insert(PathBuf::from("/usr/bin/x"), vec![3, 2, 4, 0xcd]);
        entries.insert(PathBuf::from("/bad\nname"), vec![1]);
        let text = Manifest::render(&entries);
        let m = Manifest::parse(&text, Path::new("M")).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(
            m.get(Path::new("/usr/share/a file.txt")),
            Some(&[3, 2, 4, 0xab][..])
        );
        assert_eq!(m.get(Path::new("/usr/bin/x")), Some(&[3, 2, 4, 0xcd][..]));
    }

    #[test]
    fn manifest_errors_name_the_line() {
        let e = Manifest::parse(b"# c\n0302 /ok\nzz /x\n", Path::new("M")).unwrap_err();
        assert!(
            format!("{e:#}").contains("M line 3: the value is not hex"),
            "{e:#}"
        );
        let e = Manifest::parse(b"0302 relative\n", Path::new("M")).unwrap_err();
        assert!(e.to_string().contains("must be absolute"), "{e}");
        let e = Manifest::parse(b"0302\n", Path::new("M")).unwrap_err();
        assert!(e.to_string().contains("no space"), "{e}");
    }
}
