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
use std::path::Path;
use std::time::SystemTime;

use base64ct::{Base64, Encoding};
use ima_core::{Certificate, CryptoProvider, HashAlgo};
use serde::Serialize;

use crate::engine::open_failure;
use crate::fs::rootfs::RootDir;
use crate::gentoo::owners::OwnerIndex;
use crate::report::date::UtcTime;

/// Keylime's runtime policy format version this writes.
pub const POLICY_VERSION: u32 = 1;
/// `RUNTIME_POLICY_GENERATOR.Unknown`: not one of Keylime's own generators.
const GENERATOR_UNKNOWN: u32 = 0;

#[derive(Debug, Serialize)]
pub struct RuntimePolicy {
    pub meta: Meta,
    pub release: u32,
    pub digests: BTreeMap<String, Vec<String>>,
    pub excludes: Vec<String>,
    pub keyrings: BTreeMap<String, Vec<String>>,
    pub ima: ImaSection,
    #[serde(rename = "ima-buf")]
    pub ima_buf: BTreeMap<String, Vec<String>>,
    #[serde(rename = "verification-keys")]
    pub verification_keys: String,
}

#[derive(Debug, Serialize)]
pub struct Meta {
    pub version: u32,
    pub generator: u32,
    pub timestamp: String,
}

#[derive(Debug, Serialize)]
pub struct ImaSection {
    pub ignored_keyrings: Vec<String>,
    /// The template hash algorithm of the measurement list (SHA-1 in
    /// `ascii_runtime_measurements`).
    pub log_hash_alg: &'static str,
    pub dm_policy: Option<()>,
}

/// A file left out of the policy, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeftOut {
    pub path: String,
    pub package: String,
    pub reason: String,
}

/// The policy and what was left out of it.
pub struct Export {
    pub policy: RuntimePolicy,
    pub left_out: Vec<LeftOut>,
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
    let results: Vec<Result<(Vec<String>, String), LeftOut>> = objects
        .par_iter()
        .map(|(path, owned)| {
            let package = index.packages()[owned.package].cpv().to_string();
            let left_out = |reason: String| LeftOut {
                path: path.to_string_lossy().into_owned(),
                package: package.clone(),
                reason,
            };
            let mut names = vec![text(path).ok_or_else(|| {
                left_out("the path is not UTF-8: Keylime's policy cannot name it".into())
            })?];
            if let Some(real) = index.real_path(path) {
                names.extend(text(&real));
            }
            let file = root
                .open_file(path)
                .map_err(|e| left_out(open_failure(&e).to_string()))?;
            let digests = ima_core::digest_file(provider, &file, algo, true)
                .map_err(|e| left_out(e.to_string()))?;
            if digests.md5 != Some(owned.md5) {
                return Err(left_out(format!(
                    "modified since install: MD5 {} expected (CONTENTS), {} found",
                    hex::encode(owned.md5),
                    digests.md5.map(hex::encode).unwrap_or_default()
                )));
            }
            Ok((names, hex::encode(&digests.digest)))
        })
        .collect();
    let mut digests: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut left_out = Vec::new();
    for result in results {
        match result {
            Ok((names, digest)) => {
                for name in names {
                    let list = digests.entry(name).or_default();
                    if !list.contains(&digest) {
                        list.push(digest.clone());
                    }
                }
            }
            Err(l) => left_out.push(l),
        }
    }
    Export {
        files: objects.len(),
        left_out,
        policy: RuntimePolicy {
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
            verification_keys: verification_keys(certs),
        },
    }
}

fn text(path: &Path) -> Option<String> {
    path.to_str().map(str::to_string)
}

/// Keylime's `ImaKeyring.to_string()`: `{"meta": {"version": 1}, "keyids":
/// [...], "pubkeys": [...]}`; empty without certificates.
fn verification_keys(certs: &[Certificate]) -> String {
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
