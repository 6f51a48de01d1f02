//! The rules as the kernel reads them: each type's text, one rule a line
//! (what `policy` writes and `parse` reads back).

use std::fmt;

use super::{format_uuid, Condition, Line, Policy, Rule, RuleOption};

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
