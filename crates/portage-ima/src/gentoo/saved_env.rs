//! The ebuild environment Portage saved for an installed package:
//! `/var/db/pkg/CAT/PF/environment.bz2`.
//!
//! At the end of every phase Portage writes the phase's whole shell state
//! (`declare -p` of the variables, the functions) to `${T}/environment`; when
//! the package is merged that file is compressed with bzip2 into the vdb
//! (mode 0644: readable by every user) and, with `FEATURES=buildpkg`, into the
//! binary package. A variable exported where emerge ran (a token PIN, say)
//! is in it as `declare -x NAME="value"`, for as long as the package stays
//! installed. Phases of the installed package (`prerm`, `postrm`) run from it.
//!
//! Only whether a variable is there is read here; its value is never kept.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use bzip2::read::MultiBzDecoder;

use super::vdb::InstalledPackage;

/// The file name in each package's vdb directory.
pub(crate) const SAVED_ENV: &str = "environment.bz2";

/// Most bytes of decompressed environment read (real ones are well under
/// a megabyte; this bounds what a crafted file can make us hold).
const LIMIT: u64 = 64 << 20;

/// The package's `environment.bz2`.
pub(crate) fn saved_env_path(package: &InstalledPackage) -> PathBuf {
    package.dir().join(SAVED_ENV)
}

/// Which of `names` the saved environment at `path` assigns (a line
/// `declare -x NAME="..."`, `export NAME=...` or `NAME=...`), in the order
/// of `names`. A missing file assigns nothing.
pub(crate) fn assigned_variables<'a>(path: &Path, names: &[&'a str]) -> io::Result<Vec<&'a str>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut text = Vec::new();
    MultiBzDecoder::new(file)
        .take(LIMIT)
        .read_to_end(&mut text)
        .map_err(|e| io::Error::new(e.kind(), format!("bzip2: {e}")))?;
    let found = names
        .iter()
        .copied()
        .filter(|name| assigns(&text, name.as_bytes()))
        .collect();
    // The text may hold the values: wipe it before it is freed.
    text.iter_mut().for_each(|b| *b = 0);
    Ok(found)
}

/// Whether a line of `text` assigns NAME: `declare FLAGS NAME=...` (what
/// `declare -p` writes for every variable), `export NAME=...` or
/// `NAME=...`, leading blanks allowed (in a function body).
fn assigns(text: &[u8], name: &[u8]) -> bool {
    text.split(|&b| b == b'\n').any(|line| {
        let line = line.trim_ascii_start();
        let rest = if let Some(rest) = line.strip_prefix(b"declare ") {
            // The flags word (-x, --, -r...) and the space after it.
            let flags_end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
            rest.get(flags_end + 1..).unwrap_or_default()
        } else {
            line.strip_prefix(b"export ").unwrap_or(line)
        };
        rest.strip_prefix(name)
            .is_some_and(|after| after.first() == Some(&b'='))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn bz2(text: &str) -> Vec<u8> {
        let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
        enc.write_all(text.as_bytes()).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn finds_declared_variables_only_as_whole_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SAVED_ENV);
        std::fs::write(
            &path,
            bz2("declare -x A=\"\"\ndeclare -x IMA_TOKEN_PIN=\"1234\"\nX_SITE_PIN=1\nf () \n{ \n    export B=1\n}\n"),
        )
        .unwrap();
        let names = ["IMA_TOKEN_PIN", "SITE_PIN", "A", "B", "NOPE"];
        assert_eq!(
            assigned_variables(&path, &names).unwrap(),
            ["IMA_TOKEN_PIN", "A", "B"]
        );
        assert!(assigned_variables(&dir.path().join("gone"), &names)
            .unwrap()
            .is_empty());
        std::fs::write(&path, b"not bzip2").unwrap();
        assert!(assigned_variables(&path, &names).is_err());
    }
}
