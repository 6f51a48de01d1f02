//! What the kernel refused (or measured), joined to what Portage installed.
//!
//! Each file the kernel's appraisal denied (an integrity audit record,
//! [`crate::kernel::audit_record`]) or measured ([`crate::kernel::measurements`])
//! is looked up in the [`OwnerIndex`] and checked on disk, and given one
//! [`Class`]:
//!
//! - `unsigned-pristine`: no valid signature, but the content is exactly
//!   what the package installed (MD5 matches CONTENTS): safe to sign;
//! - `modified`: the content differs from CONTENTS: reinstall the package,
//!   or, when the change is yours, sign it knowingly;
//! - `foreign-key`: signed by a key the kernel does not have (not one of the
//!   certificates, or not on the IMA keyring): load its certificate or re-sign;
//! - `not-owned`: no package installed it (local scripts, caches): the
//!   policy or the admin decides;
//! - `gone`: not on disk any more (removed, or replaced by an upgrade);
//! - `valid`: signed by a key the kernel has, content as installed: the
//!   denial predates the signature; nothing to do;
//! - `error`: the file could not be checked (the reason is given).
//!
//! After a first boot with `policy --observe` (measure and audit rules
//! where the appraise rules would be), the files its `audit` rules recorded
//! (type 1805) or its `ima-sig` measurements list are *observed*; each
//! that is on disk and carries no signature the kernel would accept is one
//! enforcing would refuse ([`Finding::enforce_refuses`]).
//!
//! Nothing is written unless [`fix`] is called, and it signs only
//! `unsigned-pristine` files, through the same per-file rules as `sign`
//! (the MD5 is checked again on the descriptor that gets the signature).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io;
use std::path::{Path, PathBuf};

use ima_core::{ImaSigner, KeyId, KeySet, VerifyStatus};

use crate::engine;
use crate::escape::{escape_bytes, escape_path};
use crate::fs::rootfs::RootDir;
use crate::gentoo::owners::OwnerIndex;
use crate::kernel::audit_record::AuditLog;
use crate::kernel::audit_rule::RuleLog;
use crate::kernel::measurements::{MeasurementList, Template};
pub(crate) use crate::report::audit::{Class, Finding};
use crate::report::{FileReport, Outcome};

/// The keys the kernel would check signatures with.
pub(crate) struct KernelKeys<'a> {
    /// The certificates, to verify signatures.
    pub certs: &'a KeySet,
    /// The ids on the kernel's IMA keyring and its name, when it was read
    /// (auditing the running system); otherwise the certificates stand for it.
    pub keyring: Option<(&'a str, &'a [KeyId])>,
}

/// What the kernel said about one file, all its records together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sighting {
    /// Appraisal denials.
    pub denials: usize,
    /// Entries in the measurement list.
    pub measured: usize,
    /// Records of an `audit` rule (type 1805).
    pub audited: usize,
    /// Entries of the `ima-sig` template (which carry the signature).
    pub sig_measured: usize,
    pub causes: BTreeSet<String>,
    pub comms: BTreeSet<String>,
}

/// The files the kernel denied or measured, by path; records of the same
/// event read from two logs (kmsg and audit.log) count once.
#[derive(Debug, Default)]
pub(crate) struct Sightings {
    pub files: BTreeMap<PathBuf, Sighting>,
    seen_events: HashSet<(String, u64)>,
}

impl Sightings {
    /// Adds the denials of one log.
    pub(crate) fn add_log(&mut self, log: &AuditLog) {
        for r in log.records.iter().filter(|r| r.is_denial()) {
            let Some(name) = &r.name else { continue };
            if !self.seen_events.insert((r.time.clone(), r.serial)) {
                continue;
            }
            let s = self.files.entry(name.clone()).or_default();
            s.denials += 1;
            s.causes.insert(r.cause.clone());
            if let Some(comm) = &r.comm {
                s.comms.insert(escape_bytes(comm).into_owned());
            }
        }
    }

    /// Adds the files an `audit` rule recorded.
    pub(crate) fn add_rule_log(&mut self, log: &RuleLog) {
        for r in &log.records {
            if !self.seen_events.insert((r.time.clone(), r.serial)) {
                continue;
            }
            let s = self.files.entry(r.file.clone()).or_default();
            s.audited += 1;
            if let Some(comm) = &r.comm {
                s.comms.insert(escape_bytes(comm).into_owned());
            }
        }
    }

    /// Whether any file was observed (see the module docs).
    pub(crate) fn observed(&self) -> bool {
        self.files.values().any(Sighting::observed)
    }

    /// Adds the files of a measurement list (`boot_aggregate` and other
    /// names that are not absolute paths are not files).
    pub(crate) fn add_measurements(&mut self, list: &MeasurementList) {
        for m in &list.measurements {
            if m.path.is_absolute() {
                let s = self.files.entry(m.path.clone()).or_default();
                s.measured += 1;
                s.sig_measured += usize::from(m.template == Template::ImaSig);
            }
        }
    }
}

impl Sighting {
    /// Recorded by an `audit` rule or an `ima-sig` measurement.
    pub(crate) fn observed(&self) -> bool {
        self.audited > 0 || self.sig_measured > 0
    }
}

/// Classifies every sighted file (see the module docs). `root` is the
/// filesystem the kernel's paths are inside.
pub(crate) fn classify(
    sightings: &Sightings,
    index: &OwnerIndex,
    root: &RootDir,
    keys: &KernelKeys,
) -> Vec<Finding> {
    use rayon::prelude::*;
    let files: Vec<_> = sightings.files.iter().collect();
    files
        .par_iter()
        .map(|(path, seen)| classify_one(path, seen, index, root, keys))
        .collect()
}

fn classify_one(
    path: &Path,
    seen: &Sighting,
    index: &OwnerIndex,
    root: &RootDir,
    keys: &KernelKeys,
) -> Finding {
    let owner = index.owner_of(path);
    let mut finding = Finding {
        path: path.to_path_buf(),
        package: owner
            .as_ref()
            .map(|(_, o)| index.packages()[o.package].cpv().to_string()),
        contents_path: owner
            .as_ref()
            .and_then(|(listed, _)| (listed != path).then(|| listed.clone())),
        class: Class::Error,
        detail: String::new(),
        keyid: None,
        denials: seen.denials,
        measured: seen.measured,
        audited: seen.audited,
        enforce_refuses: false,
        causes: seen.causes.iter().cloned().collect(),
        comms: seen.comms.iter().cloned().collect(),
        fixed: None,
        md5: owner.as_ref().map(|(_, o)| o.md5),
    };
    let (class, detail) = match root.open_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => (
            Class::Gone,
            match &finding.package {
                Some(p) => format!("listed in the CONTENTS of {p} but not on disk: reinstall it"),
                None => "not on disk, and no package lists it".into(),
            },
        ),
        Err(e) => {
            finding.enforce_refuses = seen.observed();
            (Class::Error, engine::open_failure(&e).to_string())
        }
        Ok(file) => match keys.certs.verify_file(&file, true) {
            Err(e) => {
                finding.enforce_refuses = seen.observed();
                (Class::Error, e.to_string())
            }
            Ok(report) => {
                finding.keyid = report.keyid.map(|k| k.to_string());
                let accepted = matches!(
                    kernel_accepts(&report.status, report.keyid, keys),
                    Acceptance::Yes
                );
                finding.enforce_refuses = seen.observed() && !accepted;
                let signature = signature_words(&report.status, report.keyid, keys);
                match &owner {
                    None => (
                        Class::NotOwned,
                        format!("no package installed it; {signature}"),
                    ),
                    Some((_, owned)) if report.md5 != Some(owned.md5) => (
                        Class::Modified,
                        format!(
                            "content differs from CONTENTS (MD5 {} expected, {} found): \
                             reinstall {}, or if the change is yours sign it with \
                             `portage-ima sign --files {}`; {signature}",
                            hex::encode(owned.md5),
                            report.md5.map(hex::encode).unwrap_or_default(),
                            finding.package.as_deref().unwrap_or_default(),
                            escape_path(&root.display_path(path)),
                        ),
                    ),
                    Some(_) => match kernel_accepts(&report.status, report.keyid, keys) {
                        Acceptance::Yes => (
                            Class::Valid,
                            if seen.denials == 0 {
                                format!("{signature}; content as installed")
                            } else {
                                format!("{signature}; content as installed: the denial predates it")
                            },
                        ),
                        Acceptance::ForeignKey => (
                            Class::ForeignKey,
                            format!("content as installed, but {signature}"),
                        ),
                        Acceptance::NoSignature => (
                            Class::UnsignedPristine,
                            format!(
                                "content exactly as installed, {signature}: safe to sign \
                                 (`portage-ima sign ={}{root_option}` or `portage-ima audit --fix`)",
                                finding.package.as_deref().unwrap_or_default(),
                                root_option = crate::report::root_option(root.root())
                            ),
                        ),
                    },
                }
            }
        },
    };
    finding.class = class;
    finding.detail = detail;
    finding
}

enum Acceptance {
    Yes,
    ForeignKey,
    NoSignature,
}

/// Whether the kernel would take this signature: it verifies with a
/// certificate, and its key is on the keyring when the keyring was read.
fn kernel_accepts(status: &VerifyStatus, keyid: Option<KeyId>, keys: &KernelKeys) -> Acceptance {
    match status {
        VerifyStatus::Ok | VerifyStatus::OtherKey => match (keys.keyring, keyid) {
            (Some((_, ids)), Some(id)) if !ids.contains(&id) => Acceptance::ForeignKey,
            _ => Acceptance::Yes,
        },
        VerifyStatus::UnknownKey => Acceptance::ForeignKey,
        _ => Acceptance::NoSignature,
    }
}

fn signature_words(status: &VerifyStatus, keyid: Option<KeyId>, keys: &KernelKeys) -> String {
    let id = keyid.map(|k| k.to_string()).unwrap_or_default();
    match status {
        VerifyStatus::Ok | VerifyStatus::OtherKey => match keys.keyring {
            Some((ring, ids)) if keyid.is_some_and(|k| !ids.contains(&k)) => format!(
                "signed by key {id}, which is not on the {ring} keyring: load its certificate \
                 (keyctl padd asymmetric '' %keyring:{ring} < CERT)"
            ),
            _ => format!("validly signed by key {id}"),
        },
        VerifyStatus::UnknownKey => format!(
            "signed by key {id}, which is none of the certificates: load that key's \
             certificate on the IMA keyring, or sign it again with yours"
        ),
        VerifyStatus::Unsigned => "not signed".into(),
        VerifyStatus::Hashed => "only a digest, no signature".into(),
        VerifyStatus::BadHash => "only a digest, and it does not match the content".into(),
        VerifyStatus::BadSignature => format!("its signature (key {id}) does not verify"),
        VerifyStatus::Malformed => "its security.ima cannot be read".into(),
    }
}

/// Signs the `unsigned-pristine` findings with `signer`, by the rules of
/// `sign` for a CONTENTS file; the others are left alone. Each finding
/// signed gets [`Finding::fixed`] and, when signed, the class `valid`.
pub(crate) fn fix(findings: &mut [Finding], signer: &ImaSigner, root: &RootDir) {
    use rayon::prelude::*;
    findings
        .par_iter_mut()
        .filter(|f| f.class == Class::UnsignedPristine)
        .for_each(|f| {
            let Some(md5) = f.md5 else { return };
            let listed = f.contents_path.clone().unwrap_or_else(|| f.path.clone());
            let report: FileReport = engine::sign_object(signer, root, &listed, &md5, None, false);
            match &report.outcome {
                Outcome::Signed | Outcome::Rotated { .. } | Outcome::AlreadyValid => {
                    f.fixed = Some("signed".into());
                    f.class = Class::Valid;
                    f.detail = "signed now (content as installed)".into();
                }
                other => f.fixed = Some(format!("not signed: {}", other_words(other))),
            }
        });
}

fn other_words(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Failed(failure) => failure.to_string(),
        other => format!("{other:?}"),
    }
}
