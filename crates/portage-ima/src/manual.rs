//! The manual that is not in clap's definitions: every ima.toml setting
//! ([`SETTINGS`], one list that gives both the README's settings table and
//! `ima.toml(5)`, so the two cannot drift; a test compares them), and the
//! EXIT STATUS, FILES, ENVIRONMENT and EXAMPLES sections of the man pages
//! `portage-ima generate man` writes.

use std::fmt::Write as _;

/// One setting of ima.toml.
pub struct Setting {
    /// As written in ima.toml (`[hardware]` and `[keylime]` ones as
    /// `hardware.pin_file`, `keylime.mode`).
    pub name: &'static str,
    /// The value used when it is not set, in words when it is not a value.
    pub default: &'static str,
    /// What it does, in a sentence or two.
    pub meaning: &'static str,
    /// A line of ima.toml that sets it.
    pub example: &'static str,
}

/// Every setting of ima.toml, in the order of the example file.
pub const SETTINGS: &[Setting] = &[
    Setting {
        name: "key",
        default: "/etc/keys/IMA_signing_key.priv",
        meaning: "The private signing key: a PEM RSA (2048 to 4096 bits) or ECDSA P-256/P-384 key \
                  readable by root only, a TPM key file or handle, or a PKCS#11 URI.",
        example: "key = \"/etc/keys/IMA_signing_key.priv\"",
    },
    Setting {
        name: "allow_insecure_key",
        default: "false",
        meaning: "Sign even with a key file others can read or replace (only a warning then).",
        example: "allow_insecure_key = false",
    },
    Setting {
        name: "cert",
        default: "/etc/keys/x509_ima.der when it exists",
        meaning: "The key's X.509 certificate, DER or PEM, as loaded on the kernel's IMA keyring; \
                  its Subject Key Identifier is the key id.",
        example: "cert = \"/etc/keys/x509_ima.der\"",
    },
    Setting {
        name: "keyid",
        default: "from the certificate",
        meaning: "The 4-byte key id written into signatures, 8 hex digits; overrides the \
                  certificate's.",
        example: "keyid = \"1a2b3c4d\"",
    },
    Setting {
        name: "hash",
        default: "sha256",
        meaning: "The digest that is signed: sha256, sha384, sha512, sha224 or sha1; the kernel \
                  must have it.",
        example: "hash = \"sha512\"",
    },
    Setting {
        name: "jobs",
        default: "the number of CPUs",
        meaning: "How many files are hashed and signed at once.",
        example: "jobs = 4",
    },
    Setting {
        name: "backend",
        default: "openssl when built in",
        meaning:
            "The signer: openssl (the system libcrypto) or rustcrypto (pure Rust); both write \
                  the same bytes.",
        example: "backend = \"openssl\"",
    },
    Setting {
        name: "premerge",
        default: "auto",
        meaning: "Sign the image in preinst, before it goes live: auto (when the signature \
                  survives the merge), always, or never (postinst only).",
        example: "premerge = \"auto\"",
    },
    Setting {
        name: "strict",
        default: "false",
        meaning: "Fail the emerge when a package is not fully signed (a file, an error, a crash, \
                  a signal); otherwise warn and go on.",
        example: "strict = true",
    },
    Setting {
        name: "enforce",
        default: "auto",
        meaning: "Whether the kernel refuses unsigned programs root runs: auto (ask the running \
                  kernel), true or false. Then a merge that would drop the signatures stops in \
                  preinst, strict or not (docs/failsafe.md).",
        example: "enforce = true",
    },
    Setting {
        name: "allow_unsigned_window",
        default: "false",
        meaning: "Under enforce, merge anyway (with a warning) when the merge drops the \
                  signatures; new files are live and unsigned until postinst.",
        example: "allow_unsigned_window = true",
    },
    Setting {
        name: "config_files",
        default: "executable",
        meaning: "Config-protected files (/etc): executable (sign the executable ones), hash \
                  (digest the others, so they stay editable), sign (sign all), skip.",
        example: "config_files = \"hash\"",
    },
    Setting {
        name: "scope",
        default: "all",
        meaning: "Which files sign and the hook sign: all, or policy (only those an appraise rule \
                  of the IMA policy covers).",
        example: "scope = \"policy\"",
    },
    Setting {
        name: "mode",
        default: "sign",
        meaning: "sign (this host's key), verify (a binary host's client: keep trusted signatures \
                  the packages carry, no key) or sign-missing (both).",
        example: "mode = \"verify\"",
    },
    Setting {
        name: "trusted_certs",
        default: "none",
        meaning: "Certificates of binary hosts whose signatures a client keeps.",
        example: "trusted_certs = [\"/etc/keys/binhost.der\"]",
    },
    Setting {
        name: "skip",
        default: "none",
        meaning: "Packages the hook leaves alone (not signed, not checked): atoms with their \
                  category, a version allowed; read for every merge, binary ones too.",
        example: "skip = [\"app-misc/foo\", \"<dev-libs/bar-2\"]",
    },
    Setting {
        name: "hardware.provider",
        default: "tpm2 for TPM keys",
        meaning: "The OpenSSL 3 provider that holds the key.",
        example: "provider = \"tpm2\"",
    },
    Setting {
        name: "hardware.engine",
        default: "pkcs11 for pkcs11: URIs",
        meaning: "The OpenSSL engine that holds the key.",
        example: "engine = \"pkcs11\"",
    },
    Setting {
        name: "hardware.module",
        default: "the engine's own",
        meaning: "The token's PKCS#11 module.",
        example: "module = \"/usr/lib64/softhsm/libsofthsm2.so\"",
    },
    Setting {
        name: "hardware.pin_file",
        default: "none",
        meaning: "A root-only file whose first line is the PIN.",
        example: "pin_file = \"/etc/keys/token.pin\"",
    },
    Setting {
        name: "hardware.pin_env",
        default: "none",
        meaning: "An environment variable holding the PIN, for interactive commands only: inside an emerge it is refused, since Portage saves the environment (use `pin_file`).",
        example: "pin_env = \"IMA_TOKEN_PIN\"",
    },
    Setting {
        name: "keylime.policy",
        default: "/var/lib/portage-ima/keylime-policy.json",
        meaning: "The Keylime runtime policy the hook keeps current at every merge and unmerge (inside EROOT, like the vdb); docs/keylime.md.",
        example: "policy = \"/var/lib/portage-ima/keylime-policy.json\"",
    },
    Setting {
        name: "keylime.mode",
        default: "digests",
        meaning: "`digests`: every installed file's digest and no keys, so an older signed file copied back is caught; `keys`: only the certificates' keys; `both`.",
        example: "mode = \"digests\"",
    },
    Setting {
        name: "keylime.exclude",
        default: "none",
        meaning: "Python regular expressions of paths Keylime does not check.",
        example: "exclude = [\"^/var/\", \"^/tmp/\"]",
    },
    Setting {
        name: "keylime.verifier",
        default: "none (no push)",
        meaning: "The Keylime verifier the policy is pushed to once each emerge has ended.",
        example: "verifier = \"https://verifier.example:8881\"",
    },
    Setting {
        name: "keylime.ca",
        default: "none",
        meaning: "The CA that signed the verifier's certificate (PEM).",
        example: "ca = \"/etc/keylime/tenant/cacert.crt\"",
    },
    Setting {
        name: "keylime.client_cert",
        default: "none",
        meaning: "The tenant's client certificate for mutual TLS (PEM).",
        example: "client_cert = \"/etc/keylime/tenant/client-cert.crt\"",
    },
    Setting {
        name: "keylime.client_key",
        default: "none",
        meaning: "The tenant's client key for mutual TLS (PEM).",
        example: "client_key = \"/etc/keylime/tenant/client-private.pem\"",
    },
    Setting {
        name: "keylime.policy_name",
        default: "the host name",
        meaning: "The runtime policy's name on the verifier.",
        example: "policy_name = \"host1\"",
    },
    Setting {
        name: "keylime.api_version",
        default: "2.5",
        meaning: "The verifier's REST API version in its URLs.",
        example: "api_version = \"2.5\"",
    },
];

/// The README's settings table (between its `settings-begin`/`-end` markers).
pub fn settings_table() -> String {
    let mut out = String::from("| setting | default | meaning | example |\n|---|---|---|---|\n");
    for s in SETTINGS {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | `{}` |",
            s.name,
            s.default,
            s.meaning,
            s.example.replace('|', "\\|")
        );
    }
    out
}

/// Text made safe for roff: backslashes doubled, a leading dot or quote
/// escaped.
fn roff(text: &str) -> String {
    let text = text.replace('\\', "\\e").replace('-', "\\-");
    match text.chars().next() {
        Some('.' | '\'') => format!("\\&{text}"),
        _ => text,
    }
}

fn section(out: &mut String, title: &str) {
    let _ = writeln!(out, ".SH {title}");
}

fn paragraph(out: &mut String, text: &str) {
    let _ = writeln!(out, ".PP\n{}", roff(text));
}

fn tagged(out: &mut String, tag: &str, text: &str) {
    let _ = writeln!(out, ".TP\n\\fB{}\\fR\n{}", roff(tag), roff(text));
}

fn example(out: &mut String, what: &str, lines: &[&str]) {
    let _ = writeln!(out, ".PP\n{}\n.PP\n.nf\n.RS 4", roff(what));
    for line in lines {
        let _ = writeln!(out, "{}", roff(line));
    }
    let _ = writeln!(out, ".RE\n.fi");
}

/// ima.toml(5), from [`SETTINGS`].
pub fn ima_toml_page(version: &str) -> String {
    let mut out = format!(
        ".TH IMA.TOML 5 \"\" \"portage-ima {version}\" \"File Formats\"\n\
         .SH NAME\nima.toml \\- settings of portage\\-ima\n"
    );
    section(&mut out, "SYNOPSIS");
    paragraph(
        &mut out,
        "/etc/portage/ima.toml, or ${PORTAGE_CONFIGROOT}/etc/portage/ima.toml, or the file given \
         with --config.",
    );
    section(&mut out, "DESCRIPTION");
    paragraph(
        &mut out,
        "A TOML file; every setting is optional, an unknown one is an error. Command-line flags \
         (--key, --cert, --hash, --jobs, --backend) override it. The settings of a key held by \
         hardware go in a [hardware] table, those of the Keylime policy the hook keeps in a [keylime] table. `portage-ima doctor` checks the result. The ebuild \
         installs a commented example.",
    );
    section(&mut out, "SETTINGS");
    for s in SETTINGS {
        tagged(
            &mut out,
            s.name,
            &format!(
                "{} Default: {}. Example: {}",
                s.meaning, s.default, s.example
            ),
        );
    }
    section(&mut out, "EXAMPLE");
    example(
        &mut out,
        "A key, its certificate, digests for the editable files of /etc, and a failed \
         signature failing the emerge:",
        &[
            "key = \"/etc/keys/IMA_signing_key.priv\"",
            "cert = \"/etc/keys/x509_ima.der\"",
            "config_files = \"hash\"",
            "strict = true",
        ],
    );
    section(&mut out, "SEE ALSO");
    let _ = writeln!(out, "portage\\-ima(8), evmctl(1), make.conf(5)");
    out
}

/// The sections clap does not write, for the page of `command` (`None`:
/// portage-ima(8) itself).
pub fn extra_sections(command: Option<&str>) -> String {
    let mut out = String::new();
    section(&mut out, "EXIT STATUS");
    let statuses: &[(&str, &str)] = match command {
        Some("doctor") => &[
            ("0", "no check failed (warnings allowed)"),
            ("1", "a check failed"),
        ],
        Some("policy") => &[
            (
                "0",
                "the policy was written; with --check, nothing would be refused",
            ),
            ("1", "with --check: some covered file would be refused"),
            (
                "2",
                "no policy can do what --appraise asks here, or an error",
            ),
        ],
        Some("audit") => &[
            ("0", "every file is valid now, or none was denied"),
            ("1", "some files need attention"),
            ("2", "an error"),
        ],
        Some("setup") => &[
            (
                "0",
                "the plan was printed, or carried out with everything signed and the policy safe",
            ),
            (
                "1",
                "a step cannot be done on this machine (it says why), or signing or the policy \
                 check left something",
            ),
            (
                "2",
                "an error (an unknown init, an unreadable kernel configuration, a key without \
                 its certificate, a ROOT that is not a Gentoo root): nothing was changed",
            ),
        ],
        Some("hook") => &[
            ("0", "the package is signed"),
            ("1", "some files were not signed"),
            ("2", "a configuration problem: nothing signed"),
            (
                "3",
                "strict mode and something failed: the snippet fails the merge",
            ),
        ],
        _ => &[
            (
                "0",
                "everything asked for was done (verify: every file is as it should be)",
            ),
            ("1", "some files failed or are not ok; the others were done"),
            ("2", "a usage, key or configuration error: nothing was done"),
            ("3", "strict mode: the hook asks Portage to fail the merge"),
            (
                "130",
                "interrupted: every file is either signed or untouched; rerun to finish",
            ),
        ],
    };
    for (code, meaning) in statuses {
        tagged(&mut out, code, meaning);
    }
    section(&mut out, "FILES");
    tagged(
        &mut out,
        "/etc/portage/ima.toml",
        "The settings, see ima.toml(5) (under PORTAGE_CONFIGROOT when that is set).",
    );
    tagged(
        &mut out,
        "/etc/keys/IMA_signing_key.priv",
        "The default private key.",
    );
    tagged(
        &mut out,
        "/etc/keys/x509_ima.der",
        "The default certificate.",
    );
    tagged(
        &mut out,
        "/usr/share/portage-ima/portage-ima.bashrc",
        "The snippet to source from /etc/portage/bashrc.",
    );
    if command == Some("setup") {
        tagged(
            &mut out,
            "/etc/ima/ima-policy, /etc/ima/portage-ima.policy",
            "The policy setup writes: the first for OpenRC's service, dracut and systemd, \
             the second for portage-ima.service on systemd without an initramfs.",
        );
        tagged(
            &mut out,
            "/var/lib/portage-ima/setup-backup/TIME/",
            "A copy of every file setup --apply changed, by its path.",
        );
    }
    tagged(
        &mut out,
        "/var/db/pkg/CATEGORY/PF/CONTENTS",
        "What each installed package merged, with MD5s: what is signed and verified.",
    );
    section(&mut out, "ENVIRONMENT");
    tagged(
        &mut out,
        "PORTAGE_CONFIGROOT",
        "Where etc/portage/ima.toml is read from (default /).",
    );
    tagged(
        &mut out,
        "ROOT, EROOT, EPREFIX",
        "The root whose package database is read, as Portage sets them (--root overrides).",
    );
    tagged(
        &mut out,
        "PORTAGE_IMA_LOG",
        "The log level: off, error, warn, info (default), debug, trace; -v and -q move it.",
    );
    tagged(
        &mut out,
        "NO_COLOR, NOCOLOR",
        "No colour on a terminal (--color=always still colours).",
    );
    tagged(
        &mut out,
        "PORTAGE_IMA_SKIP, PORTAGE_IMA_ELOG_SUMMARY, PORTAGE_IMA",
        "Read by the bashrc snippet: leave a package unsigned (1), send the summary to elog \
         (yes), the binary to run.",
    );
    section(&mut out, "EXAMPLES");
    let examples: &[(&str, &[&str])] = match command {
        Some("sign") => &[
            ("Everything installed, then only what a dry run lists:", &["portage-ima sign --all", "portage-ima sign --dry-run app-shells/bash"]),
            ("Programs no package installed:", &["portage-ima sign --files /usr/local/bin"]),
        ],
        Some("verify") => &[
            ("Every installed file, each one listed:", &["portage-ima -v verify --all"]),
            ("One package, as JSON:", &["portage-ima verify --json sys-apps/coreutils"]),
        ],
        Some("doctor") => &[("Check the setup:", &["portage-ima doctor"])],
        Some("policy") => &[
            ("Write a policy, then check it before booting with enforce:", &[
                "portage-ima policy --measure --output /etc/ima/ima-policy",
                "portage-ima policy --check /etc/ima/ima-policy",
            ]),
        ],
        Some("audit") => &[("What the kernel refused, and sign what is pristine:", &["portage-ima audit --fix"])],
        Some("setup") => &[
            ("The plan for this machine, then carry it out (run again: nothing to change):", &[
                "portage-ima setup",
                "portage-ima setup --apply",
            ]),
            ("The same from Portage, and for a root being prepared:", &[
                "emerge --config app-portage/portage-ima",
                "portage-ima setup --apply --root /mnt/gentoo",
            ]),
        ],
        Some("hook") => &[("Not run by hand: source the snippet from /etc/portage/bashrc:", &["[[ -r /usr/share/portage-ima/portage-ima.bashrc ]] && source /usr/share/portage-ima/portage-ima.bashrc"])],
        _ => &[
            ("Set up, sign what is installed, check:", &[
                "portage-ima doctor",
                "portage-ima sign --all",
                "portage-ima verify --all",
            ]),
            ("Shell completions (installed by the ebuild):", &["portage-ima generate completions bash"]),
        ],
    };
    for (what, lines) in examples {
        example(&mut out, what, lines);
    }
    section(&mut out, "SEE ALSO");
    let _ = writeln!(out, "ima.toml(5), evmctl(1), emerge(1), make.conf(5)");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key of ima.toml is documented, and nothing else: a setting
    /// added to FileConfig without a line here fails.
    #[test]
    fn settings_are_the_keys_ima_toml_accepts() {
        for s in SETTINGS {
            let text = match s.name.split_once('.') {
                Some((table, _)) => format!("[{table}]\n{}\n", s.example),
                None => format!("{}\n", s.example),
            };
            let parsed = crate::settings::parse_config(&text);
            assert!(parsed.is_ok(), "{}: {:?}", s.name, parsed.err());
        }
        let err = crate::settings::parse_config("no_such_setting = 1\n").unwrap_err();
        let listed = format!("{err:#}");
        for s in SETTINGS.iter().filter(|s| !s.name.contains('.')) {
            assert!(listed.contains(s.name), "{} not among {listed}", s.name);
        }
        // The known names, the tables (`hardware`, `keylime`), and the
        // unknown one, each in backquotes.
        let known = SETTINGS.iter().filter(|s| !s.name.contains('.')).count() + 2;
        assert_eq!(listed.matches('`').count() / 2, known + 1, "{listed}");
    }

    #[test]
    fn roff_is_escaped() {
        assert_eq!(roff(".hidden"), "\\&.hidden");
        assert_eq!(roff("a-b \\n"), "a\\-b \\en");
    }
}
