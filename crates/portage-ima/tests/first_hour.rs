//! What a new user meets in the first hour (issue 24): errors that say what
//! to do, in plain words and on real lines; `sign` as an ordinary user;
//! `hook` typed at a shell; `--dry-run` listing each file.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn run(conf: &Path, args: &[&str]) -> Output {
    common::cmd()
        .arg("--config")
        .arg(conf)
        .args(args)
        .env_remove("EBUILD_PHASE")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A private directory (0700) with an empty ima.toml and a key.
fn workdir() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let conf = dir.path().join("ima.toml");
    std::fs::write(&conf, "").unwrap();
    let key = common::new_key(dir.path());
    (dir, conf, key)
}

/// The TOML parser's excerpt of the file, with its caret, on lines of its
/// own (it used to come out as one line with literal `\n`s).
#[test]
fn a_settings_error_is_shown_on_real_lines() {
    let (dir, conf, _) = workdir();
    std::fs::write(&conf, "jobs = 4\nhash = sha256\n").unwrap();
    let out = run(&conf, &["sign", "--files", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(!err.contains("\\n"), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines[0].contains("ima.toml") && lines[0].contains("line 2"),
        "{err}"
    );
    let source = lines.iter().position(|l| l.ends_with("| hash = sha256"));
    let caret = lines.iter().position(|l| l.trim_end().ends_with('^'));
    assert!(
        matches!((source, caret), (Some(s), Some(c)) if c == s + 1),
        "the caret should be on the line under the source line:\n{err}"
    );
    // The column of the caret is that of `sha256`.
    let (s, c) = (source.unwrap(), caret.unwrap());
    assert_eq!(
        lines[c].find('^').unwrap(),
        lines[s].find("sha256").unwrap(),
        "{err}"
    );
}

/// A path with a newline in an error is still escaped: no text can forge a
/// line of output.
#[test]
fn a_newline_in_a_path_is_still_escaped() {
    let (dir, _, _) = workdir();
    let conf = dir.path().join("ima\nfake.toml");
    std::fs::write(&conf, "hash = sha256\n").unwrap();
    let out = run(&conf, &["sign", "--files", "/nonexistent"]);
    assert!(stderr(&out).contains("ima\\nfake.toml"), "{}", stderr(&out));
}

#[test]
fn hook_typed_at_a_shell_says_where_it_belongs() {
    let (_dir, conf, _) = workdir();
    let out = run(&conf, &["hook"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("runs from Portage's bashrc")
            && err.contains("/etc/portage/bashrc")
            && err.contains("portage-ima sign --all"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// As an ordinary user: one error up front, no attempt on each file.
#[test]
fn sign_as_an_ordinary_user_says_run_as_root_once() {
    if !common::require_root("sign_as_an_ordinary_user_says_run_as_root_once")
        || !common::require_tool("setpriv", "sign_as_an_ordinary_user_says_run_as_root_once")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    for i in 0..5 {
        std::fs::write(files.join(format!("f{i}")), b"x").unwrap();
    }
    let conf = dir.path().join("ima.toml");
    std::fs::write(&conf, "").unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(common::bin())
        .arg("--config")
        .arg(&conf)
        .args(["sign", "--files"])
        .arg(&files)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("run as root") && err.contains("CAP_SYS_ADMIN"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    for i in 0..5 {
        assert!(!common::is_signed(&files.join(format!("f{i}"))));
    }
}

/// `--dry-run` (and `-p`/`--pretend`) lists each file with the word the real
/// run uses, and `-v` on the real run lists the same files with theirs.
#[test]
fn dry_run_lists_each_file_in_the_words_of_the_real_run() {
    if !common::require_root("dry_run_lists_each_file_in_the_words_of_the_real_run") {
        return;
    }
    let (dir, conf, key) = workdir();
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("a"), b"a").unwrap();
    std::fs::write(files.join("b"), b"b").unwrap();
    let key = key.to_str().unwrap();
    let files = files.to_str().unwrap();
    for flag in ["--dry-run", "-p", "--pretend"] {
        let out = run(&conf, &["sign", flag, "--key", key, "--files", files]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = stdout(&out);
        assert!(
            text.contains(&format!("portage-ima: {files}/a: would-sign\n"))
                && text.contains(&format!("portage-ima: {files}/b: would-sign\n")),
            "{flag}: {text}"
        );
        assert!(!common::is_signed(&Path::new(files).join("a")));
    }
    let out = run(
        &conf,
        &["sign", "--key", key, "--files", &format!("{files}/a")],
    );
    assert!(!stdout(&out).contains("/a: signed"), "{}", stdout(&out));
    assert!(stdout(&out).contains("(of 1 file)"), "{}", stdout(&out));
    let out = run(&conf, &["-v", "sign", "--key", key, "--files", files]);
    let text = stdout(&out);
    assert!(
        text.contains(&format!("portage-ima: {files}/a: already-valid\n"))
            && text.contains(&format!("portage-ima: {files}/b: signed\n")),
        "{text}"
    );
    let out = run(&conf, &["sign", "-p", "--key", key, "--files", files]);
    assert!(
        stdout(&out).contains(&format!("portage-ima: {files}/a: already-valid\n")),
        "{}",
        stdout(&out)
    );
}

/// Each bad key or certificate is answered with what it is and what to do.
#[test]
fn bad_keys_and_certificates_are_named_in_plain_words() {
    let (dir, conf, key) = workdir();
    let target = dir.path().to_str().unwrap();
    let key_dir = dir.path().join("keys");
    std::fs::create_dir(&key_dir).unwrap();
    std::fs::set_permissions(&key_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = run(
        &conf,
        &[
            "sign",
            "--key",
            key_dir.to_str().unwrap(),
            "--files",
            target,
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("is a directory") && !err.contains("chmod"),
        "{err}"
    );

    let junk = dir.path().join("junk.der");
    std::fs::write(&junk, b"not a certificate\n").unwrap();
    let out = run(
        &conf,
        &[
            "sign",
            "--key",
            key.to_str().unwrap(),
            "--cert",
            junk.to_str().unwrap(),
            "--files",
            target,
        ],
    );
    let err = stderr(&out);
    assert!(
        err.contains("not a certificate") && !err.contains("APPLICATION"),
        "{err}"
    );

    let encrypted = dir.path().join("enc.pem");
    common::run_ok(
        Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-aes256", "-pass", "pass:secret", "-out"])
            .arg(&encrypted),
    );
    std::fs::set_permissions(&encrypted, std::fs::Permissions::from_mode(0o400)).unwrap();
    let out = run(
        &conf,
        &[
            "sign",
            "--key",
            encrypted.to_str().unwrap(),
            "--files",
            target,
        ],
    );
    let err = stderr(&out);
    assert!(
        err.contains("passphrase") && err.contains("openssl pkey") && !err.contains("PEM RSA"),
        "{err}"
    );
    let out = run(&conf, &["doctor", "--key", encrypted.to_str().unwrap()]);
    let text = stdout(&out);
    assert!(
        text.contains("passphrase") && !text.contains("PEM RSA"),
        "{text}"
    );
}

/// doctor's fix for a missing key makes the certificate too.
#[test]
fn doctor_makes_a_key_with_its_certificate() {
    let (dir, conf, _) = workdir();
    let missing = dir.path().join("none.priv");
    let out = run(&conf, &["doctor", "--key", missing.to_str().unwrap()]);
    let text = stdout(&out);
    let fix = text
        .lines()
        .skip_while(|l| !l.starts_with("FAIL  key:"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        fix.contains("-keyout") && fix.contains("-x509") && fix.contains("x509_ima.der"),
        "{text}"
    );
}

/// `doctor` on a pseudo-terminal (util-linux `script`) with `env`, its output.
fn doctor_on_a_terminal(conf: &Path, flags: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new("script");
    cmd.arg("-qec")
        .arg(format!(
            "'{}' --config '{}' {flags} doctor",
            common::bin(),
            conf.display()
        ))
        .arg("/dev/null")
        .env_remove("NO_COLOR")
        .env_remove("NOCOLOR")
        .env("TERM", "xterm");
    for (k, v) in env {
        cmd.env(k, v);
    }
    String::from_utf8_lossy(&cmd.output().unwrap().stdout).into_owned()
}

/// Statuses are coloured on a terminal only, and never against NO_COLOR,
/// Portage's NOCOLOR or --color=never; --color=always colours a pipe.
#[test]
fn statuses_are_coloured_on_a_terminal_only() {
    let test = "statuses_are_coloured_on_a_terminal_only";
    if !common::require_tool("script", test) {
        return;
    }
    let (dir, conf, _) = workdir();
    let missing = dir.path().join("none.priv");
    std::fs::write(&conf, format!("key = \"{}\"\n", missing.display())).unwrap();
    let red_fail = "\x1b[1;31mFAIL\x1b[0m  key:";
    let tty = doctor_on_a_terminal(&conf, "", &[]);
    assert!(tty.contains(red_fail), "{tty:?}");
    assert!(tty.contains("\x1b[32mok  \x1b[0m"), "{tty:?}");
    for (flags, env) in [
        ("", ("NO_COLOR", "1")),
        ("", ("NOCOLOR", "true")),
        ("--color=never", ("X", "")),
        ("", ("TERM", "dumb")),
    ] {
        let text = doctor_on_a_terminal(&conf, flags, &[env]);
        assert!(
            text.contains("FAIL  key:") && !text.contains('\x1b'),
            "{flags} {env:?}: {text:?}"
        );
    }
    let piped = common::cmd()
        .arg("--config")
        .arg(&conf)
        .arg("doctor")
        .env_remove("NO_COLOR")
        .env_remove("NOCOLOR")
        .env("TERM", "xterm")
        .output()
        .unwrap();
    let piped = stdout(&piped);
    assert!(
        piped.contains("FAIL  key:") && !piped.contains('\x1b'),
        "{piped:?}"
    );
    let forced = stdout(&run(&conf, &["--color=always", "doctor"]));
    assert!(forced.contains(red_fail), "{forced:?}");
}
