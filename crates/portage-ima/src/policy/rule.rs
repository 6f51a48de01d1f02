//! IMA policy rules as plain data, in the kernel's ABI
//! (Documentation/ABI/testing/ima_policy): one rule a line,
//! `action [condition ...] [option ...]`, `#` comment lines and blank lines
//! skipped. The kernel takes a policy written to
//! /sys/kernel/security/ima/policy (the text, or a path to a file holding it).
//!
//! How the kernel uses a policy, which the generator relies on: for each
//! access it walks the rules in order, and the first rule that matches
//! decides each of measure, appraise, audit and hash separately (a
//! `dont_appraise` before an `appraise` exempts what it matches). Within a
//! rule every condition must hold.
//!
//! Conditions are kept as typed values (not strings) so that a later
//! `policy --check` can evaluate rules against files.

mod text;

/// What a rule does when it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// `measure`: the file's digest goes into the measurement list (and a
    /// TPM PCR).
    Measure,
    /// `dont_measure`: what it matches is not measured.
    DontMeasure,
    /// `appraise`: the file's `security.ima` is checked before the access,
    /// which an enforcing kernel refuses when the check fails.
    Appraise,
    /// `dont_appraise`: what it matches is not appraised.
    DontAppraise,
    /// `audit`: the file's digest is written to the audit log.
    Audit,
    /// `hash`: the kernel stores the file's digest in `security.ima`.
    Hash,
    /// `dont_hash`: what it matches gets no stored digest.
    DontHash,
}

impl Action {
    /// Every action, in the ABI's order.
    pub const ALL: [Action; 7] = [
        Action::Measure,
        Action::DontMeasure,
        Action::Appraise,
        Action::DontAppraise,
        Action::Audit,
        Action::Hash,
        Action::DontHash,
    ];

    /// The word that starts the rule (`dont_appraise`).
    pub fn keyword(self) -> &'static str {
        match self {
            Action::Measure => "measure",
            Action::DontMeasure => "dont_measure",
            Action::Appraise => "appraise",
            Action::DontAppraise => "dont_appraise",
            Action::Audit => "audit",
            Action::Hash => "hash",
            Action::DontHash => "dont_hash",
        }
    }
}

/// The hook a rule applies to (`func=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Func {
    /// A program being executed (execve).
    BprmCheck,
    /// The same execve, matched against the new program's credentials
    /// (`bprm->cred`); the kernel asks before it applies a setuid bit
    /// (`begin_new_exec` does that later), so `euid=0` here does not catch
    /// a setuid-root program run by a user.
    CredsCheck,
    /// A file mapped with PROT_EXEC (shared libraries).
    MmapCheck,
    /// As MMAP_CHECK, on the protection the application asked for.
    MmapCheckReqprot,
    /// A file opened (read, write, ...).
    FileCheck,
    /// A kernel module being loaded.
    ModuleCheck,
    /// Firmware being loaded.
    FirmwareCheck,
    /// A policy file written to securityfs by path.
    PolicyCheck,
    /// A kernel image loaded by kexec_file_load.
    KexecKernelCheck,
    /// An initramfs loaded by kexec_file_load.
    KexecInitramfsCheck,
    /// The command line kexec_file_load passes (measured, not a file).
    KexecCmdline,
    /// A key added to a keyring (measured, not a file).
    KeyCheck,
    /// Data the kernel itself measures (SELinux state, ...), by label.
    CriticalData,
    /// A write of `security.ima`: which hash algorithms it may use.
    SetxattrCheck,
}

impl Func {
    /// Every hook, in the ABI's order.
    pub const ALL: [Func; 14] = [
        Func::BprmCheck,
        Func::CredsCheck,
        Func::MmapCheck,
        Func::MmapCheckReqprot,
        Func::FileCheck,
        Func::ModuleCheck,
        Func::FirmwareCheck,
        Func::PolicyCheck,
        Func::KexecKernelCheck,
        Func::KexecInitramfsCheck,
        Func::KexecCmdline,
        Func::KeyCheck,
        Func::CriticalData,
        Func::SetxattrCheck,
    ];

    /// The name after `func=` (`BPRM_CHECK`).
    pub fn keyword(self) -> &'static str {
        match self {
            Func::BprmCheck => "BPRM_CHECK",
            Func::CredsCheck => "CREDS_CHECK",
            Func::MmapCheck => "MMAP_CHECK",
            Func::MmapCheckReqprot => "MMAP_CHECK_REQPROT",
            Func::FileCheck => "FILE_CHECK",
            Func::ModuleCheck => "MODULE_CHECK",
            Func::FirmwareCheck => "FIRMWARE_CHECK",
            Func::PolicyCheck => "POLICY_CHECK",
            Func::KexecKernelCheck => "KEXEC_KERNEL_CHECK",
            Func::KexecInitramfsCheck => "KEXEC_INITRAMFS_CHECK",
            Func::KexecCmdline => "KEXEC_CMDLINE",
            Func::KeyCheck => "KEY_CHECK",
            Func::CriticalData => "CRITICAL_DATA",
            Func::SetxattrCheck => "SETXATTR_CHECK",
        }
    }

    /// The name, or one of the kernel's old aliases (FILE_MMAP, PATH_CHECK).
    pub fn parse(word: &str) -> Option<Func> {
        match word {
            "FILE_MMAP" => Some(Func::MmapCheck),
            "PATH_CHECK" => Some(Func::FileCheck),
            _ => Func::ALL.into_iter().find(|f| f.keyword() == word),
        }
    }
}

/// The access a `mask=` condition is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `MAY_EXEC`: running or mapping the file executable.
    Exec,
    /// `MAY_WRITE`: opening it for writing.
    Write,
    /// `MAY_READ`: opening it for reading.
    Read,
    /// `MAY_APPEND`: opening it to append.
    Append,
}

impl Access {
    /// Every access `mask=` can name.
    pub const ALL: [Access; 4] = [Access::Exec, Access::Write, Access::Read, Access::Append];

    /// The name after `mask=` (`MAY_EXEC`).
    pub fn keyword(self) -> &'static str {
        match self {
            Access::Exec => "MAY_EXEC",
            Access::Write => "MAY_WRITE",
            Access::Read => "MAY_READ",
            Access::Append => "MAY_APPEND",
        }
    }
}

/// The ids a rule can compare (`uid=0`, `fowner>999`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdField {
    /// The real uid of the process.
    Uid,
    /// The effective uid of the process.
    Euid,
    /// The real gid of the process.
    Gid,
    /// The effective gid of the process.
    Egid,
    /// The owner of the file.
    Fowner,
    /// The group of the file.
    Fgroup,
}

impl IdField {
    /// Every id a rule can compare.
    pub const ALL: [IdField; 6] = [
        IdField::Uid,
        IdField::Euid,
        IdField::Gid,
        IdField::Egid,
        IdField::Fowner,
        IdField::Fgroup,
    ];

    /// The condition's name (`fowner`).
    pub fn keyword(self) -> &'static str {
        match self {
            IdField::Uid => "uid",
            IdField::Euid => "euid",
            IdField::Gid => "gid",
            IdField::Egid => "egid",
            IdField::Fowner => "fowner",
            IdField::Fgroup => "fgroup",
        }
    }
}

/// How an id is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdOp {
    /// `=`
    Equal,
    /// `<`
    Less,
    /// `>`
    Greater,
}

impl IdOp {
    /// The operator between the field and the value.
    pub fn symbol(self) -> char {
        match self {
            IdOp::Equal => '=',
            IdOp::Less => '<',
            IdOp::Greater => '>',
        }
    }

    /// Whether `actual` satisfies `op value`.
    pub fn holds(self, actual: u32, value: u32) -> bool {
        match self {
            IdOp::Equal => actual == value,
            IdOp::Less => actual < value,
            IdOp::Greater => actual > value,
        }
    }
}

/// The LSM labels a rule can match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LsmField {
    /// The file's SELinux user.
    ObjUser,
    /// The file's SELinux role.
    ObjRole,
    /// The file's SELinux type (`portage_tmp_t`).
    ObjType,
    /// The process's SELinux user.
    SubjUser,
    /// The process's SELinux role.
    SubjRole,
    /// The process's SELinux type.
    SubjType,
}

impl LsmField {
    /// Every label a rule can match.
    pub const ALL: [LsmField; 6] = [
        LsmField::ObjUser,
        LsmField::ObjRole,
        LsmField::ObjType,
        LsmField::SubjUser,
        LsmField::SubjRole,
        LsmField::SubjType,
    ];

    /// The condition's name (`obj_type`).
    pub fn keyword(self) -> &'static str {
        match self {
            LsmField::ObjUser => "obj_user",
            LsmField::ObjRole => "obj_role",
            LsmField::ObjType => "obj_type",
            LsmField::SubjUser => "subj_user",
            LsmField::SubjRole => "subj_role",
            LsmField::SubjType => "subj_type",
        }
    }
}

/// What a rule matches on. Every condition of a rule must hold.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Condition {
    /// `func=`: the hook asking.
    Func(Func),
    /// `mask=MAY_WRITE`: the access asked for is exactly this one;
    /// `mask=^MAY_WRITE` (`any`): the access asked for includes it (an
    /// O_RDWR open asks MAY_READ|MAY_WRITE, which only the second matches).
    Mask {
        /// The access named.
        access: Access,
        /// Written `^`: the access asked for includes it.
        any: bool,
    },
    /// The filesystem's statfs f_type.
    FsMagic(u64),
    /// The filesystem type's name (`ext4`, `tmpfs`).
    FsName(String),
    /// The filesystem's uuid (the superblock's s_uuid).
    FsUuid([u8; 16]),
    /// A uid or gid compared with a number (`fowner=0`, `uid>999`).
    Id {
        /// Whose id: the process's or the file's.
        field: IdField,
        /// How it is compared.
        op: IdOp,
        /// The number it is compared with.
        value: u32,
    },
    /// An LSM label the file or the process must have (`obj_type=...`).
    Lsm {
        /// Which label.
        field: LsmField,
        /// The label's value.
        label: String,
    },
    /// KEY_CHECK: the keyrings, `|`-separated.
    Keyrings(Vec<String>),
    /// CRITICAL_DATA: the label.
    Label(String),
}

/// `appraise_type=`: what appraisal accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AppraiseType {
    /// A signature in security.ima (no digest-only hash).
    ImaSig,
    /// A signature in security.ima or appended to the file (modules, kexec).
    ImaSigOrModSig,
    /// A version 3 signature (fs-verity digests).
    SigV3,
}

impl AppraiseType {
    /// Every value the kernel accepts.
    pub const ALL: [AppraiseType; 3] = [
        AppraiseType::ImaSig,
        AppraiseType::ImaSigOrModSig,
        AppraiseType::SigV3,
    ];

    /// The value after `appraise_type=`.
    pub fn keyword(self) -> &'static str {
        match self {
            AppraiseType::ImaSig => "imasig",
            AppraiseType::ImaSigOrModSig => "imasig|modsig",
            AppraiseType::SigV3 => "sigv3",
        }
    }
}

/// What a rule does besides matching.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RuleOption {
    /// `appraise_type=`: only a signature is accepted, not a digest.
    AppraiseType(AppraiseType),
    /// `appraise_flag=check_blacklist` (the only flag the kernel knows).
    AppraiseFlag(String),
    /// `appraise_algos=sha256,sha512`.
    AppraiseAlgos(Vec<String>),
    /// `digest_type=verity`.
    DigestTypeVerity,
    /// `template=ima-sig`: the measurement list template of a measure rule.
    Template(String),
    /// `pcr=N`: the TPM PCR measurements extend.
    Pcr(u32),
    /// `permit_directio`: O_DIRECT opens are not refused for lack of a
    /// measurement or appraisal.
    PermitDirectio,
}

/// One rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    /// What it does when it matches.
    pub action: Action,
    /// What it matches on, all of which must hold, in the written order.
    pub conditions: Vec<Condition>,
    /// Its options (`appraise_type=`, `template=`, ...), in the written order.
    pub options: Vec<RuleOption>,
}

impl Rule {
    /// A rule that matches everything until conditions are added.
    pub fn new(action: Action) -> Rule {
        Rule {
            action,
            conditions: Vec::new(),
            options: Vec::new(),
        }
    }

    /// The rule with one more condition.
    pub fn when(mut self, condition: Condition) -> Rule {
        self.conditions.push(condition);
        self
    }

    /// The rule with one more option.
    pub fn with(mut self, option: RuleOption) -> Rule {
        self.options.push(option);
        self
    }

    /// The rule's `func=`, if it has one.
    pub fn func(&self) -> Option<Func> {
        self.conditions.iter().find_map(|c| match c {
            Condition::Func(f) => Some(*f),
            _ => None,
        })
    }

    /// The comparisons of `field` the rule makes.
    pub fn ids(&self, field: IdField) -> impl Iterator<Item = (IdOp, u32)> + '_ {
        self.conditions.iter().filter_map(move |c| match c {
            Condition::Id {
                field: f,
                op,
                value,
            } if *f == field => Some((*op, *value)),
            _ => None,
        })
    }

    /// Whether the rule requires a signature (`appraise_type=imasig...`).
    pub fn requires_signature(&self) -> bool {
        self.options
            .iter()
            .any(|o| matches!(o, RuleOption::AppraiseType(_)))
    }
}

/// One line of a policy file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Line {
    /// A rule.
    Rule(Rule),
    /// A `#` comment, without the `#` and the one space after it.
    Comment(String),
    /// An empty line (or one of only white space).
    Blank,
}

/// A policy: its lines in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Policy {
    /// Rules, comments and blank lines, as they are written.
    pub lines: Vec<Line>,
}

impl Policy {
    /// The rules, in the order the kernel walks them.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.lines.iter().filter_map(|l| match l {
            Line::Rule(r) => Some(r),
            _ => None,
        })
    }

    /// The rules with their 1-based line numbers in [`Policy::to_string`]'s
    /// text (and in the text it was parsed from, when that had one line per
    /// entry, which a parsed policy always has).
    pub fn numbered_rules(&self) -> impl Iterator<Item = (usize, &Rule)> {
        self.lines.iter().enumerate().filter_map(|(i, l)| match l {
            Line::Rule(r) => Some((i + 1, r)),
            _ => None,
        })
    }

    /// Adds a one-line comment.
    pub fn comment(&mut self, text: impl Into<String>) {
        self.lines.push(Line::Comment(text.into()));
    }

    /// A comment of several lines: `text` wrapped at word boundaries so
    /// that each line stays under 80 columns; the lines of a `- ` list
    /// item are indented under its text.
    pub fn comment_wrapped(&mut self, text: &str) {
        const WIDTH: usize = 76;
        let indent = if text.starts_with("- ") { "  " } else { "" };
        let mut line = String::new();
        for word in text.split_whitespace() {
            if !line.trim().is_empty() && line.len() + 1 + word.len() > WIDTH {
                self.comment(std::mem::replace(&mut line, indent.to_string()));
            }
            if !line.trim().is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        if !line.trim().is_empty() {
            self.comment(line);
        }
    }

    /// Adds a rule.
    pub fn rule(&mut self, rule: Rule) {
        self.lines.push(Line::Rule(rule));
    }

    /// Adds a blank line.
    pub fn blank(&mut self) {
        self.lines.push(Line::Blank);
    }
}

/// The canonical text of a uuid, as the kernel's `%pU` and uuid_parse use.
pub fn format_uuid(uuid: &[u8; 16]) -> String {
    let h = hex::encode(uuid);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (the kernel wants exactly that form).
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let dashes_at = [8, 13, 18, 23];
    if text.len() != 36
        || !text
            .char_indices()
            .all(|(i, c)| (c == '-') == dashes_at.contains(&i))
    {
        return None;
    }
    let digits: String = text.chars().filter(|&c| c != '-').collect();
    let mut out = [0u8; 16];
    hex::decode_to_slice(digits, &mut out).ok()?;
    Some(out)
}
