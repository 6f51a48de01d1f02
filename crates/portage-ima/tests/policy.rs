//! `portage-ima policy`: the policy generated for each kind of Portage
//! setup (golden files in tests/data/policy, rewritten with
//! `PORTAGE_IMA_UPDATE_GOLDEN=1`), the setups no policy can serve, and the
//! command against scratch roots (a tmpfs build directory under /dev/shm,
//! one on the root's own filesystem), `--output` and `--sign`.
//! (tests/kernel/test_policy_load.py loads every rule into a real kernel.)

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use portage_ima::policy::generate::{BuildFs, OtherTmpfs};
use portage_ima::policy::{generate, parse_policy, Request, Scope, Setup};

mod common;

use common::{is_signed, require_root, settings, text};

const UUID: [u8; 16] = [
    0x6b, 0x1f, 0x4e, 0x3c, 0x9a, 0x63, 0x4d, 0x5c, 0x8a, 0x2f, 0x0c, 0x1d, 0x2e, 0x3f, 0x4a, 0x5b,
];

fn setup(build_fs: BuildFs, userpriv: bool, xattr: bool) -> Setup {
    Setup {
        tmpdir: "/var/tmp".into(),
        build_dir: PathBuf::from("/var/tmp/portage"),
        build_fs,
        userpriv,
        xattr,
        source: "test".into(),
        other_tmpfs: vec![OtherTmpfs {
            mount_point: "/dev/shm".into(),
            noexec: true,
        }],
        selinux_portage: false,
    }
}

fn request(scope: Scope, measure: bool, require_signed_policy: bool) -> Request {
    Request {
        scope,
        measure,
        require_signed_policy,
        observe: false,
    }
}

fn rootfs() -> BuildFs {
    BuildFs::Shared {
        with: "/".into(),
        fstype: "ext4".into(),
    }
}

/// Compares `text` with tests/data/policy/`name`.policy.
fn golden(name: &str, text: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/policy")
        .join(format!("{name}.policy"));
    if std::env::var_os("PORTAGE_IMA_UPDATE_GOLDEN").is_some() {
        fs::write(&path, text).unwrap();
    }
    let want = fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        text, want,
        "{name}: rerun with PORTAGE_IMA_UPDATE_GOLDEN=1 to accept"
    );
}

/// Every rule line of the policy, without comments.
fn rules(text: &str) -> Vec<String> {
    parse_policy(text)
        .unwrap()
        .rules()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn golden_policies_per_setup() {
    let own = BuildFs::Own {
        fstype: "ext4".into(),
        uuid: UUID,
    };
    let cases = [
        (
            "tmpfs-userpriv-root-exec",
            setup(BuildFs::Tmpfs, true, true),
            request(Scope::RootExec, false, false),
        ),
        (
            "tmpfs-no-xattr-exec",
            setup(BuildFs::Tmpfs, true, false),
            request(Scope::Exec, false, false),
        ),
        (
            "fsuuid-exec-mmap-measure-signed",
            setup(own, false, true),
            request(Scope::ExecMmap, true, true),
        ),
        (
            "rootfs-userpriv-root-exec",
            setup(rootfs(), true, false),
            request(Scope::RootExec, false, false),
        ),
    ];
    for (name, setup, request) in cases {
        let generated = generate(&setup, &request).unwrap();
        let text = generated.policy.to_string();
        golden(name, &text);
        // The text parses back to the same policy.
        assert_eq!(parse_policy(&text).unwrap(), generated.policy, "{name}");
    }
}

#[test]
fn build_directory_is_exempted_before_anything_is_appraised() {
    let tmpfs = generate(
        &setup(BuildFs::Tmpfs, true, true),
        &request(Scope::ExecMmap, true, true),
    )
    .unwrap();
    let rules = rules(&tmpfs.policy.to_string());
    let at = |rule: &str| rules.iter().position(|r| r == rule).unwrap();
    // POLICY_CHECK first: no exemption (a policy on a tmpfs) applies to it.
    assert_eq!(rules[0], "appraise func=POLICY_CHECK appraise_type=imasig");
    let exempt = at("dont_appraise fsmagic=0x1021994");
    assert!(exempt < at("appraise func=BPRM_CHECK appraise_type=imasig"));
    assert!(exempt < at("appraise func=MMAP_CHECK mask=MAY_EXEC appraise_type=imasig"));
    assert!(at("dont_appraise fsmagic=0x9fa0") < exempt);
    assert!(rules.contains(&"measure func=MMAP_CHECK mask=MAY_EXEC".to_string()));
    assert!(tmpfs.warnings.is_empty());

    let own = generate(
        &setup(
            BuildFs::Own {
                fstype: "xfs".into(),
                uuid: UUID,
            },
            false,
            true,
        ),
        &request(Scope::RootExec, false, false),
    )
    .unwrap();
    let rules = rules_of(&own);
    assert!(rules.contains(&"dont_appraise fsuuid=6b1f4e3c-9a63-4d5c-8a2f-0c1d2e3f4a5b".into()));
    assert_eq!(
        rules[rules.len() - 2..],
        [
            "appraise func=BPRM_CHECK uid=0 appraise_type=imasig",
            // Setuid-root programs run by users (issue 20).
            "appraise func=BPRM_CHECK fowner=0 appraise_type=imasig",
        ]
    );
    assert!(!rules.iter().any(|r| r.starts_with("measure")));
}

fn rules_of(g: &portage_ima::policy::Generated) -> Vec<String> {
    rules(&g.policy.to_string())
}

#[test]
fn setups_no_policy_can_serve_say_why_and_what_to_change() {
    // Every executable appraised, builds on the root filesystem.
    let e = generate(
        &setup(rootfs(), true, true),
        &request(Scope::Exec, false, false),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("--appraise exec covers the portage user"),
        "{msg}"
    );
    assert!(
        msg.contains("on the ext4 filesystem that also holds /"),
        "{msg}"
    );
    assert!(
        msg.contains("put PORTAGE_TMPDIR on a filesystem of its own"),
        "{msg}"
    );
    assert!(
        msg.contains("--appraise root-exec with FEATURES=userpriv"),
        "{msg}"
    );
    // exec-mmap, the same.
    assert!(generate(
        &setup(rootfs(), true, true),
        &request(Scope::ExecMmap, true, false)
    )
    .is_err());
    // Root's executables, without userpriv, builds on the root filesystem.
    let msg = generate(
        &setup(rootfs(), false, true),
        &request(Scope::RootExec, false, false),
    )
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("without FEATURES=userpriv every build phase runs as root"),
        "{msg}"
    );
    assert!(msg.contains("add userpriv to FEATURES"), "{msg}");
    // A filesystem of its own whose uuid is unknown cannot be named.
    let msg = generate(
        &setup(
            BuildFs::OwnWithoutUuid {
                fstype: "nfs".into(),
            },
            true,
            true,
        ),
        &request(Scope::Exec, false, false),
    )
    .unwrap_err()
    .to_string();
    assert!(msg.contains("its uuid could not be read"), "{msg}");
    // Without userpriv but on a tmpfs: exempted, fine.
    assert!(generate(
        &setup(BuildFs::Tmpfs, false, true),
        &request(Scope::Exec, false, false)
    )
    .is_ok());
}

#[test]
fn warnings_name_what_will_not_work() {
    let g = generate(
        &setup(rootfs(), true, true),
        &request(Scope::RootExec, false, false),
    )
    .unwrap();
    assert_eq!(g.warnings.len(), 1, "{:?}", g.warnings);
    assert!(g.warnings[0].contains("src_install and the pkg_* phases run as root"));
    assert!(g.policy.to_string().contains("# - WARNING: src_install"));
    // On the root filesystem the merge renames: no xattr needed.
    let g = generate(
        &setup(rootfs(), true, false),
        &request(Scope::RootExec, false, false),
    )
    .unwrap();
    assert!(!g.warnings.iter().any(|w| w.contains("FEATURES=xattr")));
    // Another filesystem without xattr: the new files are unsigned until postinst.
    let g = generate(
        &setup(BuildFs::Tmpfs, true, false),
        &request(Scope::RootExec, false, false),
    )
    .unwrap();
    assert_eq!(g.warnings.len(), 1, "{:?}", g.warnings);
    assert!(g.warnings[0].contains("pkg_postrm"), "{:?}", g.warnings);
}

/// A scratch root whose make.conf sets `make_conf`, and its PORTAGE_TMPDIR.
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new(make_conf: &str) -> Root {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("etc/portage")).unwrap();
        fs::write(dir.path().join("etc/portage/make.conf"), make_conf).unwrap();
        Root { dir }
    }

    fn policy(&self, args: &[&str]) -> std::process::Output {
        self.policy_with(common::cmd(), args)
    }

    fn policy_with(&self, mut cmd: Command, args: &[&str]) -> std::process::Output {
        cmd.arg("policy")
            .arg("--root")
            .arg(self.dir.path())
            .args(args)
            // No portageq: make.conf is what counts (and the host's
            // settings never leak in).
            .env("PATH", "/nonexistent")
            .env_remove("PORTAGE_CONFIGROOT")
            .output()
            .unwrap()
    }
}

#[test]
fn command_reads_make_conf_and_the_filesystems() {
    let Some(shm) = common::tmpfs_dir("command_reads_make_conf_and_the_filesystems") else {
        return;
    };
    let root = Root::new(&format!(
        "FEATURES=\"userpriv xattr\"\nPORTAGE_XATTR_EXCLUDE=\"btrfs.*\"\nPORTAGE_TMPDIR=\"{}\"\n",
        shm.path().display()
    ));
    // Every other tmpfs noexec: the tmpfs exemption is possible (polsec.rs
    // has the other case).
    let Some(isolated) = common::isolated_mounts("", "command_reads_make_conf_and_the_filesystems")
    else {
        return;
    };
    let out = root.policy_with(isolated, &["--appraise", "exec-mmap", "--measure"]);
    assert!(out.status.success(), "{}", text(&out));
    let policy = String::from_utf8(out.stdout).unwrap();
    // The header, unwrapped.
    let header = policy.replace("\n#   ", " ").replace("\n# ", " ");
    assert!(
        header.contains(&format!(
            "- PORTAGE_TMPDIR={}: builds run in {}, a tmpfs",
            shm.path().display(),
            shm.path().display()
        )),
        "{header}"
    );
    assert!(header.contains("xattr keeps security.ima"), "{header}");
    let rules = rules(&policy);
    assert!(rules.contains(&"dont_appraise fsmagic=0x1021994".to_string()));
    assert!(rules.contains(&"appraise func=MMAP_CHECK mask=MAY_EXEC appraise_type=imasig".into()));
    assert!(
        header.contains("boot with ima_template=ima-sig"),
        "{header}"
    );

    // The build directory on the root's own filesystem: exec is refused.
    let tmp = root.dir.path().join("var/tmp");
    fs::create_dir_all(&tmp).unwrap();
    fs::write(
        root.dir.path().join("etc/portage/make.conf"),
        format!(
            "FEATURES=\"userpriv\"\nPORTAGE_TMPDIR=\"{}\"\n",
            tmp.display()
        ),
    )
    .unwrap();
    let out = root.policy(&["--appraise", "exec"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no policy can appraise exec and let builds run"),
        "{err}"
    );
    assert!(
        err.contains(&format!("that also holds {}", root.dir.path().display())),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    // root-exec with userpriv works, with a warning on stderr.
    let out = root.policy(&[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("src_install"));

    // A PORTAGE_TMPDIR that does not exist.
    fs::write(
        root.dir.path().join("etc/portage/make.conf"),
        "PORTAGE_TMPDIR=\"/nonexistent/tmp\"\n",
    )
    .unwrap();
    let out = root.policy(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("PORTAGE_TMPDIR=/nonexistent/tmp does not exist"));
}

#[test]
fn output_is_written_atomically_and_signed_on_request() {
    let Some(shm) = common::tmpfs_dir("output_is_written_atomically_and_signed_on_request") else {
        return;
    };
    let root = Root::new(&format!(
        "FEATURES=\"userpriv xattr\"\nPORTAGE_TMPDIR=\"{}\"\n",
        shm.path().display()
    ));
    let out_dir = tempfile::tempdir().unwrap();
    let file = out_dir.path().join("ima-policy");
    fs::write(&file, "old\n").unwrap();
    let out = root.policy(&[
        "--output",
        file.to_str().unwrap(),
        "--require-signed-policy",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(out.stdout.is_empty());
    let written = fs::read_to_string(&file).unwrap();
    assert!(rules(&written).contains(&"appraise func=POLICY_CHECK appraise_type=imasig".into()));
    // Nothing left beside it.
    assert_eq!(fs::read_dir(out_dir.path()).unwrap().count(), 1);

    // --sign needs --output.
    let out = root.policy(&["--sign"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("--output"), "{}", text(&out));

    if !require_root("output_is_written_atomically_and_signed_on_request") {
        return;
    }
    let conf = settings(out_dir.path(), "");
    let out = common::cmd()
        .arg("--config")
        .arg(&conf)
        .args(["policy", "--sign", "--output"])
        .arg(&file)
        .arg("--root")
        .arg(root.dir.path())
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(is_signed(&file));
    // The signature verifies for the file's content (verify --files).
    let cert = common::new_cert(out_dir.path(), &out_dir.path().join("key.pem"));
    let out = common::cmd()
        .arg("--config")
        .arg(&conf)
        .args(["verify", "--cert"])
        .arg(&cert)
        .arg("--files")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // A key that cannot be loaded leaves the old file alone.
    let before = fs::read(&file).unwrap();
    let out = common::cmd()
        .args(["policy", "--sign", "--key", "/nonexistent.pem", "--output"])
        .arg(&file)
        .arg("--root")
        .arg(root.dir.path())
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(fs::read(&file).unwrap(), before);
    assert!(is_signed(&file));
}
