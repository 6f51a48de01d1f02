//! Which rule of a policy decides whether an access is appraised, by the
//! kernel's matching rules (security/integrity/ima/ima_policy.c,
//! `ima_match_rules`): rules are walked in order, the first `appraise` or
//! `dont_appraise` whose conditions all hold decides; a rule without
//! `func=` applies to every hook; `mask=X` matches an access that asks
//! exactly X, `mask=^X` one that asks X among others.
//!
//! Conditions that cannot be evaluated here (LSM labels, a filesystem whose
//! uuid or name is not known) make a rule *possibly* matching: an
//! `appraise` rule that possibly matches is reported as such, a
//! `dont_appraise` that possibly matches is not relied on.

use super::rule::{Access, Action, Condition, Func, IdField, Policy, Rule};

/// The filesystem a file is on, as far as it is known.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileSystem {
    /// statfs f_type.
    pub magic: u64,
    /// The superblock's uuid, as `fsuuid=` compares it.
    pub uuid: Option<[u8; 16]>,
    /// The type's name, as `fsname=` compares it.
    pub name: Option<String>,
}

/// One access to one file: what the kernel's hook knows when it asks the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileAccess {
    /// The hook asking (`BPRM_CHECK` for an execve).
    pub func: Func,
    /// What the access asks (MAY_EXEC for an execve or an executable mapping).
    pub mask: Vec<Access>,
    /// The process's real uid.
    pub uid: u32,
    /// The process's effective uid.
    pub euid: u32,
    /// The process's real gid.
    pub gid: u32,
    /// The process's effective gid.
    pub egid: u32,
    /// The file's owner.
    pub fowner: u32,
    /// The file's group.
    pub fgroup: u32,
    /// The filesystem the file is on.
    pub fs: FileSystem,
}

/// Whether a rule applies to an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    /// Every condition holds.
    Yes,
    /// Some condition certainly fails.
    No,
    /// Depends on something not known here (an LSM label, ...).
    Maybe,
}

/// Which rule decided whether an access is appraised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appraisal<'a> {
    /// An `appraise` rule (at that 1-based line) applies: the file must verify.
    Appraised {
        /// The rule's line.
        line: usize,
        /// The rule.
        rule: &'a Rule,
        /// False when the rule's match depends on what is not known here
        /// ([`Match::Maybe`]).
        certain: bool,
    },
    /// A `dont_appraise` rule exempts it.
    Exempted {
        /// The rule's line.
        line: usize,
        /// The rule.
        rule: &'a Rule,
    },
    /// No rule appraises it.
    NotCovered,
}

fn condition_holds(c: &Condition, a: &FileAccess) -> Match {
    let yes = |b: bool| if b { Match::Yes } else { Match::No };
    match c {
        Condition::Func(f) => yes(*f == a.func),
        Condition::Mask { access, any } => {
            if *any {
                yes(a.mask.contains(access))
            } else {
                yes(a.mask == [*access])
            }
        }
        Condition::FsMagic(m) => yes(*m == a.fs.magic),
        Condition::FsUuid(u) => match a.fs.uuid {
            Some(known) => yes(known == *u),
            None => Match::Maybe,
        },
        Condition::FsName(n) => match &a.fs.name {
            Some(known) => yes(known == n),
            None => Match::Maybe,
        },
        Condition::Id { field, op, value } => {
            let actual = match field {
                IdField::Uid => a.uid,
                IdField::Euid => a.euid,
                IdField::Gid => a.gid,
                IdField::Egid => a.egid,
                IdField::Fowner => a.fowner,
                IdField::Fgroup => a.fgroup,
            };
            yes(op.holds(actual, *value))
        }
        Condition::Lsm { .. } => Match::Maybe,
        // Only KEY_CHECK and CRITICAL_DATA rules carry these; files never match.
        Condition::Keyrings(_) | Condition::Label(_) => Match::No,
    }
}

/// Whether every condition of `rule` holds for `access`.
pub fn matches(rule: &Rule, access: &FileAccess) -> Match {
    let mut result = Match::Yes;
    for c in &rule.conditions {
        match condition_holds(c, access) {
            Match::No => return Match::No,
            Match::Maybe => result = Match::Maybe,
            Match::Yes => {}
        }
    }
    result
}

/// The rule that decides whether `access` is appraised.
pub fn appraisal<'a>(policy: &'a Policy, access: &FileAccess) -> Appraisal<'a> {
    for (line, rule) in policy.numbered_rules() {
        let m = matches(rule, access);
        match (rule.action, m) {
            (Action::DontAppraise, Match::Yes) => return Appraisal::Exempted { line, rule },
            (Action::Appraise, Match::Yes | Match::Maybe) => {
                return Appraisal::Appraised {
                    line,
                    rule,
                    certain: m == Match::Yes,
                }
            }
            _ => {}
        }
    }
    Appraisal::NotCovered
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse_policy;

    fn exec_by(uid: u32, fowner: u32, magic: u64) -> FileAccess {
        FileAccess {
            func: Func::BprmCheck,
            mask: vec![Access::Exec],
            uid,
            euid: uid,
            gid: uid,
            egid: uid,
            fowner,
            fgroup: fowner,
            fs: FileSystem {
                magic,
                uuid: None,
                name: None,
            },
        }
    }

    #[test]
    fn first_deciding_rule_wins() {
        let p = parse_policy(
            "dont_appraise fsmagic=0x1021994\n\
             appraise func=BPRM_CHECK uid=0 appraise_type=imasig\n\
             appraise fowner=0\n",
        )
        .unwrap();
        let tmpfs = exec_by(0, 0, 0x0102_1994);
        assert!(matches!(
            appraisal(&p, &tmpfs),
            Appraisal::Exempted { line: 1, .. }
        ));
        assert!(matches!(
            appraisal(&p, &exec_by(0, 250, 0xef53)),
            Appraisal::Appraised { line: 2, .. }
        ));
        // The portage user's program owned by portage: nothing appraises it.
        assert_eq!(
            appraisal(&p, &exec_by(250, 250, 0xef53)),
            Appraisal::NotCovered
        );
        // A root-owned file: the rule without func applies to execve too.
        assert!(matches!(
            appraisal(&p, &exec_by(250, 0, 0xef53)),
            Appraisal::Appraised { line: 3, .. }
        ));
    }

    #[test]
    fn masks_and_unknowns() {
        let p = parse_policy(
            "dont_appraise obj_type=tmp_t\n\
             appraise func=FILE_CHECK mask=MAY_WRITE\n\
             appraise func=FILE_CHECK mask=^MAY_READ subj_type=x\n",
        )
        .unwrap();
        let mut open = exec_by(0, 0, 0xef53);
        open.func = Func::FileCheck;
        open.mask = vec![Access::Read, Access::Write];
        // O_RDWR is not exactly MAY_WRITE; ^MAY_READ matches, LSM unknown.
        assert!(matches!(
            appraisal(&p, &open),
            Appraisal::Appraised {
                line: 3,
                certain: false,
                ..
            }
        ));
        open.mask = vec![Access::Write];
        assert!(matches!(
            appraisal(&p, &open),
            Appraisal::Appraised {
                line: 2,
                certain: true,
                ..
            }
        ));
    }
}
