//! A policy fitted to a Portage setup: what to appraise, and what must be
//! left alone so that builds still run.
//!
//! What Portage runs, and as whom (portage/package/ebuild/doebuild.py,
//! `_spawn_actionmap`): with FEATURES=userpriv (Portage's default) the
//! src_unpack, src_prepare, src_configure, src_compile and src_test phases
//! run as the `portage` user; pkg_pretend, pkg_setup, src_install (and
//! instprep, the packaging of binary packages) and every pkg_* phase of the
//! merge (preinst, postinst, prerm, postrm, config) run as root. A
//! package with RESTRICT=userpriv, or src_test with
//! PROPERTIES=test_privileged, runs those phases as root too; without
//! FEATURES=userpriv every phase is root's.
//!
//! Builds execute what they produce in the work directory under
//! `${PORTAGE_TMPDIR}/portage`: configure's test programs, tools built to
//! build the rest, test suites, and, in src_install as root, helpers such
//! as a program run to generate its own documentation. None of that is
//! signed (it is signed once merged), so an appraise rule that covers the
//! process running it denies it, unless an earlier `dont_appraise` exempts
//! the build directory's filesystem: by `fsuuid` when it is a filesystem
//! of its own; by `fsmagic` when it is a tmpfs, which exempts every tmpfs
//! (and devtmpfs, which has tmpfs's magic), so only when every other one
//! is mounted `noexec`; by SELinux label when the loaded policy is
//! Gentoo's (`portage_tmp_t`, `portage_sandbox_t`). On the root filesystem
//! without those labels no rule can exempt it without exempting the
//! system itself. Every exemption wider than the build directory is
//! listed in [`Generated::wider`], for stderr. docs/policy-tmpfs.md has
//! the details.

use std::path::PathBuf;

use super::rule::{
    format_uuid, Access, Action, AppraiseType, Condition, Func, IdField, IdOp, LsmField, Policy,
    Rule, RuleOption,
};

/// tmpfs's statfs f_type (include/uapi/linux/magic.h).
pub const TMPFS_MAGIC: u64 = 0x0102_1994;

/// Filesystems that hold no files to appraise or measure, with their
/// statfs f_type (include/uapi/linux/magic.h): the kernel's own default
/// policies exempt the same ones.
pub const PSEUDO_FILESYSTEMS: &[(&str, u64)] = &[
    ("proc", 0x9fa0),
    ("sysfs", 0x6265_6572),
    ("debugfs", 0x6462_6720),
    ("tracefs", 0x7472_6163),
    ("securityfs", 0x7363_6673),
    ("devpts", 0x1cd1),
    ("cgroup", 0x0027_e0eb),
    ("cgroup2", 0x6367_7270),
    ("binfmt_misc", 0x4249_4e4d),
    ("selinuxfs", 0xf97c_ff8c),
    ("smackfs", 0x4341_5d53),
    ("nsfs", 0x6e73_6673),
    ("efivarfs", 0xde5e_81e4),
    ("bpf", 0xcafe_4a11),
    ("pstore", 0x6165_676c),
    ("configfs", 0x6265_6570),
    ("fusectl", 0x6573_5543),
    ("mqueue", 0x1980_0202),
    ("hugetlbfs", 0x9584_58f6),
];

/// What the policy appraises (`--appraise`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Programs root executes (BPRM_CHECK uid=0), and programs owned by
    /// root whoever executes them (BPRM_CHECK fowner=0: setuid-root ones).
    RootExec,
    /// Every program executed, by anyone.
    Exec,
    /// Every program executed and every file mapped executable (shared libraries).
    ExecMmap,
}

impl Scope {
    /// The value as `--appraise` takes it (`root-exec`, `exec`, `exec-mmap`).
    pub fn name(self) -> &'static str {
        match self {
            Scope::RootExec => "root-exec",
            Scope::Exec => "exec",
            Scope::ExecMmap => "exec-mmap",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Scope::RootExec => {
                "programs executed by root (uid 0), and programs owned by root whoever executes \
                 them (setuid-root ones included), must carry a valid signature"
            }
            Scope::Exec => "every program executed must carry a valid signature",
            Scope::ExecMmap => {
                "every program executed and every file mapped executable (shared libraries) \
                 must carry a valid signature"
            }
        }
    }

    /// The rules' own conditions: what the scope appraises (or measures).
    fn targets(self) -> Vec<Vec<Condition>> {
        let exec = vec![Condition::Func(Func::BprmCheck)];
        match self {
            // A setuid-root program run by a user passes uid=0 (the
            // caller's uid) and CREDS_CHECK euid=0 alike: the kernel asks
            // both before begin_new_exec applies the setuid bit (6.12,
            // tests/kernel/test_setuid_observe.py). fowner=0 catches it,
            // whoever runs it; the user's own programs stay outside.
            Scope::RootExec => vec![
                vec![
                    Condition::Func(Func::BprmCheck),
                    Condition::Id {
                        field: IdField::Uid,
                        op: IdOp::Equal,
                        value: 0,
                    },
                ],
                vec![
                    Condition::Func(Func::BprmCheck),
                    Condition::Id {
                        field: IdField::Fowner,
                        op: IdOp::Equal,
                        value: 0,
                    },
                ],
            ],
            Scope::Exec => vec![exec],
            Scope::ExecMmap => vec![
                exec,
                vec![
                    Condition::Func(Func::MmapCheck),
                    Condition::Mask {
                        access: Access::Exec,
                        any: false,
                    },
                ],
            ],
        }
    }
}

/// What `portage-ima policy` is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// What the appraise rules cover.
    pub scope: Scope,
    /// Add measure rules for what is appraised.
    pub measure: bool,
    /// Appraise POLICY_CHECK: a policy loaded later must be signed.
    pub require_signed_policy: bool,
    /// A first-boot policy: `measure` (template ima-sig) and `audit` rules
    /// where the appraise rules would be, so nothing is refused and
    /// `portage-ima audit` lists what enforcing would refuse. For machines
    /// where `ima_appraise=log` is ignored (Secure Boot).
    pub observe: bool,
}

/// Where Portage builds, relative to the filesystems of the system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildFs {
    /// A tmpfs, and the system is not on tmpfs.
    Tmpfs,
    /// A filesystem of its own, with its superblock uuid.
    Own {
        /// The filesystem's name (`ext4`; `fsmagic 0x...` for one not known).
        fstype: String,
        /// The superblock uuid, as an `fsuuid=` rule names it.
        uuid: [u8; 16],
    },
    /// A filesystem of its own whose uuid could not be read.
    OwnWithoutUuid {
        /// The filesystem's name (`ext4`; `fsmagic 0x...` for one not known).
        fstype: String,
    },
    /// The filesystem that also holds `with` (the root filesystem, /usr...).
    Shared {
        /// The system directory found on it (ROOT itself, or ROOT/usr, ...).
        with: PathBuf,
        /// The filesystem's name (`ext4`; `fsmagic 0x...` for one not known).
        fstype: String,
    },
}

/// A tmpfs (or devtmpfs) mount other than the build directory's: a
/// `dont_appraise fsmagic=0x1021994` exempts it too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtherTmpfs {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// Mounted `noexec`: nothing on it can be executed or mapped executable.
    pub noexec: bool,
}

/// The Portage setup a policy is derived from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setup {
    /// PORTAGE_TMPDIR's value.
    pub tmpdir: String,
    /// The directory builds happen in (`${PORTAGE_TMPDIR}/portage` when it exists).
    pub build_dir: PathBuf,
    /// The filesystem of `build_dir`, which decides how it can be exempted.
    pub build_fs: BuildFs,
    /// FEATURES has userpriv.
    pub userpriv: bool,
    /// A merge that copies keeps security.ima (FEATURES=xattr, not excluded).
    pub xattr: bool,
    /// Where FEATURES and PORTAGE_TMPDIR were read.
    pub source: String,
    /// Every other tmpfs mount of the machine (visible ones).
    pub other_tmpfs: Vec<OtherTmpfs>,
    /// SELinux runs with a policy defining Gentoo's `portage_tmp_t` and
    /// `portage_sandbox_t`.
    pub selinux_portage: bool,
}

impl Setup {
    /// The other tmpfs mounts where programs can run.
    fn exec_tmpfs(&self) -> Vec<String> {
        self.other_tmpfs
            .iter()
            .filter(|t| !t.noexec)
            .map(|t| t.mount_point.display().to_string())
            .collect()
    }
}

/// No policy can both appraise what was asked and let builds run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no policy can appraise {scope} and let builds run: {why}; {fix}")]
pub struct NoSafePolicy {
    /// The `--appraise` value asked for.
    pub scope: &'static str,
    /// Why the appraise rules would refuse what builds compile and run.
    pub why: String,
    /// What to change in the Portage setup or the request.
    pub fix: String,
}

/// A generated policy and what its user should know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generated {
    /// The rules, in the order the kernel matches them.
    pub policy: Policy,
    /// Things that will not work with this setup (also in the policy's header).
    pub warnings: Vec<String>,
    /// What the exemptions cover besides the build directory (also in the
    /// policy's comments), for stderr.
    pub wider: Vec<String>,
}

/// The rules that exempt the build directory.
struct Exemption {
    /// One `dont_appraise` and one `dont_measure` for each.
    conditions: Vec<Condition>,
    /// What they exempt, for the policy's comment.
    what: String,
    /// What they exempt besides the build directory.
    wider: Option<String>,
}

/// Gentoo's SELinux type for Portage's build files (under PORTAGE_TMPDIR).
pub const PORTAGE_TMP_TYPE: &str = "portage_tmp_t";
/// Gentoo's SELinux type for the build phases Portage runs in its sandbox.
pub const PORTAGE_SANDBOX_TYPE: &str = "portage_sandbox_t";

/// How the build directory is exempted, if it can be.
fn build_exemption(setup: &Setup) -> Option<Exemption> {
    let build = setup.build_dir.display();
    if setup.selinux_portage && !matches!(setup.build_fs, BuildFs::Own { .. }) {
        return Some(Exemption {
            conditions: vec![
                Condition::Lsm {
                    field: LsmField::ObjType,
                    label: PORTAGE_TMP_TYPE.into(),
                },
                Condition::Lsm {
                    field: LsmField::SubjType,
                    label: PORTAGE_SANDBOX_TYPE.into(),
                },
            ],
            what: format!(
                "SELinux runs Gentoo's policy: Portage's build files ({build}) are labelled \
                 {PORTAGE_TMP_TYPE} and its build phases run as {PORTAGE_SANDBOX_TYPE}"
            ),
            wider: Some(format!(
                "dont_appraise subj_type={PORTAGE_SANDBOX_TYPE} exempts whatever Portage's build \
                 phases (the {PORTAGE_SANDBOX_TYPE} domain) execute or map, from any directory"
            )),
        });
    }
    match &setup.build_fs {
        BuildFs::Tmpfs if setup.exec_tmpfs().is_empty() => {
            let others: Vec<String> = setup
                .other_tmpfs
                .iter()
                .map(|t| t.mount_point.display().to_string())
                .collect();
            Some(Exemption {
                conditions: vec![Condition::FsMagic(TMPFS_MAGIC)],
                what: format!(
                    "{build} is a tmpfs: this exempts every tmpfs; every other one is mounted \
                     noexec"
                ),
                wider: Some(format!(
                    "dont_appraise fsmagic={TMPFS_MAGIC:#x} exempts every tmpfs and devtmpfs, \
                     not only {build}: the others ({}) are mounted noexec, so nothing there can \
                     be executed or mapped executable; a tmpfs mounted later without noexec \
                     (systemd-logind's /run/user/UID at login) would be exempt too",
                    if others.is_empty() {
                        "none now".to_string()
                    } else {
                        others.join(", ")
                    }
                )),
            })
        }
        BuildFs::Own { fstype, uuid } => Some(Exemption {
            conditions: vec![Condition::FsUuid(*uuid)],
            what: format!(
                "{build} is on its own {fstype} filesystem, uuid {}",
                format_uuid(uuid)
            ),
            wider: None,
        }),
        BuildFs::Tmpfs | BuildFs::OwnWithoutUuid { .. } | BuildFs::Shared { .. } => None,
    }
}

/// Why the build directory cannot be exempted.
fn why_not_exempt(setup: &Setup) -> String {
    match &setup.build_fs {
        BuildFs::Shared { with, fstype } => format!(
            "PORTAGE_TMPDIR ({}) is on the {fstype} filesystem that also holds {}, and no rule \
             can exempt it without exempting that",
            setup.build_dir.display(),
            with.display()
        ),
        BuildFs::OwnWithoutUuid { fstype } => format!(
            "PORTAGE_TMPDIR ({}) is on its own {fstype} filesystem, but its uuid could not be \
             read (no FS_IOC_GETFSUUID and no /dev/disk/by-uuid entry) to exempt it by fsuuid",
            setup.build_dir.display()
        ),
        BuildFs::Tmpfs => format!(
            "PORTAGE_TMPDIR ({}) is a tmpfs, and the rule that would exempt it, dont_appraise \
             fsmagic={TMPFS_MAGIC:#x}, exempts every tmpfs, among them {}, which are not \
             mounted noexec: anyone who can write there could run unsigned programs",
            setup.build_dir.display(),
            setup.exec_tmpfs().join(", ")
        ),
        BuildFs::Own { .. } => String::new(),
    }
}

/// What to change so that the build directory can be exempted.
fn how_to_exempt(setup: &Setup) -> String {
    match &setup.build_fs {
        BuildFs::Tmpfs => format!(
            "mount {} noexec (in /etc/fstab, or the service that mounts them), or put \
             PORTAGE_TMPDIR on a filesystem of its own, which is exempted by its fsuuid",
            setup.exec_tmpfs().join(", ")
        ),
        _ => MOVE_TMPDIR.to_string(),
    }
}

const MOVE_TMPDIR: &str =
    "put PORTAGE_TMPDIR on a filesystem of its own (exempted by its fsuuid), \
     or on a tmpfs (e.g. mount one on /var/tmp/portage, as the Gentoo handbook suggests) when \
     every other tmpfs is mounted noexec";

/// The policy for `setup`, or why none can let builds run.
pub fn generate(setup: &Setup, request: &Request) -> Result<Generated, NoSafePolicy> {
    let exemption = build_exemption(setup);
    let scope = request.scope;
    // Who the appraise rules cover among those that run build products.
    let appraises_build_user = scope != Scope::RootExec || !setup.userpriv;
    if exemption.is_none() && appraises_build_user {
        let (why, fix) = if scope == Scope::RootExec {
            (
                format!(
                    "without FEATURES=userpriv every build phase runs as root, so the uid=0 rule \
                     appraises the unsigned programs builds compile and run (configure tests, \
                     src_test); {}",
                    why_not_exempt(setup)
                ),
                format!(
                    "add userpriv to FEATURES (Portage's default), or {}",
                    how_to_exempt(setup)
                ),
            )
        } else {
            (
                format!(
                    "--appraise {} covers the portage user too, which runs the unsigned programs \
                     builds compile (configure tests, src_compile, src_test); {}",
                    scope.name(),
                    why_not_exempt(setup)
                ),
                format!(
                    "{}; or use --appraise root-exec with FEATURES=userpriv",
                    how_to_exempt(setup)
                ),
            )
        };
        return Err(NoSafePolicy {
            scope: scope.name(),
            why,
            fix,
        });
    }

    let mut warnings = Vec::new();
    if exemption.is_none() {
        warnings.push(format!(
            "src_install and the pkg_* phases run as root: a package that runs a program it \
             built from the work directory there (or one with RESTRICT=userpriv, or a src_test \
             with PROPERTIES=test_privileged) is denied, since {}; {}",
            why_not_exempt(setup),
            how_to_exempt(setup)
        ));
    }
    let copies = matches!(
        setup.build_fs,
        BuildFs::Tmpfs | BuildFs::Own { .. } | BuildFs::OwnWithoutUuid { .. }
    );
    if copies && !setup.xattr {
        warnings.push(
            "PORTAGE_TMPDIR is on another filesystem and the merge copies files without \
             security.ima (no FEATURES=xattr, or PORTAGE_XATTR_EXCLUDE drops it): merged files \
             are unsigned until postinst signs them, so the old version's pkg_postrm (and a \
             pkg_preinst) that runs the new programs is denied; under enforce the hook stops \
             such merges in preinst (unless allow_unsigned_window = true); add xattr to FEATURES and keep security.ima out of PORTAGE_XATTR_EXCLUDE \
             (portage-ima doctor gives the line)"
                .to_string(),
        );
    }

    let mut p = Policy::default();
    p.comment("IMA policy for a Gentoo system, written by `portage-ima policy`.");
    p.comment_wrapped(&format!(
        "{}: {} ({}).",
        if request.observe {
            "Observe, nothing appraised; enforcing would appraise"
        } else {
            "Appraise"
        },
        scope.name(),
        scope.describe()
    ));
    p.comment_wrapped(&format!(
        "Derived from this Portage setup ({}):",
        setup.source
    ));
    p.comment_wrapped(&format!(
        "- PORTAGE_TMPDIR={}: builds run in {}, {}",
        setup.tmpdir,
        setup.build_dir.display(),
        match &setup.build_fs {
            BuildFs::Tmpfs => "a tmpfs".to_string(),
            BuildFs::Own { fstype, uuid } =>
                format!("its own {fstype} filesystem ({})", format_uuid(uuid)),
            BuildFs::OwnWithoutUuid { fstype } => format!("its own {fstype} filesystem"),
            BuildFs::Shared { with, fstype } =>
                format!("on the {fstype} filesystem of {}", with.display()),
        }
    ));
    p.comment_wrapped(&format!(
        "- FEATURES: {}, {}",
        if setup.userpriv {
            "userpriv (src_unpack to src_test run as the portage user)"
        } else {
            "no userpriv (every phase runs as root)"
        },
        if setup.xattr {
            "xattr keeps security.ima"
        } else {
            "no xattr"
        }
    ));
    for w in &warnings {
        p.comment_wrapped(&format!("- WARNING: {w}"));
    }
    if request.measure {
        p.comment_wrapped(
            "Measurements carry the file signatures in the log only with the ima-sig template: \
             boot with ima_template=ima-sig.",
        );
    }
    p.comment_wrapped(
        "Rules are matched in order; the first dont_appraise or appraise that matches decides.",
    );

    if request.require_signed_policy {
        p.blank();
        p.comment_wrapped(
            "A policy loaded later must be signed (written by path, e.g. `echo /etc/ima/ima-policy \
             > /sys/kernel/security/ima/policy`). First, so no exemption below applies to it.",
        );
        p.rule(
            Rule::new(Action::Appraise)
                .when(Condition::Func(Func::PolicyCheck))
                .with(RuleOption::AppraiseType(AppraiseType::ImaSig)),
        );
    }

    p.blank();
    p.comment("Pseudo filesystems hold nothing to appraise or measure.");
    for (name, magic) in PSEUDO_FILESYSTEMS {
        p.comment(*name);
        p.rule(Rule::new(Action::DontAppraise).when(Condition::FsMagic(*magic)));
        p.rule(Rule::new(Action::DontMeasure).when(Condition::FsMagic(*magic)));
    }

    let mut wider = Vec::new();
    if let Some(exemption) = exemption {
        p.blank();
        p.comment_wrapped(
            "Portage's build directory: builds run the unsigned programs they compile there.",
        );
        p.comment_wrapped(&exemption.what);
        if let Some(w) = exemption.wider {
            p.comment_wrapped(&format!("WIDER THAN THE BUILD DIRECTORY: {w}."));
            wider.push(w);
        }
        for condition in exemption.conditions {
            p.rule(Rule::new(Action::DontAppraise).when(condition.clone()));
            p.rule(Rule::new(Action::DontMeasure).when(condition));
        }
    }

    p.blank();
    if request.observe {
        observe_rules(&mut p, scope);
        return Ok(Generated {
            policy: p,
            warnings,
            wider,
        });
    }
    p.comment_wrapped(&format!("What is appraised: {}.", scope.describe()));
    for target in scope.targets() {
        let mut rule = Rule::new(Action::Appraise);
        rule.conditions = target;
        p.rule(rule.with(RuleOption::AppraiseType(AppraiseType::ImaSig)));
    }
    if request.measure {
        p.comment("The same, measured into the IMA log.");
        for target in scope.targets() {
            let mut rule = Rule::new(Action::Measure);
            rule.conditions = target;
            p.rule(rule);
        }
    }
    Ok(Generated {
        policy: p,
        warnings,
        wider,
    })
}

/// The observe policy's rules: what `scope` would appraise is measured
/// with its signature (template `ima-sig`, whatever the boot's default
/// template) and audited (`type=1805` records, once per file), and nothing
/// is appraised.
fn observe_rules(p: &mut Policy, scope: Scope) {
    p.comment_wrapped(&format!(
        "FIRST BOOT (observe): nothing is appraised. Where enforcing would appraise ({}), \
         each file is measured with its signature and audited instead; after this boot \
         `portage-ima audit --measurements` lists every one enforcing would refuse. Then \
         install the policy without --observe.",
        scope.describe()
    ));
    for target in scope.targets() {
        let mut measure = Rule::new(Action::Measure);
        measure.conditions = target.clone();
        p.rule(measure.with(RuleOption::Template("ima-sig".into())));
        let mut audit = Rule::new(Action::Audit);
        audit.conditions = target;
        p.rule(audit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // libc's type for them (__fsword_t) differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    fn magic_numbers_are_the_kernels() {
        let libc_magic: &[(&str, i64)] = &[
            ("proc", libc::PROC_SUPER_MAGIC as i64),
            ("sysfs", libc::SYSFS_MAGIC as i64),
            ("debugfs", libc::DEBUGFS_MAGIC as i64),
            ("tracefs", libc::TRACEFS_MAGIC as i64),
            ("securityfs", libc::SECURITYFS_MAGIC as i64),
            ("devpts", libc::DEVPTS_SUPER_MAGIC as i64),
            ("cgroup", libc::CGROUP_SUPER_MAGIC as i64),
            ("cgroup2", libc::CGROUP2_SUPER_MAGIC as i64),
            ("selinuxfs", libc::SELINUX_MAGIC as i64),
            ("smackfs", libc::SMACK_MAGIC as i64),
            ("nsfs", libc::NSFS_MAGIC as i64),
            ("bpf", libc::BPF_FS_MAGIC as i64),
            ("hugetlbfs", libc::HUGETLBFS_MAGIC as i64),
        ];
        for (name, magic) in libc_magic {
            let ours = PSEUDO_FILESYSTEMS
                .iter()
                .find(|(n, _)| n == name)
                .unwrap()
                .1;
            assert_eq!(ours, *magic as u32 as u64, "{name}");
        }
        assert_eq!(TMPFS_MAGIC, libc::TMPFS_MAGIC as u64);
    }
}
