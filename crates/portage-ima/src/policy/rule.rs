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

use std::fmt;

/// What a rule does when it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Measure,
    DontMeasure,
    Appraise,
    DontAppraise,
    Audit,
    Hash,
    DontHash,
}

impl Action {
    pub const ALL: [Action; 7] = [
        Action::Measure,
        Action::DontMeasure,
        Action::Appraise,
        Action::DontAppraise,
        Action::Audit,
        Action::Hash,
        Action::DontHash,
    ];

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
    ModuleCheck,
    FirmwareCheck,
    /// A policy file written to securityfs by path.
    PolicyCheck,
    KexecKernelCheck,
    KexecInitramfsCheck,
    KexecCmdline,
    KeyCheck,
    CriticalData,
    SetxattrCheck,
}

impl Func {
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
    Exec,
    Write,
    Read,
    Append,
}

impl Access {
    pub const ALL: [Access; 4] = [Access::Exec, Access::Write, Access::Read, Access::Append];

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
    Gid,
    Egid,
    /// The owner of the file.
    Fowner,
    /// The group of the file.
    Fgroup,
}

impl IdField {
    pub const ALL: [IdField; 6] = [
        IdField::Uid,
        IdField::Euid,
        IdField::Gid,
        IdField::Egid,
        IdField::Fowner,
        IdField::Fgroup,
    ];

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
    Equal,
    Less,
    Greater,
}

impl IdOp {
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
    ObjUser,
    ObjRole,
    ObjType,
    SubjUser,
    SubjRole,
    SubjType,
}

impl LsmField {
    pub const ALL: [LsmField; 6] = [
        LsmField::ObjUser,
        LsmField::ObjRole,
        LsmField::ObjType,
        LsmField::SubjUser,
        LsmField::SubjRole,
        LsmField::SubjType,
    ];

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
    Func(Func),
    /// `mask=MAY_WRITE`: the access asked for is exactly this one;
    /// `mask=^MAY_WRITE` (`any`): the access asked for includes it (an
    /// O_RDWR open asks MAY_READ|MAY_WRITE, which only the second matches).
    Mask {
        access: Access,
        any: bool,
    },
    /// The filesystem's statfs f_type.
    FsMagic(u64),
    /// The filesystem type's name (`ext4`, `tmpfs`).
    FsName(String),
    /// The filesystem's uuid (the superblock's s_uuid).
    FsUuid([u8; 16]),
    Id {
        field: IdField,
        op: IdOp,
        value: u32,
    },
    Lsm {
        field: LsmField,
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
    pub const ALL: [AppraiseType; 3] = [
        AppraiseType::ImaSig,
        AppraiseType::ImaSigOrModSig,
        AppraiseType::SigV3,
    ];

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
    PermitDirectio,
}

/// One rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    pub action: Action,
    pub conditions: Vec<Condition>,
    pub options: Vec<RuleOption>,
}

impl Rule {
    pub fn new(action: Action) -> Rule {
        Rule {
            action,
            conditions: Vec::new(),
            options: Vec::new(),
        }
    }

    pub fn when(mut self, condition: Condition) -> Rule {
        self.conditions.push(condition);
        self
    }

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
    Rule(Rule),
    /// A `#` comment, without the `#` and the one space after it.
    Comment(String),
    Blank,
}

/// A policy: its lines in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Policy {
    pub lines: Vec<Line>,
}

impl Policy {
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

    pub fn rule(&mut self, rule: Rule) {
        self.lines.push(Line::Rule(rule));
    }

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

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::Func(func) => write!(f, "func={}", func.keyword()),
            Condition::Mask { access, any } => {
                write!(
                    f,
                    "mask={}{}",
                    if *any { "^" } else { "" },
                    access.keyword()
                )
            }
            Condition::FsMagic(magic) => write!(f, "fsmagic={magic:#x}"),
            Condition::FsName(name) => write!(f, "fsname={name}"),
            Condition::FsUuid(uuid) => write!(f, "fsuuid={}", format_uuid(uuid)),
            Condition::Id { field, op, value } => {
                write!(f, "{}{}{value}", field.keyword(), op.symbol())
            }
            Condition::Lsm { field, label } => write!(f, "{}={label}", field.keyword()),
            Condition::Keyrings(names) => write!(f, "keyrings={}", names.join("|")),
            Condition::Label(label) => write!(f, "label={label}"),
        }
    }
}

impl fmt::Display for RuleOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleOption::AppraiseType(t) => write!(f, "appraise_type={}", t.keyword()),
            RuleOption::AppraiseFlag(flag) => write!(f, "appraise_flag={flag}"),
            RuleOption::AppraiseAlgos(algos) => write!(f, "appraise_algos={}", algos.join(",")),
            RuleOption::DigestTypeVerity => f.write_str("digest_type=verity"),
            RuleOption::Template(t) => write!(f, "template={t}"),
            RuleOption::Pcr(n) => write!(f, "pcr={n}"),
            RuleOption::PermitDirectio => f.write_str("permit_directio"),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.action.keyword())?;
        for c in &self.conditions {
            write!(f, " {c}")?;
        }
        for o in &self.options {
            write!(f, " {o}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            match line {
                Line::Rule(r) => writeln!(f, "{r}")?,
                Line::Comment(c) if c.is_empty() => writeln!(f, "#")?,
                Line::Comment(c) => writeln!(f, "# {c}")?,
                Line::Blank => writeln!(f)?,
            }
        }
        Ok(())
    }
}
