//! Keys held by hardware (issue 12), against the real things: a SoftHSM2
//! token (RSA and EC keys made on it with pkcs11-tool, reached through
//! libp11's pkcs11 engine) and a software TPM (swtpm, started here, reached
//! through the tpm2-openssl provider) with a TSS2 key file and a key made
//! persistent at a handle. `sign --files` signs with each; evmctl and our
//! `verify` accept the signatures with the certificate the device's key
//! signed. A wrong PIN, a missing token and a TPM killed mid-run each give
//! a clear error, and no file is left with a bad `security.ima`.
//!
//! These need root (security.ima) and Debian's swtpm, swtpm-tools,
//! tpm2-tools, tpm2-openssl, softhsm2, opensc and libengine-pkcs11-openssl
//! (`scripts/install-deps tests`); without them they say why and pass,
//! except under CI.
#![cfg(feature = "openssl")]

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "271828";

/// Root and every tool these tests drive.
fn ready(test: &str) -> bool {
    common::require_root(test)
        && [
            "swtpm",
            "tpm2_createprimary",
            "softhsm2-util",
            "pkcs11-tool",
            "evmctl",
        ]
        .iter()
        .all(|tool| common::require_tool(tool, test))
        && common::require(
            Path::new(SOFTHSM_MODULE).exists(),
            "softhsm2's PKCS#11 module",
            test,
        )
}

/// `count` small files with different content in `dir/files`.
fn files(dir: &Path, count: usize) -> PathBuf {
    let files = dir.join("files");
    std::fs::create_dir(&files).unwrap();
    for i in 0..count {
        std::fs::write(
            files.join(format!("f{i}")),
            format!("file {i}\n").repeat(i % 50 + 1),
        )
        .unwrap();
    }
    files
}

/// Every file of `files` carries a signature that our `verify` says is `ok`
/// with `cert`, and when `evmctl` that evmctl accepts too. (evmctl 1.4 takes
/// the key id from the public key, ignoring the certificate's subject key
/// identifier, so only a certificate with `subjectKeyIdentifier=hash` suits it;
/// the kernel and `verify` use the identifier.)
fn assert_verified(files: &Path, cert: &Path, evmctl: bool) {
    let mut paths: Vec<_> = std::fs::read_dir(files)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for path in paths.iter().filter(|_| evmctl) {
        let out = Command::new("evmctl")
            .args(["ima_verify", "--key"])
            .arg(cert)
            .arg(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "evmctl ima_verify {}: {}",
            path.display(),
            common::text(&out)
        );
    }
    let out = common::cmd()
        .args(["verify", "--cert"])
        .arg(cert)
        .arg("--files")
        .arg(files)
        .output()
        .unwrap();
    let text = common::text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("verified: {} ok", paths.len())),
        "{text}"
    );
}

/// `portage-ima --config CONF sign --files DIR` with `env`.
fn sign(conf: &Path, files: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = common::cmd();
    cmd.arg("--config")
        .arg(conf)
        .args(["sign", "--progress", "none", "--files"])
        .arg(files);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Writes the settings file `path`: `key`, the certificate when given, and
/// the `extra` lines.
fn write_conf(path: &Path, key: &str, cert: Option<&Path>, extra: &str) {
    let cert = cert.map_or_else(String::new, |c| format!("cert = \"{}\"\n", c.display()));
    std::fs::write(path, format!("key = \"{key}\"\n{cert}{extra}")).unwrap();
}

/// Files of `files` that carry a security.ima.
fn signed_count(files: &Path) -> usize {
    std::fs::read_dir(files)
        .unwrap()
        .filter(|e| common::is_signed(&e.as_ref().unwrap().path()))
        .count()
}

/// A self-signed certificate for a key the device holds, made by OpenSSL
/// through the device (`key_args` say how to reach it), with the subject key
/// identifier `skid` (`hash`, or hex so the key id shows which certificate
/// was used).
fn device_cert(
    dir: &Path,
    name: &str,
    key_args: &[&str],
    env: &[(&str, &str)],
    skid: &str,
) -> PathBuf {
    let der = dir.join(format!("{name}.der"));
    let mut cmd = Command::new("openssl");
    cmd.args(["req", "-new", "-x509", "-days", "7", "-subj"])
        .arg(format!("/CN=portage-ima {name}"))
        .args(["-addext", &format!("subjectKeyIdentifier={skid}")])
        .args(["-addext", "keyUsage=digitalSignature"])
        .args(key_args)
        .args(["-outform", "DER", "-out"])
        .arg(&der);
    for (k, v) in env {
        cmd.env(k, v);
    }
    common::run_ok(&mut cmd);
    der
}

/// The key id of the first file's signature, in hex.
fn keyid_of(path: &Path) -> String {
    let f = std::fs::File::open(path).unwrap();
    let value = ima_core::read_ima_xattr(&f).unwrap().expect("signed");
    hex::encode(&value[3..7])
}

/// A SoftHSM2 token "ima" (PIN [`PIN`]) in its own directory, with an RSA
/// key (id 01, label rsa) and a P-256 key (id 02, label ec).
struct Hsm {
    conf: PathBuf,
}

impl Hsm {
    fn new(dir: &Path) -> Hsm {
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
        let hsm = Hsm { conf };
        common::run_ok(hsm.cmd("softhsm2-util").args([
            "--init-token",
            "--free",
            "--label",
            "ima",
            "--pin",
            PIN,
            "--so-pin",
            "31415",
        ]));
        for (kind, id, label) in [("rsa:2048", "01", "rsa"), ("EC:prime256v1", "02", "ec")] {
            common::run_ok(hsm.pkcs11_tool().args([
                "--login",
                "--pin",
                PIN,
                "--keypairgen",
                "--key-type",
                kind,
                "--id",
                id,
                "--label",
                label,
            ]));
        }
        hsm
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![("SOFTHSM2_CONF", self.conf.display().to_string())]
    }

    fn cmd(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("SOFTHSM2_CONF", &self.conf);
        cmd
    }

    fn pkcs11_tool(&self) -> Command {
        let mut cmd = self.cmd("pkcs11-tool");
        cmd.args(["--module", SOFTHSM_MODULE, "--token-label", "ima"]);
        cmd
    }

    /// A certificate signed by the token's key `label`, made with the
    /// pkcs11 engine (the PIN in an OpenSSL config, as a test may).
    fn cert(&self, dir: &Path, label: &str, skid: &str) -> PathBuf {
        let cnf = dir.join(format!("{label}-engine.cnf"));
        std::fs::write(
            &cnf,
            format!(
                "openssl_conf = oc\n[oc]\nengines = es\n[es]\npkcs11 = p11\n[p11]\n\
                 engine_id = pkcs11\nMODULE_PATH = {SOFTHSM_MODULE}\nPIN = {PIN}\n\
                 [req]\ndistinguished_name = dn\n[dn]\n"
            ),
        )
        .unwrap();
        let uri = format!("pkcs11:token=ima;object={label};type=private");
        let env = [
            ("SOFTHSM2_CONF", self.conf.to_str().unwrap()),
            ("OPENSSL_CONF", cnf.to_str().unwrap()),
        ];
        device_cert(
            dir,
            label,
            &["-engine", "pkcs11", "-keyform", "engine", "-key", &uri],
            &env,
            skid,
        )
    }

    /// ima.toml for the token's key `label`; `pin_line` gives the PIN.
    fn conf(&self, dir: &Path, label: &str, cert: Option<&Path>, pin_line: &str) -> PathBuf {
        let conf = dir.join(format!("{label}.toml"));
        let cert = cert.map_or_else(String::new, |c| format!("cert = \"{}\"\n", c.display()));
        std::fs::write(
            &conf,
            format!(
                "key = \"pkcs11:token=ima;object={label};type=private\"\n{cert}jobs = 2\n\
                 [hardware]\nmodule = \"{SOFTHSM_MODULE}\"\n{pin_line}\n"
            ),
        )
        .unwrap();
        conf
    }
}

/// A PIN file holding `pin`, mode 0400.
fn pin_file(dir: &Path, pin: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    // Not named after the PIN: doctor's pin-file check shows the path.
    let path = dir.join(if pin == PIN { "pin" } else { "pin-other" });
    std::fs::write(&path, format!("{pin}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    path
}

#[test]
fn pkcs11_rsa_and_ec_keys_sign_and_verify() {
    if !ready("pkcs11_rsa_and_ec_keys_sign_and_verify") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hsm = Hsm::new(dir.path());
    let pin = pin_file(dir.path(), PIN);
    let env = hsm.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // RSA, the certificate given as a file, the PIN from a file.
    let rsa_cert = hsm.cert(dir.path(), "rsa", "hash");
    let conf = hsm.conf(
        dir.path(),
        "rsa",
        Some(&rsa_cert),
        &format!("pin_file = \"{}\"", pin.display()),
    );
    let rsa_dir = dir.path().join("rsa-files");
    std::fs::create_dir(&rsa_dir).unwrap();
    let files = files(&rsa_dir, 12);
    let out = sign(&conf, &files, &env);
    let text = common::text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("signing device: 12 signatures"), "{text}");
    assert!(text.contains("files/s"), "{text}");
    assert!(!text.contains(PIN), "the PIN was printed: {text}");
    assert_verified(&files, &rsa_cert, true);
    // doctor opens the key as the signer does, and names it.
    let out = common::cmd()
        .arg("--config")
        .arg(&conf)
        .arg("doctor")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = common::text(&out);
    assert!(
        text.contains("a PKCS#11 URI, held by hardware and opened through OpenSSL"),
        "{text}"
    );
    assert!(!text.contains(PIN), "the PIN was printed: {text}");

    // EC, the certificate stored on the token beside the key (not given),
    // the PIN from the environment.
    let ec_cert = hsm.cert(dir.path(), "ec", "a1a2a3a4a5a6a7a8a9aa");
    common::run_ok(
        hsm.pkcs11_tool()
            .args(["--login", "--pin", PIN, "--write-object"])
            .arg(&ec_cert)
            .args(["--type", "cert", "--id", "02", "--label", "ec"]),
    );
    let conf = hsm.conf(dir.path(), "ec", None, "pin_env = \"IMA_TEST_PIN\"");
    let ec_dir = dir.path().join("ec-files");
    std::fs::create_dir(&ec_dir).unwrap();
    let files = self::files(&ec_dir, 12);
    let mut env_pin = env.clone();
    env_pin.push(("IMA_TEST_PIN", PIN));
    let out = sign(&conf, &files, &env_pin);
    let text = common::text(&out);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains(PIN), "the PIN was printed: {text}");
    // The token's certificate gave the key id (its own subject key
    // identifier, which evmctl 1.4 does not look at).
    assert_eq!(keyid_of(&files.join("f0")), "a7a8a9aa");
    assert_verified(&files, &ec_cert, false);

    // The same key with a certificate evmctl can match (the file wins over
    // the token's).
    let ec_hash_cert = hsm.cert(dir.path(), "ec", "hash");
    let conf = hsm.conf(
        dir.path(),
        "ec",
        Some(&ec_hash_cert),
        &format!("pin_file = \"{}\"", pin.display()),
    );
    let out = sign(&conf, &files, &env);
    assert!(out.status.success(), "{}", common::text(&out));
    assert_verified(&files, &ec_hash_cert, true);
}

#[test]
fn pkcs11_wrong_pin_or_missing_token_is_a_clear_error_and_writes_nothing() {
    if !ready("pkcs11_wrong_pin_or_missing_token_is_a_clear_error_and_writes_nothing") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hsm = Hsm::new(dir.path());
    let env = hsm.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let files = files(dir.path(), 5);

    let wrong = pin_file(dir.path(), "999999");
    let conf = hsm.conf(
        dir.path(),
        "ec",
        None,
        &format!("pin_file = \"{}\"", wrong.display()),
    );
    let out = sign(&conf, &files, &env);
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("wrong PIN"), "{text}");
    assert!(text.contains("pkcs11:token=ima;object=ec"), "{text}");
    assert!(!text.contains("999999"), "the PIN was printed: {text}");
    assert_eq!(signed_count(&files), 0);

    let pin = pin_file(dir.path(), PIN);
    let conf = dir.path().join("missing.toml");
    std::fs::write(
        &conf,
        format!(
            "key = \"pkcs11:token=no-such-token;object=ec;type=private\"\n[hardware]\n\
             module = \"{SOFTHSM_MODULE}\"\npin_file = \"{}\"\n",
            pin.display()
        ),
    )
    .unwrap();
    let out = sign(&conf, &files, &env);
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("token=no-such-token"), "{text}");
    assert!(text.contains("no such token or key"), "{text}");
    assert!(!text.contains(PIN), "the PIN was printed: {text}");
    assert_eq!(signed_count(&files), 0);

    // The PIN in the URI is refused before anything is opened.
    let conf = dir.path().join("pin-in-uri.toml");
    std::fs::write(
        &conf,
        "key = \"pkcs11:token=ima;object=ec;type=private?pin-value=271828\"\n",
    )
    .unwrap();
    let out = sign(&conf, &files, &env);
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("pin_file or pin_env"), "{text}");
    assert!(!text.contains(PIN), "the PIN was printed: {text}");
}

/// A swtpm on two free local ports, killed on drop.
struct Tpm {
    child: Child,
    tcti: String,
    _state: tempfile::TempDir,
}

/// A free local port whose successor is free too: the swtpm TCTI finds the
/// control channel at the server port + 1.
fn free_port_pair() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

impl Tpm {
    fn start() -> Tpm {
        let state = tempfile::tempdir().unwrap();
        let port = free_port_pair();
        let ctrl = port + 1;
        let child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--tpmstate"])
            .arg(format!("dir={}", state.path().display()))
            .args([
                "--server",
                &format!("type=tcp,bindaddr=127.0.0.1,port={port}"),
            ])
            .args([
                "--ctrl",
                &format!("type=tcp,bindaddr=127.0.0.1,port={ctrl}"),
            ])
            .args(["--flags", "not-need-init,startup-clear"])
            .stdout(Stdio::null())
            .spawn()
            .expect("swtpm starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "swtpm did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Tpm {
            child,
            tcti: format!("swtpm:host=127.0.0.1,port={port}"),
            _state: state,
        }
    }

    fn env(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("TPM2OPENSSL_TCTI", self.tcti.as_str()),
            ("TPM2TOOLS_TCTI", self.tcti.as_str()),
        ]
    }

    fn run(&self, program: &str, args: &[&str], dir: &Path) -> Output {
        common::run_ok(
            Command::new(program)
                .args(args)
                .current_dir(dir)
                .envs(self.env()),
        )
    }

    /// A P-256 key as a TSS2 PEM file, made by OpenSSL through the provider.
    fn key_file(&self, dir: &Path) -> PathBuf {
        self.run(
            "openssl",
            &[
                "genpkey",
                "-provider",
                "tpm2",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "group:P-256",
                "-out",
                "tpm-key.pem",
            ],
            dir,
        );
        dir.join("tpm-key.pem")
    }

    /// A P-256 signing key made with tpm2-tools and made persistent at `handle`.
    fn persistent_key(&self, dir: &Path, handle: &str) {
        self.run(
            "tpm2_createprimary",
            &["-Q", "-C", "o", "-c", "primary.ctx"],
            dir,
        );
        self.run(
            "tpm2_create",
            &[
                "-Q",
                "-C",
                "primary.ctx",
                "-G",
                "ecc256:ecdsa-sha256",
                "-u",
                "k.pub",
                "-r",
                "k.priv",
            ],
            dir,
        );
        self.run("tpm2_flushcontext", &["-t"], dir);
        self.run(
            "tpm2_load",
            &[
                "-Q",
                "-C",
                "primary.ctx",
                "-u",
                "k.pub",
                "-r",
                "k.priv",
                "-c",
                "k.ctx",
            ],
            dir,
        );
        self.run(
            "tpm2_evictcontrol",
            &["-Q", "-C", "o", "-c", "k.ctx", handle],
            dir,
        );
        // Without a resource manager, tpm2-tools leave their objects loaded.
        self.run("tpm2_flushcontext", &["-t"], dir);
    }

    /// A certificate signed by the TPM key `key` (a file or `handle:...`).
    fn cert(&self, dir: &Path, name: &str, key: &str, skid: &str) -> PathBuf {
        device_cert(
            dir,
            name,
            &["-provider", "tpm2", "-provider", "default", "-key", key],
            &self.env(),
            skid,
        )
    }
}

impl Drop for Tpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn tpm_key_file_and_persistent_handle_sign_and_verify() {
    if !ready("tpm_key_file_and_persistent_handle_sign_and_verify") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tpm = Tpm::start();

    let key = tpm.key_file(dir.path());
    let cert = tpm.cert(dir.path(), "tpm-file", key.to_str().unwrap(), "hash");
    let conf = dir.path().join("file.toml");
    write_conf(&conf, key.to_str().unwrap(), Some(&cert), "");
    let file_dir = dir.path().join("by-file");
    std::fs::create_dir(&file_dir).unwrap();
    let files = files(&file_dir, 10);
    let out = sign(&conf, &files, &tpm.env());
    let text = common::text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("signing device: 10 signatures"), "{text}");
    assert_verified(&files, &cert, true);

    tpm.persistent_key(dir.path(), "0x81000001");
    let cert = tpm.cert(dir.path(), "tpm-handle", "handle:0x81000001", "c1c2c3c4");
    let hash_cert = tpm.cert(dir.path(), "tpm-handle-h", "handle:0x81000001", "hash");
    let conf = dir.path().join("handle.toml");
    write_conf(&conf, "handle:0x81000001", Some(&cert), "");
    let handle_dir = dir.path().join("by-handle");
    std::fs::create_dir(&handle_dir).unwrap();
    let files = self::files(&handle_dir, 10);
    let out = sign(&conf, &files, &tpm.env());
    let text = common::text(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(keyid_of(&files.join("f0")), "c1c2c3c4");
    assert_verified(&files, &cert, false);
    write_conf(&conf, "handle:0x81000001", Some(&hash_cert), "");
    let out = sign(&conf, &files, &tpm.env());
    assert!(out.status.success(), "{}", common::text(&out));
    assert_verified(&files, &hash_cert, true);

    // A handle with no key behind it.
    let conf = dir.path().join("empty-handle.toml");
    write_conf(&conf, "handle:0x81000099", None, "");
    let out = sign(&conf, &files, &tpm.env());
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("handle:0x81000099"), "{text}");
    assert!(text.contains("no key at this handle"), "{text}");
}

#[test]
fn tpm_that_stops_mid_run_leaves_every_file_signed_or_untouched() {
    if !ready("tpm_that_stops_mid_run_leaves_every_file_signed_or_untouched") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut tpm = Tpm::start();
    let key = tpm.key_file(dir.path());
    let cert = tpm.cert(dir.path(), "tpm-file", key.to_str().unwrap(), "hash");
    let conf = dir.path().join("file.toml");
    write_conf(&conf, key.to_str().unwrap(), Some(&cert), "jobs = 2\n");
    const COUNT: usize = 3000;
    let files = files(dir.path(), COUNT);

    let run = common::cmd()
        .arg("--config")
        .arg(&conf)
        .args(["sign", "--progress", "none", "--files"])
        .arg(&files)
        .envs(tpm.env())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the TPM once the run has signed some files.
    let deadline = Instant::now() + Duration::from_secs(60);
    while signed_count(&files) < 20 {
        assert!(Instant::now() < deadline, "nothing got signed");
        std::thread::sleep(Duration::from_millis(5));
    }
    tpm.child.kill().unwrap();
    tpm.child.wait().unwrap();
    let out = run.wait_with_output().unwrap();
    let text = common::text(&out);

    let signed = signed_count(&files);
    assert!(
        signed < COUNT,
        "the TPM was killed too late: all signed\n{text}"
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("the device stopped signing"), "{text}");
    assert!(
        text.contains(&format!("{} failed", COUNT - signed)),
        "every unsigned file is reported: {signed} signed\n{text}"
    );
    // What was written is whole and valid; the rest has no security.ima.
    let verify = common::cmd()
        .args(["verify", "--cert"])
        .arg(&cert)
        .arg("--files")
        .arg(&files)
        .output()
        .unwrap();
    let vtext = common::text(&verify);
    assert!(
        vtext.contains(&format!("{signed} ok"))
            && !vtext.contains("bad")
            && !vtext.contains("invalid"),
        "{vtext}"
    );
}
