//! Reading policy text into [`Policy`]: every rule the kernel's parser
//! (security/integrity/ima/ima_policy.c, `ima_parse_rule`) would take, and a
//! refusal that names the line and the token for anything else.

use super::rule::{
    parse_uuid, Access, Action, AppraiseType, Condition, Func, IdField, IdOp, LsmField, Policy,
    Rule, RuleOption,
};

/// Why a policy line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: `{token}`: {reason}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// The token refused (the whole line when no single token is to blame).
    pub token: String,
    pub reason: String,
}

/// Parses a whole policy.
pub fn parse_policy(text: &str) -> Result<Policy, ParseError> {
    let mut policy = Policy::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start_matches([' ', '\t']);
        if line.trim().is_empty() {
            policy.blank();
        } else if let Some(comment) = line.strip_prefix('#') {
            let comment = comment.strip_prefix(' ').unwrap_or(comment);
            policy.comment(comment);
        } else {
            policy.rule(parse_rule(line).map_err(|(token, reason)| ParseError {
                line: i + 1,
                token,
                reason,
            })?);
        }
    }
    Ok(policy)
}

/// Parses one rule; on error, the token and the reason.
pub fn parse_rule(line: &str) -> Result<Rule, (String, String)> {
    let mut action = None;
    let mut conditions: Vec<Condition> = Vec::new();
    let mut options: Vec<RuleOption> = Vec::new();
    for token in line.split_whitespace() {
        let refuse = |reason: &str| Err((token.to_string(), reason.to_string()));
        if let Some(a) = Action::ALL.into_iter().find(|a| a.keyword() == token) {
            if action.is_some() {
                return refuse("a second action in one rule");
            }
            action = Some(a);
            continue;
        }
        if token == "permit_directio" {
            options.push(RuleOption::PermitDirectio);
            continue;
        }
        // `uid<1000` and `fowner>0` have no `=`.
        let split_at = token.find(['=', '<', '>']);
        let Some(at) = split_at else {
            return refuse("not an action, a condition or an option");
        };
        let (key, op, value) = (&token[..at], &token[at..=at], &token[at + 1..]);
        if value.is_empty() {
            return refuse("no value after the operator");
        }
        if let Some(field) = IdField::ALL.into_iter().find(|f| f.keyword() == key) {
            let op = match op {
                "=" => IdOp::Equal,
                "<" => IdOp::Less,
                _ => IdOp::Greater,
            };
            let Ok(value) = value.parse::<u32>() else {
                return refuse("the id must be a decimal number");
            };
            conditions.push(Condition::Id { field, op, value });
            continue;
        }
        if op != "=" {
            return refuse("only uid, euid, gid, egid, fowner and fgroup compare with < or >");
        }
        if let Some(field) = LsmField::ALL.into_iter().find(|f| f.keyword() == key) {
            conditions.push(Condition::Lsm {
                field,
                label: value.to_string(),
            });
            continue;
        }
        match key {
            "func" => match Func::parse(value) {
                Some(f) => conditions.push(Condition::Func(f)),
                None => return refuse("unknown func (BPRM_CHECK, MMAP_CHECK, FILE_CHECK, ...)"),
            },
            "mask" => {
                let (inode, name) = match value.strip_prefix('^') {
                    Some(rest) => (true, rest),
                    None => (false, value),
                };
                match Access::ALL.into_iter().find(|a| a.keyword() == name) {
                    Some(access) => conditions.push(Condition::Mask { access, inode }),
                    None => {
                        return refuse(
                            "unknown mask (MAY_EXEC, MAY_WRITE, MAY_READ, MAY_APPEND, one of them)",
                        )
                    }
                }
            }
            "fsmagic" => {
                let digits = value
                    .strip_prefix("0x")
                    .or_else(|| value.strip_prefix("0X"))
                    .unwrap_or(value);
                match u64::from_str_radix(digits, 16) {
                    Ok(m) => conditions.push(Condition::FsMagic(m)),
                    Err(_) => return refuse("fsmagic must be a hexadecimal number"),
                }
            }
            "fsname" => conditions.push(Condition::FsName(value.to_string())),
            "fsuuid" => match parse_uuid(value) {
                Some(u) => conditions.push(Condition::FsUuid(u)),
                None => {
                    return refuse("fsuuid must be a uuid, xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx")
                }
            },
            "keyrings" => conditions.push(Condition::Keyrings(
                value.split('|').map(str::to_string).collect(),
            )),
            "label" => conditions.push(Condition::Label(value.to_string())),
            "appraise_type" => match AppraiseType::ALL.into_iter().find(|t| t.keyword() == value) {
                Some(t) => options.push(RuleOption::AppraiseType(t)),
                None => return refuse("unknown appraise_type (imasig, imasig|modsig, sigv3)"),
            },
            "appraise_flag" => options.push(RuleOption::AppraiseFlag(value.to_string())),
            "appraise_algos" => options.push(RuleOption::AppraiseAlgos(
                value.split(',').map(str::to_string).collect(),
            )),
            "digest_type" if value == "verity" => options.push(RuleOption::DigestTypeVerity),
            "digest_type" => return refuse("the only digest_type is verity"),
            "template" => options.push(RuleOption::Template(value.to_string())),
            "pcr" => match value.parse::<u32>() {
                Ok(n) => options.push(RuleOption::Pcr(n)),
                Err(_) => return refuse("pcr must be a decimal number"),
            },
            _ => return refuse("unknown condition or option"),
        }
    }
    let Some(action) = action else {
        return Err((
            line.trim().to_string(),
            "no action (measure, dont_measure, appraise, dont_appraise, audit, hash, dont_hash)"
                .to_string(),
        ));
    };
    let rule = Rule {
        action,
        conditions,
        options,
    };
    check_rule(&rule)?;
    Ok(rule)
}

/// What the kernel refuses in a rule whose tokens each parse.
fn check_rule(rule: &Rule) -> Result<(), (String, String)> {
    let refuse = |token: String, reason: &str| Err((token, reason.to_string()));
    // The kernel takes each kind of condition once.
    for (i, c) in rule.conditions.iter().enumerate() {
        let same_kind = |d: &Condition| match (c, d) {
            (Condition::Id { field: a, .. }, Condition::Id { field: b, .. }) => a == b,
            (Condition::Lsm { field: a, .. }, Condition::Lsm { field: b, .. }) => a == b,
            _ => std::mem::discriminant(c) == std::mem::discriminant(d),
        };
        if rule.conditions[..i].iter().any(same_kind) {
            return refuse(c.to_string(), "given twice in one rule");
        }
    }
    for (i, o) in rule.options.iter().enumerate() {
        if rule.options[..i]
            .iter()
            .any(|p| std::mem::discriminant(o) == std::mem::discriminant(p))
        {
            return refuse(o.to_string(), "given twice in one rule");
        }
        let only_for = match o {
            RuleOption::AppraiseType(_)
            | RuleOption::AppraiseFlag(_)
            | RuleOption::AppraiseAlgos(_) => Some(Action::Appraise),
            RuleOption::Template(_) | RuleOption::Pcr(_) => Some(Action::Measure),
            _ => None,
        };
        if let Some(action) = only_for.filter(|a| *a != rule.action) {
            return refuse(
                o.to_string(),
                &format!("only a `{}` rule takes this option", action.keyword()),
            );
        }
    }
    let func = rule.func();
    for c in &rule.conditions {
        let needs = match c {
            Condition::Keyrings(_) => Some(Func::KeyCheck),
            Condition::Label(_) => Some(Func::CriticalData),
            _ => None,
        };
        if let Some(needs) = needs.filter(|f| Some(*f) != func) {
            return refuse(
                c.to_string(),
                &format!("only a func={} rule takes this condition", needs.keyword()),
            );
        }
    }
    Ok(())
}
