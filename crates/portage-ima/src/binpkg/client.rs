//! A binary-package client's per-file rule: keep a trusted signature,
//! apply the package's [`MANIFEST`] entry when it verifies, or (sign-missing)
//! sign with our key when Portage vouched for the package. It is a
//! [`Writer`] of the engine: the plan decides what happens to each file and
//! the engine opens it, checks CONTENTS and the `._cfg` siblings, as for
//! every other run; only the writing is the client's.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use ima_core::{
    digest_file, read_ima_xattr, write_ima_xattr, Error as ImaError, FileStamp, ImaHasher,
    ImaSigner, KeyId, KeySet, SignOptions, SignOutcome, VerifyStatus,
};

use super::manifest::{Manifest, MANIFEST};
use crate::engine::{WriteError, Writer};
use crate::gentoo::provenance::Provenance;
use crate::plan::{SkipReason, Treatment};
use crate::report::Failure;

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
    /// The failure reported for it; `expected_md5`: what CONTENTS records.
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
    /// The certificates a signature must verify against (`trusted_certs`).
    pub keys: &'a KeySet,
    /// The crypto backend, for the digests an entry is checked over.
    pub provider: &'static dyn ima_core::CryptoProvider,
    /// The package's [`MANIFEST`].
    pub manifest: &'a Manifest,
    /// Our own key (sign-missing), else None.
    pub signer: Option<&'a ImaSigner>,
    /// Digests for config files under `config_files = "hash"`.
    pub hasher: &'a ImaHasher,
    /// Whether Portage vouched for the package: only then does `signer`
    /// sign what the manifest does not cover.
    pub provenance: &'a Provenance,
    /// `${D}` when the files are found in the image (preinst): their
    /// CONTENTS path is the one below it.
    pub image: Option<&'a Path>,
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

impl Writer for Client<'_> {
    type Done = Settled;

    fn write(
        &self,
        file: &File,
        listed: &Path,
        treatment: Treatment,
        expect_md5: Option<[u8; 16]>,
    ) -> Result<Settled, WriteError> {
        let path = match self.image {
            Some(d) => Path::new("/").join(listed.strip_prefix(d).unwrap_or(listed)),
            None => listed.to_path_buf(),
        };
        self.settle_as(treatment, file, &path, expect_md5)
            .map_err(|u| match u {
                Unsettled::ContentDiffers(actual) => WriteError::ContentDiffers(actual),
                other => WriteError::Failed(other.into_failure(None)),
            })
    }

    fn left(&self, _reason: SkipReason) -> Settled {
        Settled::Left
    }
}

/// Counts of one hook run on a client, and which key signed what.
#[derive(Debug, Default)]
pub struct ClientTally {
    /// Files that already carried a trusted signature ([`Settled::Kept`]).
    pub kept: usize,
    /// Files given their verified [`MANIFEST`] entry ([`Settled::Applied`]).
    pub applied: usize,
    /// Files signed with our key (`sign-missing`).
    pub signed: usize,
    /// Config files given a digest (`config_files = "hash"`).
    pub hashed: usize,
    /// Config files left alone.
    pub left: usize,
    /// Files left without a trusted signature or not done (interrupted);
    /// counted by the caller, not by [`ClientTally::add`] (the hook also
    /// counts an `IMA_SIGNATURES` it cannot read or parse as one).
    pub failed: usize,
    /// Kept and applied signatures by key id (hex), for the summary.
    pub by_key: BTreeMap<String, usize>,
}

impl ClientTally {
    /// Counts one settled file.
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
