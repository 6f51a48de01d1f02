//! `policy --check`: which files of a root filesystem a policy's appraise
//! rules cover, and which of those lack a signature the certificates
//! verify: what the kernel would refuse after the next boot with
//! `ima_appraise=enforce`.
//!
//! Each regular file is offered to the policy ([`super::eval::appraisal`])
//! for the accesses the kernel would appraise it on:
//!
//! - `FILE_CHECK` (`mask=MAY_READ`): any file opened for reading;
//! - `BPRM_CHECK` (`MAY_EXEC`): a file with an execute bit (a program or a
//!   script run directly); a setuid-root program run by a user is matched
//!   with the user's ids (so `uid=0` misses it, `fowner=0` does not);
//! - `CREDS_CHECK` (`MAY_EXEC`): the same execve against the new
//!   credentials, which the kernel asks before it applies a setuid or
//!   setgid bit (`begin_new_exec` computes those later): the caller's ids;
//! - `MMAP_CHECK` and `MMAP_CHECK_REQPROT` (`MAY_EXEC`): an ELF file, since
//!   both shared objects and the programs themselves are mapped executable
//!   (the ELF loader maps a program through `vm_mmap`, which asks the hook);
//! - `MODULE_CHECK`: `*.ko` (also compressed) under `lib/modules`;
//! - `FIRMWARE_CHECK`: files under `lib/firmware`.
//!
//! The process's ids are not a property of the file: each access is asked
//! for root (uid 0) and for an ordinary user (uid and gid 1000); the file's
//! owner and group (`fowner`, `fgroup`) and its filesystem's magic and uuid
//! are the file's own. The first rule that decides wins, `dont_appraise`
//! included. A rule with an LSM condition possibly matches: a file it would
//! cover is reported as possibly denied.
//!
//! A covered file passes when its `security.ima` is a signature one of the
//! certificates verifies, or, for a rule without `appraise_type=`, a digest
//! that matches its content; and, under `appraise_algos=`, when the
//! signature's (or digest's) hash algorithm is listed (the kernel refuses
//! it otherwise, cause `denied-hash-algorithm`). Each appraise rule that
//! covers one of the file's accesses must pass.
//!
//! What the check does not model makes the verdict "cannot tell", never
//! "safe": an appraise rule with `appraise_type=sigv3`,
//! `digest_type=verity` or any `appraise_flag=` (fs-verity digests and the
//! blacklist keyring are not read here), and any directory or filesystem
//! the walk could not read.
//!
//! `/proc`, `/sys` and pseudo filesystems (devpts, mqueue, ...) are not
//! walked ([`super::walk`]), but mounts below `/proc` and `/sys` that hold
//! files are; `/dev` is, since a devtmpfs and the tmpfs mounts under it
//! (`/dev/shm`) hold files a policy covers; symlinks are not followed;
//! other mounts below the root are (the kernel appraises files wherever
//! they are: `/run`, `/run/user/UID`, `/tmp`).

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use ima_core::{KeySet, VerifyStatus};
use rayon::prelude::*;

use super::eval::{appraisal, Appraisal, FileAccess, FileSystem};
use super::rule::{Access, Action, AppraiseType, Func, Policy, Rule, RuleOption};
use super::setup::FsInfo;
use super::walk::{beyond_the_walk, inside_root, walk, Found};

pub use crate::report::policy_check::{CheckReport, Denied, Unmodelled, Verdict};

/// The options of `policy`'s appraise rules that the check does not model.
pub(crate) fn unmodelled(policy: &Policy) -> Vec<Unmodelled> {
    let mut out = Vec::new();
    for (line, rule) in policy.numbered_rules() {
        if rule.action != Action::Appraise {
            continue;
        }
        for option in &rule.options {
            let modelled = match option {
                RuleOption::AppraiseType(t) => *t != AppraiseType::SigV3,
                RuleOption::AppraiseAlgos(_) | RuleOption::PermitDirectio => true,
                RuleOption::AppraiseFlag(_) | RuleOption::DigestTypeVerity => false,
                // Measure rules' options: parse refuses them on appraise.
                RuleOption::Template(_) | RuleOption::Pcr(_) => true,
            };
            if !modelled {
                out.push(Unmodelled {
                    line,
                    rule: rule.to_string(),
                    option: option.to_string(),
                });
            }
        }
    }
    out
}

/// A subject of the accesses: (uid, gid).
const SUBJECTS: [(u32, u32); 2] = [(0, 0), (1000, 1000)];

/// Checks every regular file under `root` against `policy` (see the module docs).
pub(crate) fn check(policy: &Policy, root: &Path, keys: &KeySet) -> CheckReport {
    let mut report = CheckReport {
        unmodelled: unmodelled(policy),
        ..CheckReport::default()
    };
    let mut files = Vec::new();
    let mut filesystems: HashMap<u64, Option<FileSystem>> = HashMap::new();
    if let Ok(meta) = fs::metadata(root) {
        filesystems.insert(meta.dev(), FsInfo::of(root).ok().map(|f| f.file_system()));
    }
    walk(
        root,
        root,
        &mut files,
        &mut filesystems,
        &mut report.unreadable,
    );
    match crate::kernel::mountinfo::read() {
        Ok(mounts) => {
            let (more, hidden) = beyond_the_walk(root, &mounts);
            for dir in more {
                walk(
                    root,
                    &dir,
                    &mut files,
                    &mut filesystems,
                    &mut report.unreadable,
                );
            }
            report.unreadable.extend(hidden);
        }
        Err(e) => report.unreadable.push(format!(
            "mounts hidden under others, or below /proc and /sys: {}",
            crate::report::status::error_line(&e)
        )),
    }
    report.files = files.len();
    let results: Vec<(bool, Option<Denied>)> = files
        .par_iter()
        .map(|f| check_file(policy, root, f, keys))
        .collect();
    for (covered, denied) in results {
        report.covered += usize::from(covered);
        report.denied.extend(denied);
    }
    report.denied.sort_by(|a, b| a.path.cmp(&b.path));
    report
}

/// The accesses the kernel would appraise `f` on.
fn accesses(root: &Path, f: &Found) -> Vec<(Func, Access)> {
    let mut out = vec![(Func::FileCheck, Access::Read)];
    if f.meta.mode() & 0o111 != 0 {
        out.push((Func::BprmCheck, Access::Exec));
        out.push((Func::CredsCheck, Access::Exec));
    }
    if is_elf(&f.path) {
        out.push((Func::MmapCheck, Access::Exec));
        out.push((Func::MmapCheckReqprot, Access::Exec));
    }
    let inside = inside_root(root, &f.path);
    let under = |dirs: &[&str]| dirs.iter().any(|d| inside.starts_with(d));
    let name = inside.file_name().unwrap_or_default().to_string_lossy();
    let module = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .any(|s| name.ends_with(s));
    if module && under(&["/lib/modules", "/usr/lib/modules"]) {
        out.push((Func::ModuleCheck, Access::Read));
    }
    if under(&["/lib/firmware", "/usr/lib/firmware"]) {
        out.push((Func::FirmwareCheck, Access::Read));
    }
    out
}

fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// The rule that covers `f` first: the access, the subject's uid, the
/// rule's line, the rule, and whether it certainly matches.
type Covering<'p> = (Func, u32, usize, &'p super::rule::Rule, bool);

/// Every appraise rule that covers one of `f`'s accesses (the first that
/// decides each), certain ones first, each once.
fn covering_rules<'p>(policy: &'p Policy, root: &Path, f: &Found) -> Vec<Covering<'p>> {
    let mut out: Vec<Covering<'p>> = Vec::new();
    for (func, access) in accesses(root, f) {
        for (uid, gid) in SUBJECTS {
            let asked = FileAccess {
                func,
                mask: vec![access],
                uid,
                euid: uid,
                gid,
                egid: gid,
                fowner: f.meta.uid(),
                fgroup: f.meta.gid(),
                fs: f.fs.clone(),
            };
            if let Appraisal::Appraised {
                line,
                rule,
                certain,
            } = appraisal(policy, &asked)
            {
                if !out.iter().any(|c| c.2 == line) {
                    out.push((func, uid, line, rule, certain));
                }
            }
        }
    }
    out.sort_by_key(|c| !c.4);
    out
}

/// Why `rule` refuses a file whose `security.ima` verified as `report`, if it does.
fn refusal(rule: &Rule, report: &ima_core::VerifyReport) -> Option<(&'static str, Option<String>)> {
    let passes = match report.status {
        VerifyStatus::Ok | VerifyStatus::OtherKey => true,
        VerifyStatus::Hashed => !rule.requires_signature(),
        _ => false,
    };
    if !passes {
        return Some((report.status.as_str(), report.detail.clone()));
    }
    let allowed = rule.options.iter().find_map(|o| match o {
        RuleOption::AppraiseAlgos(algos) => Some(algos),
        _ => None,
    })?;
    let algo = report.algo.map(|a| a.name());
    if algo.is_some_and(|a| allowed.iter().any(|x| x == a)) {
        return None;
    }
    Some((
        "denied-hash-algorithm",
        Some(format!(
            "its security.ima uses {}, and appraise_algos allows only {}",
            algo.unwrap_or("an unknown hash algorithm"),
            allowed.join(",")
        )),
    ))
}

/// Whether `f` is covered, and if so whether it would be denied.
fn check_file(policy: &Policy, root: &Path, f: &Found, keys: &KeySet) -> (bool, Option<Denied>) {
    let covering = covering_rules(policy, root, f);
    let Some(&(func, uid, line, rule, certain)) = covering.first() else {
        return (false, None);
    };
    let report = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&f.path)
        .map_err(|e| e.to_string())
        .and_then(|file| keys.verify_file(&file, false).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => {
            let denial = denied(root, f, func, uid, line, rule, certain, "error", Some(e));
            return (true, Some(denial));
        }
    };
    for &(func, uid, line, rule, certain) in &covering {
        if let Some((status, detail)) = refusal(rule, &report) {
            let denial = denied(root, f, func, uid, line, rule, certain, status, detail);
            return (true, Some(denial));
        }
    }
    (true, None)
}

#[allow(clippy::too_many_arguments)]
fn denied(
    root: &Path,
    f: &Found,
    func: Func,
    uid: u32,
    line: usize,
    rule: &super::rule::Rule,
    certain: bool,
    status: &'static str,
    detail: Option<String>,
) -> Denied {
    Denied {
        path: inside_root(root, &f.path),
        package: None,
        access: format!("{} by uid {uid}", func.keyword()),
        line,
        rule: rule.to_string(),
        certain,
        status,
        detail,
    }
}

/// The files a policy's appraise rules can cover, for `scope = "policy"`:
/// a file is covered when some access of the module docs, by root or a
/// user, is certainly or possibly appraised.
pub struct Coverage {
    policy: Policy,
    /// Where the policy was read, for messages.
    pub source: String,
    filesystems: std::sync::Mutex<HashMap<u64, Option<FileSystem>>>,
}

impl Coverage {
    /// Coverage by `policy`, read from `source` (named in messages).
    pub fn new(policy: Policy, source: String) -> Coverage {
        Coverage {
            policy,
            source,
            filesystems: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The policy of the system under `root` ([`read_policy`]); `None`,
    /// with a warning, when there is none to read or it does not parse:
    /// then everything is signed, which is safe under any policy.
    pub fn load(root: &Path) -> Option<Coverage> {
        let loaded = read_policy(None, root).and_then(|(source, text)| {
            let policy =
                super::parse_policy(&text).map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
            Ok(Coverage::new(policy, source))
        });
        match loaded {
            Ok(c) => Some(c),
            Err(e) => {
                log::warn!(
                    "scope = \"policy\", but {}; signing every file",
                    crate::report::status::error_line(&e)
                );
                None
            }
        }
    }

    /// Whether `host_path` (a file on the host, under `root`) is covered.
    /// A file that cannot be looked at counts as covered.
    pub fn covers(&self, root: &Path, host_path: &Path) -> bool {
        let Ok(meta) = fs::symlink_metadata(host_path) else {
            return true;
        };
        if !meta.is_file() {
            return true;
        }
        let fs = {
            let mut known = self.filesystems.lock().unwrap_or_else(|e| e.into_inner());
            known
                .entry(meta.dev())
                .or_insert_with(|| FsInfo::of(host_path).ok().map(|f| f.file_system()))
                .clone()
        };
        let Some(fs) = fs else { return true };
        let found = Found {
            path: host_path.to_path_buf(),
            meta,
            fs,
        };
        !covering_rules(&self.policy, root, &found).is_empty()
    }
}

/// The loaded policy, readable with CONFIG_IMA_READ_POLICY.
pub(crate) const LOADED_POLICY: &str = "/sys/kernel/security/ima/policy";
/// The policy the boot loads, under ROOT.
pub(crate) const BOOT_POLICY: &str = "etc/ima/ima-policy";

/// The policy `explicit`, else the loaded one (when `root` is `/`), else
/// the one the boot loads under `root`: where it was read, and its text.
pub(crate) fn read_policy(
    explicit: Option<&Path>,
    root: &Path,
) -> anyhow::Result<(String, String)> {
    use anyhow::Context;
    if let Some(path) = explicit {
        let text = fs::read_to_string(path)
            .with_context(|| format!("cannot read the policy {}", path.display()))?;
        return Ok((path.display().to_string(), text));
    }
    if root == Path::new("/") {
        if let Ok(text) = fs::read_to_string(LOADED_POLICY) {
            return Ok((format!("{LOADED_POLICY} (the loaded policy)"), text));
        }
    }
    let boot = root.join(BOOT_POLICY);
    match fs::read_to_string(&boot) {
        Ok(text) => Ok((boot.display().to_string(), text)),
        Err(e) => anyhow::bail!(
            "no policy to read: {LOADED_POLICY} is not readable (a kernel without \
             CONFIG_IMA_READ_POLICY) and {}: {e}",
            boot.display()
        ),
    }
}
