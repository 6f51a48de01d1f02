//! A measurement list judged against a runtime policy with Keylime's rules
//! (keylime/ima/ima.py, `_validate_ima_ng` and `_validate_ima_sig`):
//!
//! - a path matching one of `excludes` (Python `re.match`: anchored at the
//!   start) passes;
//! - an `ima-sig` entry whose signature verifies with one of the policy's
//!   `verification-keys` passes;
//! - otherwise the entry's digest must be listed for its path: a path not
//!   listed is `not in the policy`, a digest not listed is `digest not in
//!   the policy`.
//!
//! `boot_aggregate` is left to the verifier, which checks it against the
//! TPM's PCRs; `ima-buf` entries (measured keys, device-mapper state) are
//! not files and are not judged here.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use base64ct::{Base64, Encoding};
use ima_core::{CryptoProvider, HashAlgo, KeySet, VerifyStatus};
use serde::Deserialize;

/// The parts of a runtime policy the rules read.
#[derive(Debug, Deserialize)]
pub struct PolicyRules {
    /// Each path mapped to the hex digests accepted for it.
    pub digests: BTreeMap<String, Vec<String>>,
    /// Python regular expressions of paths that pass unchecked, joined into
    /// one alternation anchored at the start as Keylime does.
    #[serde(default)]
    pub excludes: Vec<String>,
    /// Keylime's key ring as a JSON string; empty for none.
    #[serde(rename = "verification-keys", default)]
    pub verification_keys: String,
}

/// One measured file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measured {
    /// The template name: `ima`, `ima-ng` or `ima-sig`.
    pub template: String,
    /// The file digest's algorithm as the list names it (`sha256`); `sha1`
    /// for the old `ima` template, which does not name it.
    pub algo: String,
    /// The file's content digest, raw bytes.
    pub digest: Vec<u8>,
    /// The path the kernel measured the file under (after symlinks); may
    /// contain spaces.
    pub path: String,
    /// The `security.ima` signature an `ima-sig` entry carries, raw bytes;
    /// `None` when the file had none.
    pub signature: Option<Vec<u8>>,
}

/// Why a measured file fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The policy lists no digest for the path.
    NotInPolicy,
    /// The path is listed, but not with the measured digest.
    DigestNotInPolicy {
        /// The measured digest, lower-case hex.
        got: String,
        /// The digests the policy lists for the path.
        expected: Vec<String>,
    },
    /// A line that is not a measurement; holds the line.
    Unparsable(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NotInPolicy => f.write_str("not in the policy"),
            Failure::DigestNotInPolicy { got, expected } => write!(
                f,
                "digest not in the policy: measured {got}, the policy has {}",
                expected.join(", ")
            ),
            Failure::Unparsable(line) => write!(f, "not a measurement Keylime can read: {line}"),
        }
    }
}

/// The verdict on a whole list.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Files judged (excluded and signature passes included).
    pub checked: usize,
    /// Of `checked`, those that passed by matching `excludes`.
    pub excluded: usize,
    /// Of `checked`, those that passed by a signature verifying with a
    /// `verification-keys` key.
    pub by_signature: usize,
    /// Entries not judged: `boot_aggregate` (the verifier checks it against
    /// the TPM) and templates that hold no file (`ima-buf`).
    pub skipped: usize,
    /// Each failing path with why, in list order; an unparsable line has an
    /// empty path.
    pub failures: Vec<(String, Failure)>,
}

/// The rules of one policy, ready to apply.
pub struct Rules {
    policy: PolicyRules,
    excludes: Option<regex::Regex>,
    keys: Option<KeySet>,
}

impl Rules {
    /// Parses the policy JSON and its excludes and keys.
    pub fn new(json: &[u8], provider: &'static dyn CryptoProvider) -> Result<Rules> {
        let policy: PolicyRules =
            serde_json::from_slice(json).context("not a Keylime runtime policy")?;
        // Keylime joins the excludes into one alternation the same way
        // (keylime/common/validators.py, valid_exclude_list).
        let excludes = if policy.excludes.is_empty() {
            None
        } else {
            let joined = format!("^(?:{})", policy.excludes.join("|"));
            Some(
                regex::Regex::new(&joined)
                    .with_context(|| format!("excludes: not a regular expression: {joined}"))?,
            )
        };
        let keys = if policy.verification_keys.is_empty() {
            None
        } else {
            Some(verification_keys(&policy.verification_keys, provider)?)
        };
        Ok(Rules {
            policy,
            excludes,
            keys,
        })
    }

    /// Judges every line of an `ascii_runtime_measurements` list.
    pub fn judge(&self, list: &str) -> Verdict {
        let mut verdict = Verdict::default();
        for line in list.lines().filter(|l| !l.trim().is_empty()) {
            let measured = match parse_line(line) {
                Ok(Some(m)) => m,
                Ok(None) => {
                    verdict.skipped += 1;
                    continue;
                }
                Err(()) => {
                    verdict
                        .failures
                        .push((String::new(), Failure::Unparsable(line.to_string())));
                    continue;
                }
            };
            if measured.path == "boot_aggregate" {
                verdict.skipped += 1;
                continue;
            }
            verdict.checked += 1;
            match self.judge_one(&measured) {
                Ok(Pass::Excluded) => verdict.excluded += 1,
                Ok(Pass::Signature) => verdict.by_signature += 1,
                Ok(Pass::Digest) => {}
                Err(f) => verdict.failures.push((measured.path, f)),
            }
        }
        verdict
    }

    fn judge_one(&self, m: &Measured) -> Result<Pass, Failure> {
        if self.excludes.as_ref().is_some_and(|r| r.is_match(&m.path)) {
            return Ok(Pass::Excluded);
        }
        if let (Some(keys), Some(sig)) = (&self.keys, &m.signature) {
            let report = keys.verify_value(sig, |algo| {
                // The signature must be over the measured digest, in its algorithm.
                match m.algo.parse::<HashAlgo>() {
                    Ok(measured) if measured == algo => Ok(m.digest.clone()),
                    _ => Err(ima_core::Error::Crypto("another algorithm".into())),
                }
            });
            if matches!(report.status, VerifyStatus::Ok | VerifyStatus::OtherKey) {
                return Ok(Pass::Signature);
            }
        }
        let Some(listed) = self.policy.digests.get(&m.path) else {
            return Err(Failure::NotInPolicy);
        };
        let got = hex::encode(&m.digest);
        if listed.contains(&got) {
            Ok(Pass::Digest)
        } else {
            Err(Failure::DigestNotInPolicy {
                got,
                expected: listed.clone(),
            })
        }
    }
}

enum Pass {
    Excluded,
    Signature,
    Digest,
}

/// `PCR TEMPLATE-HASH TEMPLATE DATA...`; `None` for a template that holds
/// no file (`ima-buf`).
fn parse_line(line: &str) -> Result<Option<Measured>, ()> {
    let mut fields = line.splitn(4, ' ');
    let (_pcr, _hash, template, rest) = (
        fields.next().ok_or(())?,
        fields.next().ok_or(())?,
        fields.next().ok_or(())?,
        fields.next().ok_or(())?,
    );
    let (algo, digest, rest) = match template {
        "ima" => {
            let (digest, path) = rest.split_once(' ').ok_or(())?;
            ("sha1", digest, path)
        }
        "ima-ng" | "ima-sig" => {
            let (digest, rest) = rest.split_once(' ').ok_or(())?;
            let (algo, digest) = digest.split_once(':').ok_or(())?;
            (algo, digest, rest)
        }
        _ => return Ok(None),
    };
    // The file name is the rest, except a trailing signature (ima-sig).
    let (path, signature) = match (template, rest.rsplit_once(' ')) {
        ("ima-sig", Some((path, sig))) => (path, (!sig.is_empty()).then_some(sig)),
        _ => (rest, None),
    };
    Ok(Some(Measured {
        template: template.to_string(),
        algo: algo.to_string(),
        digest: hex::decode(digest).map_err(|_| ())?,
        path: path.to_string(),
        signature: signature.map(hex::decode).transpose().map_err(|_| ())?,
    }))
}

/// Keylime's `verification-keys` string: `{"keyids": [...], "pubkeys":
/// [base64 SubjectPublicKeyInfo DER]}`.
fn verification_keys(text: &str, provider: &'static dyn CryptoProvider) -> Result<KeySet> {
    #[derive(Deserialize)]
    struct Ring {
        pubkeys: Vec<String>,
    }
    let ring: Ring =
        serde_json::from_str(text).context("verification-keys: not Keylime's key ring")?;
    let mut keys = KeySet::new(provider);
    for (n, key) in ring.pubkeys.iter().enumerate() {
        let der = Base64::decode_vec(key)
            .map_err(|e| anyhow::anyhow!("verification-keys: key {n}: not base64: {e}"))?;
        keys.add_public_key_der(&der)
            .with_context(|| format!("verification-keys: key {n}"))?;
    }
    if keys.is_empty() {
        bail!("verification-keys holds no key");
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let m = parse_line("10 abcd ima-sig sha256:00ff /usr/bin/a b 0302")
            .unwrap()
            .unwrap();
        assert_eq!(m.path, "/usr/bin/a b");
        assert_eq!(m.signature, Some(vec![3, 2]));
        let m = parse_line("10 abcd ima-sig sha256:00ff /usr/bin/a ")
            .unwrap()
            .unwrap();
        assert_eq!((m.path.as_str(), m.signature), ("/usr/bin/a", None));
        let m = parse_line("10 abcd ima-ng sha256:00ff /usr/bin/a b")
            .unwrap()
            .unwrap();
        assert_eq!(m.path, "/usr/bin/a b");
        assert!(parse_line("10 abcd ima-buf sha256:00 .ima 3082")
            .unwrap()
            .is_none());
        assert!(parse_line("10 abcd").is_err());
    }

    #[test]
    fn digest_rules() {
        let policy =
            br#"{"digests": {"/a": ["00ff"]}, "excludes": ["/tmp/"], "verification-keys": ""}"#;
        let rules = Rules::new(policy, ima_core::default_provider()).unwrap();
        let v = rules.judge(
            "10 x ima-ng sha256:00ff /a\n10 x ima-ng sha256:0000 /a\n\
             10 x ima-ng sha256:00ff /b\n10 x ima-ng sha256:00ff /tmp/x\n\
             10 x ima-ng sha1:00 boot_aggregate\n",
        );
        assert_eq!((v.checked, v.excluded, v.skipped), (4, 1, 1));
        assert_eq!(v.failures.len(), 2);
        assert_eq!(v.failures[1], ("/b".to_string(), Failure::NotInPolicy));
    }
}
