//! Signatures that travel with binary packages: sign once on the build host,
//! keep them on clients that hold only the certificate.
//!
//! What real Portage does (3.0.x, checked in its source and with `emerge`):
//! - A binary package (`FEATURES=buildpkg`) is made in the `package` phase,
//!   after src_install and before preinst, from `${D}` (a hard-linked copy
//!   under `${T}/packaging` when PKG_INSTALL_MASK is set). A signature made
//!   in preinst is never in it; the hook signs in the package phase. The
//!   bashrc is sourced there too (misc-functions.sh), as root.
//! - xpak (`.tbz2`/`.xpak`): the image is packed by `gtar --xattrs` when
//!   `FEATURES=xattr`, so `security.ima` is in the tar (PAX
//!   `SCHILY.xattr.security.ima`). `emerge -K` extracts with
//!   `--xattrs-exclude` for every entry of `PORTAGE_XATTR_EXCLUDE`, which by
//!   default lists `security.*`: the client must drop it from the list.
//! - gpkg (`.gpkg.tar`): Python's `tarfile` packs the image, which stores no
//!   xattrs at all, whatever the settings.
//! - Both formats store every file of `${PORTAGE_BUILDDIR}/build-info` as the
//!   package's metadata, unpack it into the client's build-info before
//!   preinst, and copy it into the vdb entry (`/var/db/pkg/CAT/PF/`) at the
//!   merge; `quickpkg` packs the vdb entry again.
//!
//! So in the package phase the hook also writes `build-info/IMA_SIGNATURES`
//! ([`MANIFEST`]): every signed file's CONTENTS path and its `security.ima`.
//! A client applies an entry only when it verifies, against a trusted
//! certificate, over the content of the file it is about to merge (or has
//! merged, and whose MD5 CONTENTS records): the list needs no protection of
//! its own, and a file changed on the binary host after signing is found.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ima_core::{
    digest_file, read_ima_xattr, write_ima_xattr, Error as ImaError, FileStamp, ImaHasher,
    ImaSigner, ImaXattr, KeyId, KeySet, SignOptions, SignOutcome, VerifyStatus,
};

use crate::gentoo::provenance::Provenance;
use crate::plan::Treatment;
use crate::report::Failure;

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

    pub fn get(&self, path: &Path) -> Option<&[u8]> {
        self.entries.get(path).map(Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `security.ima` when it holds a signature (not a bare digest).
pub fn signature_value(file: &File) -> Option<Vec<u8>> {
    let value = read_ima_xattr(file).ok()??;
    matches!(ImaXattr::decode(&value), Ok(ImaXattr::Signature { .. })).then_some(value)
}

/// How a client's file ended up with a trusted signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    /// It carried one already (from the package's xattrs, or written earlier).
    Kept(KeyId),
    /// The package's [`MANIFEST`] had one that verifies; written now.
    Applied(KeyId),
    /// `mode = "sign-missing"`: signed with our own key.
    Signed,
    /// A config file `config_files = "hash"` gives a digest (no key needed).
    Hashed,
    /// A config file `config_files` leaves alone.
    Left,
}

/// Why a client's file has no trusted signature, or could not be handled.
#[derive(Clone, Debug)]
pub enum Unsettled {
    /// The content is not what CONTENTS records (MD5 found).
    ContentDiffers(String),
    /// No trusted signature: what the file and the manifest had.
    Untrusted(String),
    /// Reading or writing failed.
    Error(String),
}

impl Unsettled {
    pub fn into_failure(self, expected_md5: Option<[u8; 16]>) -> Failure {
        match self {
            Unsettled::ContentDiffers(actual_md5) => Failure::ContentDiffers {
                expected_md5: expected_md5.unwrap_or_default(),
                actual_md5,
            },
            Unsettled::Untrusted(why) | Unsettled::Error(why) => Failure::Other(why),
        }
    }
}

/// What a client needs to settle files: the trusted keys, the package's
/// signature list, and (sign-missing) our own signer.
pub struct Client<'a> {
    pub keys: &'a KeySet,
    pub provider: &'static dyn ima_core::CryptoProvider,
    pub manifest: &'a Manifest,
    pub signer: Option<&'a ImaSigner>,
    /// Digests for config files under `config_files = "hash"`.
    pub hasher: &'a ImaHasher,
    /// Whether Portage vouched for the package: only then does `signer`
    /// sign what the manifest does not cover.
    pub provenance: &'a Provenance,
}

fn trusted(status: &VerifyStatus) -> bool {
    matches!(status, VerifyStatus::Ok | VerifyStatus::OtherKey)
}

impl Client<'_> {
    /// What `treatment` (the plan's [`crate::plan::Decision`] on this
    /// open file) asks: a trusted signature ([`Client::settle`]), a
    /// digest (config files, `hash`), or nothing (config files left alone).
    pub fn settle_as(
        &self,
        treatment: Treatment,
        file: &File,
        path: &Path,
        expect_md5: Option<[u8; 16]>,
    ) -> Result<Settled, Unsettled> {
        match treatment {
            Treatment::Sign => self.settle(file, path, expect_md5),
            Treatment::Leave(_) => Ok(Settled::Left),
            Treatment::Hash => {
                let opts = SignOptions {
                    expect_md5,
                    keep_valid: true,
                    dry_run: false,
                };
                match self.hasher.hash_file(file, &opts) {
                    Ok(_) => Ok(Settled::Hashed),
                    Err(ImaError::Md5Mismatch { actual, .. }) => {
                        Err(Unsettled::ContentDiffers(actual))
                    }
                    Err(e) => Err(Unsettled::Error(e.to_string())),
                }
            }
        }
    }

    /// Gives `file` (known to Portage as `path`) a trusted signature if it
    /// can: keeps a valid one, else applies the manifest's entry when it
    /// verifies over this content, else signs it (sign-missing) when
    /// Portage vouched for the package ([`Provenance`]) and no trusted key
    /// signed other content for it (changed after signing). With
    /// `expect_md5` the content must be what CONTENTS records. Everything is
    /// read and written through `file`; a file that changes meanwhile is left.
    pub fn settle(
        &self,
        file: &File,
        path: &Path,
        expect_md5: Option<[u8; 16]>,
    ) -> Result<Settled, Unsettled> {
        let error = |e: ima_core::Error| Unsettled::Error(e.to_string());
        let before = FileStamp::of(file).map_err(error)?;
        let current = self
            .keys
            .verify_file(file, expect_md5.is_some())
            .map_err(error)?;
        if let (Some(expected), Some(found)) = (expect_md5, current.md5) {
            if expected != found {
                return Err(Unsettled::ContentDiffers(hex::encode(found)));
            }
        }
        if trusted(&current.status) {
            return Ok(Settled::Kept(
                current.keyid.expect("a signature has a key id"),
            ));
        }
        let mut why = format!(
            "no signature by a trusted certificate ({}{})",
            current.status,
            current
                .detail
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        );
        // A trusted key's signature that does not match this content.
        let mut changed_after_signing = current.status == VerifyStatus::BadSignature;
        match self.manifest.get(path) {
            Some(value) => {
                let carried = self.keys.verify_value(value, |algo| {
                    Ok(digest_file(self.provider, file, algo, false)?.digest)
                });
                if trusted(&carried.status) {
                    if FileStamp::of(file).map_err(error)? != before {
                        return Err(Unsettled::Error(
                            "the file changed while it was checked; left as it was".into(),
                        ));
                    }
                    write_ima_xattr(file, value).map_err(error)?;
                    return Ok(Settled::Applied(carried.keyid.expect("verified")));
                }
                // The same value as the xattr (an xpak restores both): said once.
                let same = read_ima_xattr(file).ok().flatten().as_deref() == Some(value);
                if !same {
                    why.push_str(&format!(
                        "; the binary package's signature for it does not verify either ({}{})",
                        carried.status,
                        carried
                            .detail
                            .as_deref()
                            .map(|d| format!(": {d}"))
                            .unwrap_or_default()
                    ));
                }
                changed_after_signing |= carried.status == VerifyStatus::BadSignature;
                if changed_after_signing {
                    why.push_str(
                        "; the build host signed other content: the file was changed \
                         after signing (on the binary host or on the way)",
                    );
                }
            }
            None if self.manifest.is_empty() => {
                why.push_str(&format!("; the package has no {MANIFEST}"))
            }
            None => why.push_str(&format!("; the package's {MANIFEST} has no entry for it")),
        }
        let Some(signer) = self.signer else {
            return Err(Unsettled::Untrusted(why));
        };
        if changed_after_signing {
            // Signing it would vouch for content the build host did not sign.
            why.push_str("; not signed with our key either");
            return Err(Unsettled::Untrusted(why));
        }
        if !self.provenance.vouched() {
            // Nothing says this content is the build host's: a line dropped
            // from the list, or a file added to the package, would be signed.
            why.push_str(&format!(
                "; not signed with our key: nothing vouches for the package ({}; set \
                 FEATURES=binpkg-request-signature with GPG-signed gpkg packages)",
                self.provenance
            ));
            return Err(Unsettled::Untrusted(why));
        }
        let opts = SignOptions {
            expect_md5,
            keep_valid: true,
            dry_run: false,
        };
        match signer.sign_file(file, &opts) {
            Ok(SignOutcome::AlreadyValid) => Ok(Settled::Kept(signer.key_id())),
            Ok(_) => Ok(Settled::Signed),
            Err(e) => Err(error(e)),
        }
    }
}

/// Counts of one hook run on a client, and which key signed what.
#[derive(Debug, Default)]
pub struct ClientTally {
    pub kept: usize,
    pub applied: usize,
    pub signed: usize,
    pub hashed: usize,
    pub left: usize,
    pub failed: usize,
    pub by_key: BTreeMap<String, usize>,
}

impl ClientTally {
    pub fn add(&mut self, settled: &Settled) {
        match settled {
            Settled::Kept(id) => {
                self.kept += 1;
                *self.by_key.entry(id.to_string()).or_default() += 1;
            }
            Settled::Applied(id) => {
                self.applied += 1;
                *self.by_key.entry(id.to_string()).or_default() += 1;
            }
            Settled::Signed => self.signed += 1,
            Settled::Hashed => self.hashed += 1,
            Settled::Left => self.left += 1,
        }
    }

    /// "3 carried signatures kept, 2 applied from IMA_SIGNATURES (key id
    /// 1a2b3c4d: 5), 0 signed with our key, 1 without a trusted signature".
    pub fn line(&self, sign_missing: bool) -> String {
        let keys = self
            .by_key
            .iter()
            .map(|(k, n)| format!("key id {k}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut line = format!(
            "{} carried signatures kept, {} applied from {MANIFEST}",
            self.kept, self.applied
        );
        if !keys.is_empty() {
            line.push_str(&format!(" ({keys})"));
        }
        if sign_missing {
            line.push_str(&format!(", {} signed with our key", self.signed));
        }
        line.push_str(&format!(", {} without a trusted signature", self.failed));
        if self.hashed > 0 {
            line.push_str(&format!(", {} config files hashed", self.hashed));
        }
        if self.left > 0 {
            line.push_str(&format!(
                ", {} config files left alone (config_files)",
                self.left
            ));
        }
        line
    }
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
