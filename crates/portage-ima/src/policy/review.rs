//! What in a loaded policy would block a build or an emerge on this
//! machine, rule by rule, and the fix: the reading `doctor` gives of a
//! policy, from the same Portage facts as the generator
//! ([`super::generate`]) and the kernel's matching ([`super::eval`]).
//!
//! Three questions, each asked as the kernel would for one access:
//! - builds: a program a build compiled, run from PORTAGE_TMPDIR by the
//!   user that runs src_configure..src_test (portage with FEATURES=userpriv,
//!   else root), and by root in src_install;
//! - merges: a freshly merged program, root's, run by root in a pkg_*
//!   phase before postinst signed it (a copying merge without
//!   FEATURES=xattr loses the preinst signature);
//! - config files: root opening a root-owned file on the system's
//!   filesystem for writing, which the kernel refuses for a signed file
//!   that an appraise rule covers.

use super::eval::{appraisal, Appraisal, FileAccess, FileSystem};
use super::generate::{BuildFs, Setup};
use super::rule::{Access, Func, Policy};

/// The facts of this machine a review needs.
#[derive(Clone, Debug)]
pub(crate) struct Machine {
    pub setup: Setup,
    /// The filesystem of the build directory.
    pub build_fs: FileSystem,
    /// The filesystem of ROOT (where packages are merged).
    pub system_fs: FileSystem,
    /// The `portage` user and group.
    pub portage_uid: u32,
    pub portage_gid: u32,
    /// config_files = "sign": config-protected files get signatures.
    pub signs_config_files: bool,
}

/// The verdict on one question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Ok(String),
    Warn { finding: String, fix: String },
    Fail { finding: String, fix: String },
}

/// The answers, one per question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Review {
    pub builds: Verdict,
    pub merges: Verdict,
    pub config_files: Verdict,
}

fn access(
    func: Func,
    mask: Vec<Access>,
    uid: u32,
    gid: u32,
    owner: (u32, u32),
    fs: &FileSystem,
) -> FileAccess {
    FileAccess {
        func,
        mask,
        uid,
        euid: uid,
        gid,
        egid: gid,
        fowner: owner.0,
        fgroup: owner.1,
        fs: fs.clone(),
    }
}

/// `line N (appraise ...)`, with "may" when the rule's match is not certain.
fn rule_named(a: &Appraisal<'_>) -> Option<String> {
    match a {
        Appraisal::Appraised {
            line,
            rule,
            certain,
        } => Some(format!(
            "line {line} `{rule}`{}",
            if *certain {
                ""
            } else {
                " (may apply: its LSM or filesystem conditions cannot be checked here)"
            }
        )),
        _ => None,
    }
}

fn build_place(setup: &Setup) -> String {
    match &setup.build_fs {
        BuildFs::Tmpfs => format!("{}, a tmpfs", setup.build_dir.display()),
        BuildFs::Own { fstype, .. } | BuildFs::OwnWithoutUuid { fstype } => {
            format!("{}, its own {fstype} filesystem", setup.build_dir.display())
        }
        BuildFs::Shared { with, fstype } => format!(
            "{}, on the {fstype} filesystem of {}",
            setup.build_dir.display(),
            with.display()
        ),
    }
}

fn exemption_hint(setup: &Setup) -> String {
    match &setup.build_fs {
        BuildFs::Tmpfs => "add `dont_appraise fsmagic=0x1021994` before it, which exempts \
                           every tmpfs: only when every other tmpfs is mounted noexec (else put \
                           PORTAGE_TMPDIR on a filesystem of its own and exempt its fsuuid; \
                           `portage-ima policy` checks the mounts)"
            .to_string(),
        BuildFs::Own { uuid, .. } => format!(
            "add `dont_appraise fsuuid={}` before it",
            super::rule::format_uuid(uuid)
        ),
        BuildFs::OwnWithoutUuid { .. } | BuildFs::Shared { .. } => {
            "builds there cannot be exempted: limit the rule to root (uid=0) with \
             FEATURES=userpriv, or put PORTAGE_TMPDIR on a tmpfs or its own filesystem"
                .to_string()
        }
    }
}

/// Reviews `policy` for `machine`.
pub(crate) fn review(policy: &Policy, m: &Machine) -> Review {
    Review {
        builds: review_builds(policy, m),
        merges: review_merges(policy, m),
        config_files: review_config_files(policy, m),
    }
}

fn review_builds(policy: &Policy, m: &Machine) -> Verdict {
    let s = &m.setup;
    let (builder, builder_gid, who) = if s.userpriv {
        (
            m.portage_uid,
            m.portage_gid,
            "the portage user (FEATURES=userpriv)",
        )
    } else {
        (0, 0, "root (no FEATURES=userpriv)")
    };
    // What the build wrote is owned by whoever built it.
    let built = (builder, builder_gid);
    for (func, what) in [
        (Func::BprmCheck, "run"),
        (Func::MmapCheck, "map executable (the libraries they built)"),
    ] {
        let a = access(
            func,
            vec![Access::Exec],
            builder,
            builder_gid,
            built,
            &m.build_fs,
        );
        if let Some(rule) = rule_named(&appraisal(policy, &a)) {
            return Verdict::Fail {
                finding: format!(
                    "{rule} breaks source builds: configure tests and build tools {what} \
                     unsigned programs from PORTAGE_TMPDIR ({}) as {who}, and this rule \
                     appraises them",
                    build_place(s)
                ),
                fix: format!(
                    "{}; `portage-ima policy` writes a policy fitted to this setup",
                    exemption_hint(s)
                ),
            };
        }
    }
    if s.userpriv {
        let a = access(
            Func::BprmCheck,
            vec![Access::Exec],
            0,
            0,
            built,
            &m.build_fs,
        );
        if let Some(rule) = rule_named(&appraisal(policy, &a)) {
            return Verdict::Warn {
                finding: format!(
                    "{rule} appraises what root runs from PORTAGE_TMPDIR ({}): src_install \
                     and pkg_* run as root, so a package that runs a program it built there \
                     (or one with RESTRICT=userpriv) is denied; src_configure to src_test \
                     (as portage) are not affected",
                    build_place(s)
                ),
                fix: format!(
                    "{}; `portage-ima policy` writes a policy fitted to this setup",
                    exemption_hint(s)
                ),
            };
        }
    }
    Verdict::Ok(format!(
        "no rule appraises the programs builds run from {}",
        build_place(s)
    ))
}

fn review_merges(policy: &Policy, m: &Machine) -> Verdict {
    let copies = !matches!(m.setup.build_fs, BuildFs::Shared { .. });
    let a = access(
        Func::BprmCheck,
        vec![Access::Exec],
        0,
        0,
        (0, 0),
        &m.system_fs,
    );
    let decision = appraisal(policy, &a);
    match rule_named(&decision) {
        Some(rule) if copies && !m.setup.xattr => Verdict::Warn {
            finding: format!(
                "{rule} appraises root's programs, and PORTAGE_TMPDIR is on another \
                 filesystem without FEATURES=xattr: merged files lose their preinst \
                 signatures until postinst, so the old version's pkg_postrm (or a pkg_preinst) \
                 running the new binaries is denied"
            ),
            fix: "add xattr to FEATURES and keep security.ima out of PORTAGE_XATTR_EXCLUDE \
                  (see the xattr check), or build on the root filesystem"
                .to_string(),
        },
        Some(rule) => Verdict::Ok(format!(
            "{rule} appraises root's programs, and merged files are signed before they are \
             live ({})",
            if copies {
                "FEATURES=xattr keeps the preinst signature"
            } else {
                "the merge renames them with their signature"
            }
        )),
        None => Verdict::Ok("no rule appraises the programs root runs from ROOT".to_string()),
    }
}

fn review_config_files(policy: &Policy, m: &Machine) -> Verdict {
    // An editor opens read-write; `>` and `>>` open write-only.
    let opens = [
        vec![Access::Read, Access::Write],
        vec![Access::Write],
        vec![Access::Write, Access::Append],
    ];
    let appraised = opens.into_iter().find_map(|mask| {
        rule_named(&appraisal(
            policy,
            &access(Func::FileCheck, mask, 0, 0, (0, 0), &m.system_fs),
        ))
    });
    match appraised {
        Some(rule) if m.signs_config_files => Verdict::Warn {
            finding: format!(
                "{rule} appraises root's files opened for writing, and config_files = \"sign\": \
                 the kernel refuses to open a signed file it appraises for writing, so signed \
                 config files (/etc) become uneditable"
            ),
            fix: "set config_files = \"executable\" (sign only executable config files) or \
                  \"hash\" in ima.toml"
                .to_string(),
        },
        Some(rule) => Verdict::Ok(format!(
            "{rule} appraises opened files, but config files are not signed \
             (config_files is not \"sign\")"
        )),
        None => Verdict::Ok("no rule appraises files opened for writing".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::generate::TMPFS_MAGIC;
    use crate::policy::parse_policy;
    use std::path::PathBuf;

    fn machine(build_fs: BuildFs, userpriv: bool, xattr: bool) -> Machine {
        let tmpfs = matches!(build_fs, BuildFs::Tmpfs);
        Machine {
            setup: Setup {
                tmpdir: "/var/tmp".into(),
                build_dir: PathBuf::from("/var/tmp/portage"),
                build_fs,
                userpriv,
                xattr,
                source: "test".into(),
                other_tmpfs: Vec::new(),
                selinux_portage: false,
            },
            build_fs: FileSystem {
                magic: if tmpfs { TMPFS_MAGIC } else { 0xef53 },
                ..FileSystem::default()
            },
            system_fs: FileSystem {
                magic: 0xef53,
                ..FileSystem::default()
            },
            portage_uid: 250,
            portage_gid: 250,
            signs_config_files: true,
        }
    }

    fn rootfs() -> BuildFs {
        BuildFs::Shared {
            with: "/".into(),
            fstype: "ext4".into(),
        }
    }

    #[test]
    fn root_only_rule_spares_userpriv_builds_but_not_src_install() {
        let p = parse_policy("appraise func=BPRM_CHECK uid=0 appraise_type=imasig\n").unwrap();
        let r = review(&p, &machine(rootfs(), true, false));
        match r.builds {
            Verdict::Warn { finding, fix } => {
                assert!(finding.contains("src_install"), "{finding}");
                assert!(fix.contains("cannot be exempted"), "{fix}");
            }
            other => panic!("{other:?}"),
        }
        // Without userpriv the same rule covers every build phase.
        let r = review(&p, &machine(rootfs(), false, false));
        assert!(matches!(r.builds, Verdict::Fail { .. }), "{:?}", r.builds);
        // Exempted on a tmpfs, before the rule.
        let p = parse_policy(
            "dont_appraise fsmagic=0x1021994\nappraise func=BPRM_CHECK appraise_type=imasig\n",
        )
        .unwrap();
        let r = review(&p, &machine(BuildFs::Tmpfs, false, true));
        assert!(matches!(r.builds, Verdict::Ok(_)), "{:?}", r.builds);
        assert!(matches!(r.merges, Verdict::Ok(_)), "{:?}", r.merges);
        // The exemption after the rule is too late.
        let p = parse_policy(
            "appraise func=BPRM_CHECK appraise_type=imasig\ndont_appraise fsmagic=0x1021994\n",
        )
        .unwrap();
        let r = review(&p, &machine(BuildFs::Tmpfs, true, true));
        match r.builds {
            Verdict::Fail { finding, fix } => {
                assert!(
                    finding.starts_with("line 1 `appraise func=BPRM_CHECK"),
                    "{finding}"
                );
                assert!(fix.contains("dont_appraise fsmagic=0x1021994"), "{fix}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn libraries_built_and_mapped_by_tests_count() {
        let p =
            parse_policy("appraise func=MMAP_CHECK mask=MAY_EXEC appraise_type=imasig\n").unwrap();
        let r = review(&p, &machine(rootfs(), true, true));
        match r.builds {
            Verdict::Fail { finding, .. } => assert!(finding.contains("map executable")),
            other => panic!("{other:?}"),
        }
    }

    /// The generator and the review agree: every policy generated for a
    /// setup lets its builds run (a warning exactly when the generator warned).
    #[test]
    fn generated_policies_pass_their_own_review() {
        use crate::policy::generate::{generate, Request, Scope};
        let uuid = [7u8; 16];
        let layouts = [
            BuildFs::Tmpfs,
            BuildFs::Own {
                fstype: "ext4".into(),
                uuid,
            },
            rootfs(),
        ];
        let mut generated = 0;
        for layout in layouts {
            for (userpriv, xattr) in [(true, true), (true, false), (false, true)] {
                let mut m = machine(layout.clone(), userpriv, xattr);
                if matches!(layout, BuildFs::Own { .. }) {
                    m.build_fs.uuid = Some(uuid);
                }
                for scope in [Scope::RootExec, Scope::Exec, Scope::ExecMmap] {
                    for (measure, require_signed_policy) in [(false, false), (true, true)] {
                        let request = Request {
                            scope,
                            measure,
                            require_signed_policy,
                            observe: false,
                        };
                        let Ok(g) = generate(&m.setup, &request) else {
                            continue;
                        };
                        generated += 1;
                        let r = review(&g.policy, &m);
                        let warned = g.warnings.iter().any(|w| w.contains("src_install"));
                        match (&r.builds, warned) {
                            (Verdict::Ok(_), false) | (Verdict::Warn { .. }, true) => {}
                            other => panic!("{layout:?} {request:?}: {other:?}"),
                        }
                    }
                }
            }
        }
        assert!(generated > 20, "{generated}");
    }
}
