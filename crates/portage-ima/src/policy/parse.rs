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
    /// What is wrong with it, for the user.
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
                let (any, name) = match value.strip_prefix('^') {
                    Some(rest) => (true, rest),
                    None => (false, value),
                };
                match Access::ALL.into_iter().find(|a| a.keyword() == name) {
                    Some(access) => conditions.push(Condition::Mask { access, any }),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::rule::Line;
    use proptest::prelude::*;

    fn refusal(text: &str) -> ParseError {
        parse_policy(text).expect_err(text)
    }

    #[test]
    fn kernel_abi_examples_parse() {
        // Documentation/ABI/testing/ima_policy's examples, and the kernel's
        // built-in appraise_tcb rules.
        let text = "\
# comment
   # indented comment

dont_measure fsmagic=0x9fa0
dont_appraise fsmagic=0x1021994
measure func=BPRM_CHECK
measure func=FILE_MMAP mask=MAY_EXEC
measure func=FILE_CHECK mask=^MAY_READ uid=0
measure func=FILE_CHECK mask=MAY_READ fowner>1000 template=ima-sig
appraise fowner=0 appraise_type=imasig
appraise func=MODULE_CHECK appraise_type=imasig|modsig
appraise func=KEXEC_KERNEL_CHECK appraise_type=imasig|modsig appraise_algos=sha256,sha512
measure func=KEY_CHECK keyrings=.ima|.builtin_trusted_keys pcr=11 template=ima-buf
measure func=CRITICAL_DATA label=selinux
appraise func=BPRM_CHECK digest_type=verity appraise_type=sigv3
dont_appraise fsuuid=6b1f4e3c-9a63-4d5c-8a2f-0c1d2e3f4a5b
measure subj_user=system_u subj_role=system_r obj_type=bin_t euid<1000 fgroup=0
appraise func=FILE_CHECK appraise_flag=check_blacklist permit_directio
hash func=FILE_CHECK
dont_hash fsname=tmpfs
audit func=BPRM_CHECK
";
        let p = parse_policy(text).unwrap();
        assert_eq!(p.rules().count(), 18);
        assert_eq!(p.lines[0], Line::Comment("comment".into()));
        // FILE_MMAP is the old name of MMAP_CHECK.
        assert_eq!(
            p.rules().nth(3).unwrap().to_string(),
            "measure func=MMAP_CHECK mask=MAY_EXEC"
        );
        let reparsed = parse_policy(&p.to_string()).unwrap();
        assert_eq!(reparsed, p);
    }

    #[test]
    fn refusals_name_the_line_and_the_token() {
        let e = refusal("# ok\nmeasure func=BPRM_CHECK\nappraise func=EXEC_CHECK\n");
        assert_eq!((e.line, e.token.as_str()), (3, "func=EXEC_CHECK"));
        assert!(e.reason.contains("unknown func"), "{e}");
        assert!(
            e.to_string().starts_with("line 3: `func=EXEC_CHECK`"),
            "{e}"
        );

        let e = refusal("appraise func=BPRM_CHECK appraise_type=imasig measure\n");
        assert_eq!(e.token, "measure");
        assert!(e.reason.contains("second action"));

        let e = refusal("func=BPRM_CHECK uid=0\n");
        assert!(e.reason.contains("no action"), "{e}");

        let e = refusal("measure uid=root\n");
        assert_eq!(e.token, "uid=root");

        let e = refusal("measure func=BPRM_CHECK appraise_type=imasig\n");
        assert_eq!(e.token, "appraise_type=imasig");
        assert!(e.reason.contains("only a `appraise` rule"), "{e}");

        let e = refusal("appraise func=BPRM_CHECK func=MMAP_CHECK\n");
        assert_eq!(e.token, "func=MMAP_CHECK");
        assert!(e.reason.contains("twice"));

        let e = refusal("dont_appraise fsuuid=not-a-uuid\n");
        assert_eq!(e.token, "fsuuid=not-a-uuid");

        let e = refusal("dont_appraise fsmagic<0x9fa0\n");
        assert!(e.reason.contains("< or >"), "{e}");

        let e = refusal("measure func=BPRM_CHECK keyrings=.ima\n");
        assert!(e.reason.contains("KEY_CHECK"), "{e}");

        let e = refusal("appraise fowner=0 imasig\n");
        assert_eq!(e.token, "imasig");

        let e = refusal("appraise func=\n");
        assert!(e.reason.contains("no value"), "{e}");
    }

    fn word() -> impl Strategy<Value = String> {
        "[a-z_][a-z0-9_.]{0,8}"
    }

    fn condition() -> impl Strategy<Value = Condition> {
        prop_oneof![
            proptest::sample::select(Func::ALL.to_vec()).prop_map(Condition::Func),
            (
                proptest::sample::select(Access::ALL.to_vec()),
                any::<bool>()
            )
                .prop_map(|(access, any)| Condition::Mask { access, any }),
            any::<u64>().prop_map(Condition::FsMagic),
            word().prop_map(Condition::FsName),
            any::<[u8; 16]>().prop_map(Condition::FsUuid),
            (
                proptest::sample::select(IdField::ALL.to_vec()),
                proptest::sample::select(vec![IdOp::Equal, IdOp::Less, IdOp::Greater]),
                any::<u32>()
            )
                .prop_map(|(field, op, value)| Condition::Id { field, op, value }),
            (proptest::sample::select(LsmField::ALL.to_vec()), word())
                .prop_map(|(field, label)| Condition::Lsm { field, label }),
            proptest::collection::vec(word(), 1..3).prop_map(Condition::Keyrings),
            word().prop_map(Condition::Label),
        ]
    }

    fn option() -> impl Strategy<Value = RuleOption> {
        prop_oneof![
            proptest::sample::select(AppraiseType::ALL.to_vec()).prop_map(RuleOption::AppraiseType),
            Just(RuleOption::AppraiseFlag("check_blacklist".into())),
            proptest::collection::vec("sha[0-9]{1,3}", 1..3).prop_map(RuleOption::AppraiseAlgos),
            Just(RuleOption::DigestTypeVerity),
            word().prop_map(RuleOption::Template),
            any::<u32>().prop_map(RuleOption::Pcr),
            Just(RuleOption::PermitDirectio),
        ]
    }

    /// A rule the kernel would take: each kind once, options that fit the action.
    fn rule() -> impl Strategy<Value = Rule> {
        (
            proptest::sample::select(Action::ALL.to_vec()),
            proptest::collection::vec(condition(), 0..6),
            proptest::collection::vec(option(), 0..4),
        )
            .prop_map(|(action, conditions, options)| {
                let mut rule = Rule::new(action);
                for c in conditions {
                    rule.conditions.push(c);
                    if check_rule(&rule).is_err() {
                        rule.conditions.pop();
                    }
                }
                for o in options {
                    rule.options.push(o);
                    if check_rule(&rule).is_err() {
                        rule.options.pop();
                    }
                }
                rule
            })
    }

    fn line() -> impl Strategy<Value = Line> {
        prop_oneof![
            4 => rule().prop_map(Line::Rule),
            1 => "[ -~]{0,30}".prop_map(Line::Comment),
            1 => Just(Line::Blank),
        ]
    }

    proptest! {
        #[test]
        fn parse_of_write_is_identity(lines in proptest::collection::vec(line(), 0..12)) {
            let policy = Policy { lines };
            let text = policy.to_string();
            prop_assert_eq!(parse_policy(&text), Ok(policy), "{}", text);
        }
    }
}
