//! A Keylime runtime policy from the vdb: the digest of every installed file
//! whose content is still what its package installed.
//!
//! The format is Keylime's `runtime_policy` (keylime/ima/ima.py,
//! `RUNTIME_POLICY_SCHEMA`, version 1):
//!
//! - `digests`: `{path: [hex digest, ...]}`, compared with the measurement
//!   list's `ima-ng`/`ima-sig` digests of the same path; the algorithm is
//!   the kernel's `ima_hash` (sha256 by default, `--hash`);
//! - `excludes`: Python regular expressions of paths Keylime does not check
//!   (matched with `re.match`, so anchored at the start);
//! - `verification-keys`: a JSON *string* holding `{"keyids": [int],
//!   "pubkeys": [base64 SubjectPublicKeyInfo DER]}`, the keys Keylime checks
//!   `ima-sig` signatures with (keylime/ima/file_signatures.py, `ImaKeyring`);
//! - `keyrings`: digests of keys *measured* into kernel keyrings (`ima-buf`
//!   entries), not verification keys: left empty, as are `ima-buf` and
//!   `ima.ignored_keyrings`.
//!
//! The kernel measures a file under its path after symlinks, so a file
//! CONTENTS lists under a symlinked directory (`/bin/bash` with `/bin ->
//! usr/bin`) is listed under both paths.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64ct::{Base64, Encoding};
use ima_core::{Certificate, CryptoProvider, HashAlgo};
use serde::Serialize;

use crate::engine::{cfg_candidates, open_failure};
use crate::fs::rootfs::RootDir;
use crate::gentoo::owners::OwnerIndex;
use crate::report::date::UtcTime;

/// Keylime's runtime policy format version this writes.
pub const POLICY_VERSION: u32 = 1;
/// `RUNTIME_POLICY_GENERATOR.Unknown`: not one of Keylime's own generators.
const GENERATOR_UNKNOWN: u32 = 0;

/// A Keylime `runtime_policy` document (schema version 1); serialises to the
/// JSON Keylime's verifier takes, field names as Keylime spells them.
#[derive(Debug, Serialize)]
pub struct RuntimePolicy {
    /// Format version, generator and creation time.
    pub meta: Meta,
    /// Keylime's policy release number; always 0, Keylime does not interpret it.
    pub release: u32,
    /// Path (after symlinks, as the kernel measures it) to every hex digest
    /// accepted for it, in the kernel's `ima_hash` algorithm.
    pub digests: BTreeMap<String, Vec<String>>,
    /// Python regular expressions of paths Keylime skips, anchored at the start
    /// (`re.match`).
    pub excludes: Vec<String>,
    /// Digests of keys measured into kernel keyrings (`ima-buf`); always empty.
    pub keyrings: BTreeMap<String, Vec<String>>,
    /// Keylime's `ima` section: how to read the measurement list.
    pub ima: ImaSection,
    /// Digests of other `ima-buf` measurements; always empty.
    #[serde(rename = "ima-buf")]
    pub ima_buf: BTreeMap<String, Vec<String>>,
    /// The keys Keylime checks `ima-sig` signatures with, as a JSON *string*
    /// (see [`verification_keys`]); empty when there are none.
    #[serde(rename = "verification-keys")]
    pub verification_keys: String,
}

/// The policy's `meta` section.
#[derive(Debug, Serialize)]
pub struct Meta {
    /// Format version, [`POLICY_VERSION`].
    pub version: u32,
    /// Keylime's `RUNTIME_POLICY_GENERATOR` number; 0 (`Unknown`) for us.
    pub generator: u32,
    /// When the policy was built, RFC 3339 in UTC.
    pub timestamp: String,
}

/// The policy's `ima` section.
#[derive(Debug, Serialize)]
pub struct ImaSection {
    /// Keyrings whose `ima-buf` measurements Keylime ignores; always empty.
    pub ignored_keyrings: Vec<String>,
    /// The template hash algorithm of the measurement list (SHA-1 in
    /// `ascii_runtime_measurements`).
    pub log_hash_alg: &'static str,
    /// Device-mapper measurement policy; always `null`.
    pub dm_policy: Option<()>,
}

/// A file left out of the policy, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeftOut {
    /// The file's path as CONTENTS lists it (lossy if not UTF-8); the
    /// CONTENTS file's own path when that cannot be read.
    pub path: String,
    /// The owning package, `CATEGORY/PF`.
    pub package: String,
    /// Why it was left out, one line for the user.
    pub reason: String,
}

/// The policy and what was left out of it.
pub struct Export {
    /// The policy built from every file that could be digested.
    pub policy: RuntimePolicy,
    /// Files CONTENTS lists that are not in the policy, sorted by path.
    pub left_out: Vec<LeftOut>,
    /// How many files the vdb lists, left out ones included.
    pub files: usize,
}

/// Digests every indexed file (in parallel, on the current rayon pool) and
/// builds the policy. A file whose MD5 is not what CONTENTS records, that
/// is gone, or whose path is not UTF-8 (Keylime's JSON keys are text) is
/// left out and listed.
pub fn export(
    index: &OwnerIndex,
    root: &RootDir,
    provider: &dyn CryptoProvider,
    algo: HashAlgo,
    certs: &[Certificate],
    excludes: Vec<String>,
) -> Export {
    use rayon::prelude::*;
    let mut objects: Vec<_> = index.objects().collect();
    objects.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let results: Vec<Result<Digested, LeftOut>> = objects
        .par_iter()
        .map(|(path, owned)| {
            let package = index.packages()[owned.package].cpv().to_string();
            digest_object(
                root,
                provider,
                algo,
                path,
                &owned.md5,
                index.real_path(path),
            )
            .map_err(|reason| LeftOut {
                path: path.to_string_lossy().into_owned(),
                package,
                reason,
            })
        })
        .collect();
    let mut digests: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut left_out = Vec::new();
    for result in results {
        match result {
            Ok(d) => {
                for name in d.names {
                    add_digest(&mut digests, name, &d.digest);
                }
            }
            Err(l) => left_out.push(l),
        }
    }
    Export {
        files: objects.len(),
        left_out,
        policy: RuntimePolicy::new(digests, excludes, verification_keys(certs)),
    }
}

/// `digest` listed for `name`, once.
pub fn add_digest(digests: &mut BTreeMap<String, Vec<String>>, name: String, digest: &str) {
    let list = digests.entry(name).or_default();
    if !list.iter().any(|d| d == digest) {
        list.push(digest.to_string());
    }
}

impl RuntimePolicy {
    /// A policy holding `digests`, `excludes` and `verification_keys`
    /// (Keylime's JSON string, empty for none), stamped now.
    pub fn new(
        digests: BTreeMap<String, Vec<String>>,
        excludes: Vec<String>,
        verification_keys: String,
    ) -> RuntimePolicy {
        RuntimePolicy {
            meta: Meta {
                version: POLICY_VERSION,
                generator: GENERATOR_UNKNOWN,
                timestamp: UtcTime::of(SystemTime::now()).rfc3339(),
            },
            release: 0,
            digests,
            excludes,
            keyrings: BTreeMap::new(),
            ima: ImaSection {
                ignored_keyrings: Vec::new(),
                log_hash_alg: "sha1",
                dm_policy: None,
            },
            ima_buf: BTreeMap::new(),
            verification_keys,
        }
    }
}

/// One installed file's digest and the names the kernel may measure it under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digested {
    /// The names the kernel may measure the file under: the CONTENTS path,
    /// then the path with symlinked directories resolved when it has one.
    pub names: Vec<String>,
    /// The file's content digest in lower-case hex.
    pub digest: String,
}

/// The digest of the file CONTENTS lists at `path` with `md5`, named by
/// `path` and by `real` (its path with directories resolved), or why it is
/// left out. A config-protected file whose live copy the admin changed is
/// taken from the `._cfg` file Portage left beside it: its content is what
/// the path holds once the admin accepts the update.
pub fn digest_object(
    root: &RootDir,
    provider: &dyn CryptoProvider,
    algo: HashAlgo,
    path: &Path,
    md5: &[u8; 16],
    real: Option<PathBuf>,
) -> Result<Digested, String> {
    let mut names = vec![text(path)
        .ok_or_else(|| "the path is not UTF-8: Keylime's policy cannot name it".to_string())?];
    names.extend(real.as_deref().and_then(text));
    let file = root
        .open_file(path)
        .map_err(|e| open_failure(&e).to_string())?;
    let digests = ima_core::digest_file(provider, &file, algo, true).map_err(|e| e.to_string())?;
    if digests.md5 == Some(*md5) {
        return Ok(Digested {
            names,
            digest: hex::encode(&digests.digest),
        });
    }
    for (_, candidate) in cfg_candidates(root, path) {
        if let Ok(cfg) = ima_core::digest_file(provider, &candidate, algo, true) {
            if cfg.md5 == Some(*md5) {
                return Ok(Digested {
                    names,
                    digest: hex::encode(&cfg.digest),
                });
            }
        }
    }
    Err(format!(
        "modified since install: MD5 {} expected (CONTENTS), {} found",
        hex::encode(md5),
        digests.md5.map(hex::encode).unwrap_or_default()
    ))
}

fn text(path: &Path) -> Option<String> {
    path.to_str().map(str::to_string)
}

/// Keylime's `ImaKeyring.to_string()`: `{"meta": {"version": 1}, "keyids":
/// [...], "pubkeys": [...]}`; empty without certificates.
pub fn verification_keys(certs: &[Certificate]) -> String {
    if certs.is_empty() {
        return String::new();
    }
    let keyids: Vec<u32> = certs
        .iter()
        .map(|c| u32::from_be_bytes(c.key_id().0))
        .collect();
    let pubkeys: Vec<String> = certs
        .iter()
        .map(|c| Base64::encode_string(&c.subject_public_key_info_der()))
        .collect();
    serde_json::json!({"meta": {"version": 1}, "keyids": keyids, "pubkeys": pubkeys}).to_string()
}
