//! The hardware token's PIN (issue 22 rows 1, 2 and 8), against a real
//! SoftHSM2 token reached through libp11's pkcs11 engine:
//! - `pin_file` is read as the key file is: a plain file (no symlink, no
//!   FIFO, which used to block `sign` forever), owned by root or the user,
//!   no group or other access, at most 1 MiB; else refused with the fix;
//! - `pin_env` is refused inside an ebuild phase (Portage saves the ebuild
//!   environment into every package's environment.bz2);
//! - a PIN in the URI is refused however it is spelled, and shown nowhere;
//! - while a hardware key is open the process is not dumpable and has no
//!   core size;
//! - doctor reports a PIN file others can read, and packages whose saved
//!   environment carries the PIN variable.
//!
//! These need root and Debian's softhsm2, opensc and
//! libengine-pkcs11-openssl (`scripts/install-deps tests`); without them
//! they say why and pass, except under CI.
#![cfg(feature = "openssl")]

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "Qx7-pin-4242";
const URI: &str = "pkcs11:token=ima;object=ec;type=private";

fn ready(test: &str) -> bool {
    common::require_root(test)
        && ["softhsm2-util", "pkcs11-tool"]
            .iter()
            .all(|tool| common::require_tool(tool, test))
        && common::require(
            Path::new(MODULE).exists(),
            "softhsm2's PKCS#11 module",
            test,
        )
}

/// A SoftHSM2 token "ima" (user PIN [`PIN`]) with a P-256 key "ec"; returns
/// its softhsm2.conf.
fn token(dir: &Path) -> PathBuf {
    let tokens = dir.join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    common::run_ok(
        Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args(["--init-token", "--free", "--label", "ima", "--pin", PIN])
            .args(["--so-pin", "31415926"]),
    );
    common::run_ok(
        Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", &conf)
            .args(["--module", MODULE, "--token-label", "ima", "--login"])
            .args(["--pin", PIN, "--keypairgen", "--key-type", "EC:prime256v1"])
            .args(["--id", "02", "--label", "ec"]),
    );
    conf
}

/// ima.toml for `key` with `pin_line` under [hardware].
fn settings(dir: &Path, key: &str, pin_line: &str) -> PathBuf {
    let conf = dir.join("ima.toml");
    std::fs::write(
        &conf,
        format!("key = \"{key}\"\n[hardware]\nmodule = \"{MODULE}\"\n{pin_line}\n"),
    )
    .unwrap();
    conf
}

/// `sign --files` of one fresh file with `conf`, the token's config and
/// `env`; killed after 20 s (a FIFO used to block it forever).
fn sign(dir: &Path, hsm: &Path, conf: &Path, env: &[(&str, &str)]) -> (Output, bool) {
    let files = tempfile::tempdir_in(dir).unwrap();
    std::fs::write(files.path().join("f"), "content\n").unwrap();
    let mut child = common::cmd()
        .arg("--config")
        .arg(conf)
        .args(["sign", "--progress", "none", "--files"])
        .arg(files.path())
        .env("SOFTHSM2_CONF", hsm)
        .env_remove("EBUILD_PHASE")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let signed = common::is_signed(&files.path().join("f"));
    (out, signed)
}

fn pin_file(path: &Path, mode: u32) -> PathBuf {
    std::fs::write(path, format!("{PIN}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.to_path_buf()
}

/// Refused, with `expect` in the message, nothing signed, no PIN shown.
fn assert_refused(case: &str, (out, signed): (Output, bool), expect: &str) {
    let text = common::text(&out);
    assert!(
        out.status.code().is_some(),
        "{case}: killed (blocked?): {text}"
    );
    assert!(!out.status.success() && !signed, "{case}: was used: {text}");
    assert!(text.contains(expect), "{case}: want {expect:?}: {text}");
    assert!(!text.contains(PIN), "{case}: the PIN was shown: {text}");
}

#[test]
fn pin_file_must_be_a_private_plain_file() {
    if !ready("pin_file_must_be_a_private_plain_file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hsm = token(dir.path());
    let d = dir.path();
    let with = |path: &Path| settings(d, URI, &format!("pin_file = \"{}\"", path.display()));

    let good = pin_file(&d.join("good"), 0o400);
    let (out, signed) = sign(d, &hsm, &with(&good), &[]);
    assert!(signed, "a private PIN file works: {}", common::text(&out));

    let readable = pin_file(&d.join("readable"), 0o644);
    let chmod = format!("chmod 0400 {}", readable.display());
    assert_refused("mode 0644", sign(d, &hsm, &with(&readable), &[]), &chmod);
    let group = pin_file(&d.join("group"), 0o440);
    assert_refused("mode 0440", sign(d, &hsm, &with(&group), &[]), "chmod 0400");

    let link = d.join("link");
    std::os::unix::fs::symlink(&good, &link).unwrap();
    assert_refused("symlink", sign(d, &hsm, &with(&link), &[]), "symbolic link");

    let fifo = d.join("fifo");
    common::run_ok(Command::new("mkfifo").arg("-m").arg("0600").arg(&fifo));
    assert_refused("FIFO", sign(d, &hsm, &with(&fifo), &[]), "FIFO");

    let foreign = pin_file(&d.join("foreign"), 0o400);
    std::os::unix::fs::chown(&foreign, Some(4242), Some(4242)).unwrap();
    assert_refused("other owner", sign(d, &hsm, &with(&foreign), &[]), "chown");

    let huge = d.join("huge");
    let mut f = std::fs::File::create(&huge).unwrap();
    writeln!(f, "{PIN}").unwrap();
    f.write_all(&vec![b'#'; 2 << 20]).unwrap();
    std::fs::set_permissions(&huge, std::fs::Permissions::from_mode(0o400)).unwrap();
    assert_refused("2 MiB", sign(d, &hsm, &with(&huge), &[]), "bytes");

    // doctor's pin-file check says the same.
    let out = common::cmd()
        .arg("--config")
        .arg(with(&readable))
        .args(["doctor", "--json"])
        .env("SOFTHSM2_CONF", &hsm)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "pin-file")
        .expect("a pin-file check");
    assert_eq!(check["status"], "fail", "{check}");
    assert!(
        check["finding"].as_str().unwrap().contains(&chmod),
        "{check}"
    );
}

#[test]
fn pin_env_is_refused_inside_an_ebuild_phase() {
    if !ready("pin_env_is_refused_inside_an_ebuild_phase") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hsm = token(dir.path());
    let conf = settings(dir.path(), URI, "pin_env = \"SITE_PIN\"");
    let (out, signed) = sign(dir.path(), &hsm, &conf, &[("SITE_PIN", PIN)]);
    assert!(signed, "interactive: pin_env works: {}", common::text(&out));
    for phase in ["package", "preinst", "postinst", "compile"] {
        let env = [("SITE_PIN", PIN), ("EBUILD_PHASE", phase)];
        let result = sign(dir.path(), &hsm, &conf, &env);
        assert_refused(phase, result, "pin_file");
    }
}

#[test]
fn pin_in_the_uri_is_refused_however_spelled_and_never_shown() {
    if !common::require_root("pin_in_the_uri_is_refused_however_spelled_and_never_shown") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for attribute in [
        "pin-value",
        "PIN-VALUE",
        "Pin-Value",
        "pin%2Dvalue",
        "pin%2dvalue",
        "%70in-value",
    ] {
        for key in [
            format!("{URI}?{attribute}={PIN}"),
            format!("pkcs11:token=ima;{attribute}={PIN};object=ec"),
        ] {
            let conf = settings(dir.path(), &key, "");
            let (out, signed) = sign(dir.path(), Path::new("/nonexistent"), &conf, &[]);
            assert_refused(&key, (out, signed), "pin_file");
            let doctor = common::cmd()
                .arg("--config")
                .arg(&conf)
                .arg("doctor")
                .output()
                .unwrap();
            let text = common::text(&doctor);
            assert!(text.contains("(hidden)"), "{key}: {text}");
            assert!(!text.contains(PIN), "{key}: doctor showed the PIN: {text}");
            let verify = common::cmd()
                .arg("--config")
                .arg(&conf)
                .args(["verify", "--files"])
                .arg(dir.path())
                .output()
                .unwrap();
            let text = common::text(&verify);
            assert!(!verify.status.success(), "{key}: {text}");
            assert!(!text.contains(PIN), "{key}: verify showed the PIN: {text}");
        }
    }
}

#[test]
fn an_open_hardware_key_makes_the_process_undumpable_without_core() {
    use rustix::process::{dumpable_behavior, getrlimit, DumpableBehavior, Resource};
    if !ready("an_open_hardware_key_makes_the_process_undumpable_without_core") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hsm = token(dir.path());
    // The only test here that opens a device in this process.
    assert_eq!(dumpable_behavior().unwrap(), DumpableBehavior::Dumpable);
    std::env::set_var("SOFTHSM2_CONF", &hsm);
    let options = ima_core::HardwareOptions {
        module: Some(MODULE.into()),
        pin: Some(ima_core::Pin::new(PIN.into())),
        ..Default::default()
    };
    let source = ima_core::KeySource::classify(Path::new(URI)).unwrap();
    let key = ima_core::HardwareKey::open(&source, &options, None).unwrap();
    drop(options);
    assert_eq!(
        dumpable_behavior().unwrap(),
        DumpableBehavior::NotDumpable,
        "a core dump would hold the PIN's copies in libp11 and SoftHSM"
    );
    let core = getrlimit(Resource::Core);
    assert_eq!((core.current, core.maximum), (Some(0), Some(0)));
    // What gcore and the kernel read.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    assert!(status.contains("CoreDumping:\t0"), "{status}");
    drop(key);
}

#[test]
fn doctor_names_packages_whose_saved_environment_holds_the_pin() {
    if !common::require_root("doctor_names_packages_whose_saved_environment_holds_the_pin") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("etc/portage")).unwrap();
    std::fs::write(
        root.join("etc/portage/ima.toml"),
        "[hardware]\npin_env = \"SITE_PIN\"\n",
    )
    .unwrap();
    let saved = |pf: &str, text: &str| {
        let vdb = root.join("var/db/pkg/app-misc").join(pf);
        std::fs::create_dir_all(&vdb).unwrap();
        std::fs::write(vdb.join("CONTENTS"), "").unwrap();
        let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
        enc.write_all(text.as_bytes()).unwrap();
        std::fs::write(vdb.join("environment.bz2"), enc.finish().unwrap()).unwrap();
        vdb.join("environment.bz2")
    };
    let clean = "declare -x ARCH=\"amd64\"\ndeclare -x PF=\"clean-1\"\n";
    saved("clean-1", clean);
    let leaky = saved(
        "leaky-2",
        &format!("declare -x ARCH=\"amd64\"\ndeclare -x IMA_TOKEN_PIN=\"{PIN}\"\n"),
    );
    let custom = saved(
        "custom-3",
        &format!("declare -x SITE_PIN=\"{PIN}\"\ndeclare -x X=1\n"),
    );
    let out = common::cmd()
        .args(["doctor", "--json", "--root"])
        .arg(root)
        .env_remove("PORTAGE_CONFIGROOT")
        .env_remove("EPREFIX")
        .env_remove("ROOT")
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "pin-saved")
        .expect("a pin-saved check")
        .clone();
    assert_eq!(check["status"], "fail", "{check}");
    let finding = check["finding"].as_str().unwrap();
    assert!(finding.contains(&leaky.display().to_string()), "{finding}");
    assert!(finding.contains(&custom.display().to_string()), "{finding}");
    assert!(!finding.contains("clean-1"), "{finding}");
    assert!(!finding.contains(PIN), "{finding}");
    assert!(check["fix"].as_str().unwrap().contains("change"), "{check}");
}
