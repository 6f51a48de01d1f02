//! `portage-ima hook` run as the bashrc snippet runs it, with a fake Portage
//! environment (EBUILD_PHASE, CATEGORY, PF, ROOT, EROOT, T, D,
//! PORTAGE_CONFIGROOT) over a scratch root and vdb: fast checks of what
//! otherwise only the real-emerge tests catch.
//! - strict mode never fails open: every early error (missing CONTENTS, bad
//!   ROOT, a typo or garbage in ima.toml, a bad CATEGORY, a refused key) and
//!   a signal exit 3 with `strict = true`, and never 3 without it;
//! - the MD5 gate: a file whose content differs from CONTENTS is never signed;
//! - the premerge decision: preinst signs ${D} when the merge keeps the
//!   xattr, not with `premerge = "never"`, not across filesystems.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{ima_kind, require, require_root, require_tool, run_ok};

/// An RSA-2048 key (0400, in a 0700 directory) and its certificate, made once.
fn keys() -> &'static (tempfile::TempDir, PathBuf, PathBuf) {
    static KEYS: OnceLock<(tempfile::TempDir, PathBuf, PathBuf)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.der"));
        run_ok(
            Command::new("openssl")
                .args(["genrsa", "-out"])
                .arg(&key)
                .arg("2048"),
        );
        run_ok(
            Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-new",
                    "-days",
                    "30",
                    "-subj",
                    "/CN=hook test",
                ])
                .args([
                    "-addext",
                    "keyUsage=digitalSignature",
                    "-outform",
                    "DER",
                    "-key",
                ])
                .arg(&key)
                .arg("-out")
                .arg(&cert),
        );
        fs::set_permissions(&key, fs::Permissions::from_mode(0o400)).unwrap();
        (dir, key, cert)
    })
}

/// A scratch ROOT with a vdb entry for test-ima/foo-1, ${T} and a config root.
struct Fake {
    dir: tempfile::TempDir,
    contents: Vec<String>,
}

impl Fake {
    fn new() -> Fake {
        let f = Fake {
            dir: tempfile::tempdir().unwrap(),
            contents: Vec::new(),
        };
        for d in [
            "root/usr/bin",
            "root/var/db/pkg/test-ima/foo-1",
            "T",
            "cfg/etc/portage",
        ] {
            fs::create_dir_all(f.path(d)).unwrap();
        }
        f.write_toml("");
        f
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// ima.toml with the test key and certificate, plus `extra`.
    fn write_toml(&self, extra: &str) {
        let (_, key, cert) = keys();
        let text = format!("key = {key:?}\ncert = {cert:?}\njobs = 2\n{extra}");
        fs::write(self.path("cfg/etc/portage/ima.toml"), text).unwrap();
    }

    /// Installs `content` at `rel` under ROOT and lists it in CONTENTS with
    /// `content`'s MD5, or with `listed`'s when given (a changed file).
    fn add(&mut self, rel: &str, content: &[u8], listed: Option<&[u8]>) {
        fs::write(self.path("root").join(rel), content).unwrap();
        let md5 = md5_hex(listed.unwrap_or(content));
        self.contents.push(format!("obj /{rel} {md5} 1700000000\n"));
        fs::write(
            self.path("root/var/db/pkg/test-ima/foo-1/CONTENTS"),
            self.contents.concat(),
        )
        .unwrap();
    }

    fn command(&self, phase: &str) -> Command {
        let mut cmd = common::cmd();
        cmd.arg("hook")
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("EBUILD_PHASE", phase)
            .env("CATEGORY", "test-ima")
            .env("PF", "foo-1")
            .env("ROOT", format!("{}/", self.path("root").display()))
            .env("EROOT", self.path("root"))
            .env("T", self.path("T"))
            .env(
                "PORTAGE_CONFIGROOT",
                format!("{}/", self.path("cfg").display()),
            );
        cmd
    }

    fn hook(&self, phase: &str, env: &[(&str, &Path)]) -> (Option<i32>, String, String) {
        let mut cmd = self.command(phase);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

fn md5_hex(data: &[u8]) -> String {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    fs::write(tmp.path(), data).unwrap();
    let out = run_ok(Command::new("md5sum").arg(tmp.path()));
    String::from_utf8_lossy(&out.stdout)[..32].to_string()
}

fn has_ima(path: &Path) -> bool {
    let mut buf = [0u8; 1024];
    rustix::fs::lgetxattr(path, "security.ima", &mut buf[..]).is_ok()
}

/// The oracle: evmctl accepts the signature with the test certificate.
fn evmctl_verifies(path: &Path) -> bool {
    Command::new("evmctl")
        .args(["ima_verify", "--key"])
        .arg(&keys().2)
        .arg(path)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// One way the hook can fail before signing anything.
struct EarlyError {
    name: &'static str,
    /// What the error message must mention.
    says: &'static str,
    /// The phases that meet it (preinst reads no CONTENTS).
    phases: &'static [&'static str],
    /// Breaks the fake setup; gets the ima.toml line(s) that set strict mode.
    setup: fn(&mut Fake, &str),
    env: fn(&Fake) -> Vec<(&'static str, PathBuf)>,
}

fn no_env(_: &Fake) -> Vec<(&'static str, PathBuf)> {
    Vec::new()
}

const BOTH: &[&str] = &["preinst", "postinst"];

const EARLY_ERRORS: &[EarlyError] = &[
    EarlyError {
        name: "missing CONTENTS",
        says: "CONTENTS",
        phases: &["postinst"],
        setup: |f, strict| {
            f.write_toml(strict);
            fs::remove_dir_all(f.path("root/var/db/pkg/test-ima/foo-1")).unwrap();
        },
        env: no_env,
    },
    EarlyError {
        name: "bad ROOT (not a directory)",
        says: "not-a-dir",
        phases: &["postinst"],
        setup: |f, strict| {
            f.write_toml(strict);
            fs::write(f.path("not-a-dir"), "x").unwrap();
        },
        env: |f| vec![("ROOT", f.path("not-a-dir"))],
    },
    EarlyError {
        name: "typo in ima.toml",
        says: "kye",
        phases: BOTH,
        setup: |f, strict| f.write_toml(&format!("{strict}kye = \"/k\"\n")),
        env: no_env,
    },
    EarlyError {
        name: "ima.toml that is not TOML",
        says: "ima.toml",
        phases: BOTH,
        setup: |f, strict| f.write_toml(&format!("{strict}[[[ garbage\n")),
        env: no_env,
    },
    EarlyError {
        name: "bad CATEGORY",
        says: "CATEGORY",
        phases: BOTH,
        setup: |f, strict| f.write_toml(strict),
        env: |_| vec![("CATEGORY", PathBuf::from("-bad/../x"))],
    },
    EarlyError {
        name: "key file readable by others",
        says: "chmod 0400",
        phases: BOTH,
        setup: |f, strict| {
            let key = f.path("open.pem");
            fs::copy(&keys().1, &key).unwrap();
            fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
            let (_, _, cert) = keys();
            fs::write(
                f.path("cfg/etc/portage/ima.toml"),
                format!("{strict}key = {key:?}\ncert = {cert:?}\n"),
            )
            .unwrap();
        },
        env: no_env,
    },
];

#[test]
fn early_errors_exit_3_in_strict_mode_and_2_without() {
    for case in EARLY_ERRORS {
        for strict in [true, false] {
            for &phase in case.phases {
                let mut f = Fake::new();
                f.add("usr/bin/foo", b"foo", None);
                (case.setup)(&mut f, if strict { "strict = true\n" } else { "" });
                let env = (case.env)(&f);
                let env: Vec<(&str, &Path)> = env.iter().map(|(k, v)| (*k, v.as_path())).collect();
                let (code, _, stderr) = f.hook(phase, &env);
                let what = format!("{} ({phase}, strict={strict})", case.name);
                if strict {
                    assert_eq!(code, Some(3), "{what}: {stderr}");
                } else {
                    // 2: the snippet warns and the merge goes on.
                    assert_eq!(code, Some(2), "{what}: {stderr}");
                }
                assert!(stderr.contains("cannot sign"), "{what}: {stderr}");
                assert!(
                    stderr.contains(case.says),
                    "{what}: want {:?} in {stderr}",
                    case.says
                );
                assert!(!has_ima(&f.path("root/usr/bin/foo")), "{what}");
            }
        }
    }
}

/// A CONTENTS line Portage would skip is skipped and reported (issue 15,
/// finding 5); the package's other files are still signed. Its file is not
/// signed, so strict mode fails the merge (3); without strict the hook
/// reports it and the merge goes on (1).
#[test]
fn a_bad_contents_line_fails_strict_mode_but_the_rest_is_signed() {
    if !require_root(module_path!()) {
        return;
    }
    for strict in [true, false] {
        let mut f = Fake::new();
        f.add("usr/bin/foo", b"foo", None);
        f.write_toml(if strict { "strict = true\n" } else { "" });
        let contents = f.path("root/var/db/pkg/test-ima/foo-1/CONTENTS");
        let mut text = fs::read_to_string(&contents).unwrap();
        text.push_str("obj /usr/bin/broken\n");
        fs::write(contents, text).unwrap();
        let (code, _, stderr) = f.hook("postinst", &[]);
        assert_eq!(
            code,
            Some(if strict { 3 } else { 1 }),
            "strict={strict}: {stderr}"
        );
        assert!(
            stderr.contains("CONTENTS line"),
            "strict={strict}: {stderr}"
        );
        assert!(has_ima(&f.path("root/usr/bin/foo")), "strict={strict}");
    }
}

#[test]
fn unreadable_settings_count_as_strict() {
    let f = Fake::new();
    let conf = f.path("cfg/etc/portage/ima.toml");
    fs::remove_file(&conf).unwrap();
    fs::create_dir(&conf).unwrap();
    let (code, _, stderr) = f.hook("postinst", &[]);
    assert_eq!(code, Some(3), "{stderr}");
}

#[test]
fn other_phases_do_nothing_even_with_broken_settings() {
    let f = Fake::new();
    f.write_toml("strict = true\n[[[ garbage\n");
    for phase in ["setup", "install", "prerm", "depend", ""] {
        let (code, stdout, stderr) = f.hook(phase, &[]);
        assert_eq!(
            (code, stdout.as_str(), stderr.as_str()),
            (Some(0), "", ""),
            "{phase}"
        );
    }
    // postrm keeps a [keylime] policy current: broken settings are said
    // there, but an unmerge is never failed.
    let (code, stdout, stderr) = f.hook("postrm", &[]);
    assert_eq!((code, stdout.as_str()), (Some(0), ""), "{stderr}");
    assert!(stderr.contains("TOML parse error"), "{stderr}");
}

/// A signal while hashing: exit 3 in strict mode (the snippet dies), killed
/// by the signal otherwise (the snippet warns). A large sparse file keeps
/// the hook busy reading.
#[test]
fn a_signal_in_strict_mode_exits_3() {
    for strict in [true, false] {
        let mut f = Fake::new();
        f.add("usr/bin/small", b"x", None);
        let big = f.path("root/usr/bin/big");
        fs::File::create(&big).unwrap().set_len(64 << 30).unwrap();
        f.contents
            .push("obj /usr/bin/big 00000000000000000000000000000000 1\n".into());
        fs::write(
            f.path("root/var/db/pkg/test-ima/foo-1/CONTENTS"),
            f.contents.concat(),
        )
        .unwrap();
        f.write_toml(if strict { "strict = true\n" } else { "" });
        let mut child = f
            .command("postinst")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(700));
        assert!(
            child.try_wait().unwrap().is_none(),
            "the hook ended before the signal"
        );
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        if strict {
            assert_eq!(status.code(), Some(3), "{status:?}");
        } else {
            assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
        }
    }
}

/// The MD5 gate: a file whose content is not what Portage merged is never
/// signed, the others are; the run says so and (strict) fails.
#[test]
fn a_file_that_differs_from_contents_is_never_signed() {
    let test = "MD5 gate";
    if !require_root(test) || !require_tool("evmctl", test) {
        return;
    }
    for strict in [false, true] {
        let mut f = Fake::new();
        f.add("usr/bin/good", b"merged content\n", None);
        f.add(
            "usr/bin/changed",
            b"changed after the merge\n",
            Some(b"merged content 2\n"),
        );
        f.write_toml(if strict { "strict = true\n" } else { "" });
        let (code, stdout, stderr) = f.hook("postinst", &[]);
        assert_eq!(code, Some(if strict { 3 } else { 1 }), "{stdout}{stderr}");
        assert!(
            stderr.contains("usr/bin/changed") && stderr.contains("MD5"),
            "{stderr}"
        );
        assert!(
            stdout.contains("1 now") && stdout.contains("1 failed"),
            "{stdout}"
        );
        assert!(evmctl_verifies(&f.path("root/usr/bin/good")));
        assert!(!has_ima(&f.path("root/usr/bin/changed")));
    }
}

/// The premerge decision: preinst signs ${D} when the merge keeps the xattr
/// (same filesystem: Portage renames), and postinst then counts those files
/// as signed before the merge; `premerge = "never"` and an image on another
/// filesystem (tmpfs, default PORTAGE_XATTR_EXCLUDE) are left to postinst.
#[test]
fn preinst_signs_the_image_only_when_the_merge_keeps_the_xattr() {
    let test = "premerge decision";
    if !require_root(test) || !require_tool("evmctl", test) {
        return;
    }
    let shm = Path::new("/dev/shm");
    let dev = |p: &Path| std::os::unix::fs::MetadataExt::dev(&fs::metadata(p).unwrap());
    let scratch = tempfile::tempdir().unwrap();
    if !require(
        shm.is_dir() && dev(shm) != dev(scratch.path()),
        "/dev/shm on its own filesystem",
        test,
    ) {
        return;
    }
    for (premerge, image_on_shm, signs) in [
        ("auto", false, true),
        ("always", false, true),
        ("never", false, false),
        ("auto", true, false),
    ] {
        let what = format!("premerge={premerge} image on tmpfs={image_on_shm}");
        let mut f = Fake::new();
        let shm_dir = tempfile::tempdir_in(shm).unwrap();
        let d = if image_on_shm {
            shm_dir.path().join("image")
        } else {
            f.path("image")
        };
        fs::create_dir_all(d.join("usr/bin")).unwrap();
        fs::write(d.join("usr/bin/new"), b"new binary\n").unwrap();
        f.write_toml(&format!("premerge = \"{premerge}\"\n"));
        let (code, stdout, stderr) = f.hook("preinst", &[("D", &d), ("ED", &d)]);
        assert_eq!(code, Some(0), "{what}: {stdout}{stderr}");
        assert_eq!(
            has_ima(&d.join("usr/bin/new")),
            signs,
            "{what}: {stdout}{stderr}"
        );
        if signs {
            assert!(
                stdout.contains("signed 1 file before the merge"),
                "{what}: {stdout}"
            );
        }
        // The merge: the image's file goes live (a rename keeps the xattr).
        let live = f.path("root/usr/bin/new");
        if image_on_shm {
            fs::copy(d.join("usr/bin/new"), &live).unwrap();
        } else {
            fs::rename(d.join("usr/bin/new"), &live).unwrap();
        }
        f.add("usr/bin/new", b"new binary\n", None);
        let (code, stdout, stderr) = f.hook("postinst", &[]);
        assert_eq!(code, Some(0), "{what}: {stdout}{stderr}");
        let counts = if signs {
            "signed 1 before the merge, 0 now"
        } else {
            "signed 0 before the merge, 1 now"
        };
        assert!(stdout.contains(counts), "{what}: {stdout}");
        assert!(evmctl_verifies(&live), "{what}");
    }
}

/// `config_files` in the hook: preinst applies it to `${D}` (paths as they
/// will be merged), postinst to CONTENTS; CONFIG_PROTECT from the
/// environment. A config file (0644), an executable one (0755) and a
/// program outside /etc, for each mode: what carries which xattr, and the
/// counts the hook prints.
#[test]
fn config_files_modes_in_preinst_and_postinst() {
    let test = "config_files in the hook";
    if !require_root(test) || !require_tool("evmctl", test) {
        return;
    }
    // mode, default?, then (conf, init script, program) xattr kinds, and
    // what postinst and preinst print.
    let cases = [
        (
            "executable",
            ["none", "signature", "signature"],
            "signed 2 before the merge, 0 now, 0 already valid, 1 skipped",
            "signed 2 files before the merge",
        ),
        (
            "hash",
            ["digest", "signature", "signature"],
            "signed 2 before the merge, 0 now, 1 already valid, 0 skipped",
            "signed 2 files before the merge, hashed 1 config file",
        ),
        (
            "sign",
            ["signature", "signature", "signature"],
            "signed 3 before the merge, 0 now, 0 already valid, 0 skipped",
            "signed 3 files before the merge",
        ),
        (
            "skip",
            ["none", "none", "signature"],
            "signed 1 before the merge, 0 now, 0 already valid, 2 skipped",
            "signed 1 file before the merge",
        ),
    ];
    let files = [
        ("etc/app.conf", &b"setting = 1\n"[..], 0o644),
        ("etc/init.d/app", &b"#!/sbin/openrc-run\n"[..], 0o755),
        ("usr/bin/prog", &b"#!/bin/sh\necho prog\n"[..], 0o755),
    ];
    for (mode, kinds, postinst_line, preinst_line) in cases {
        for default in [false, true] {
            if default && mode != "executable" {
                continue;
            }
            let what = format!("config_files = {mode} (default: {default})");
            let mut f = Fake::new();
            if !default {
                f.write_toml(&format!("config_files = \"{mode}\"\n"));
            }
            let d = f.path("image");
            for (rel, content, perm) in files {
                let p = d.join(rel);
                fs::create_dir_all(p.parent().unwrap()).unwrap();
                fs::write(&p, content).unwrap();
                fs::set_permissions(&p, fs::Permissions::from_mode(perm)).unwrap();
            }
            let protect = Path::new("/etc");
            let (code, stdout, stderr) = f.hook(
                "preinst",
                &[("D", &d), ("ED", &d), ("CONFIG_PROTECT", protect)],
            );
            assert_eq!(code, Some(0), "{what}: {stdout}{stderr}");
            assert!(stdout.contains(preinst_line), "{what}: {stdout}");
            for ((rel, content, _), kind) in files.iter().zip(kinds) {
                assert_eq!(ima_kind(&d.join(rel)), kind, "{what}: preinst, {rel}");
                // The merge renames; CONTENTS lists the files.
                let live = f.path("root").join(rel);
                fs::create_dir_all(live.parent().unwrap()).unwrap();
                fs::rename(d.join(rel), &live).unwrap();
                f.add(rel, content, None);
            }
            let (code, stdout, stderr) = f.hook("postinst", &[("CONFIG_PROTECT", protect)]);
            assert_eq!(code, Some(0), "{what}: {stdout}{stderr}");
            assert!(stdout.contains(postinst_line), "{what}: {stdout}");
            for ((rel, _, _), kind) in files.iter().zip(kinds) {
                let live = f.path("root").join(rel);
                assert_eq!(ima_kind(&live), kind, "{what}: postinst, {rel}");
                if kind == "signature" {
                    assert!(evmctl_verifies(&live), "{what}: {rel}");
                }
            }
        }
    }
}
