//! Shared test fixtures: RSA keys and certificates made by the `openssl`
//! command line, generated once and cached under `CARGO_TARGET_TMPDIR` (RSA
//! 4096 generation is slow), plus helpers to run the oracles.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};

pub const SIZES: [usize; 3] = [2048, 3072, 4096];

/// How the private key PEM is wrapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Form {
    /// `-----BEGIN RSA PRIVATE KEY-----` (`openssl genrsa -traditional`).
    Pkcs1,
    /// `-----BEGIN PRIVATE KEY-----` (`openssl genpkey`).
    Pkcs8,
}

pub const FORMS: [Form; 2] = [Form::Pkcs1, Form::Pkcs8];

/// A generated key with a self-signed certificate for it.
#[derive(Debug)]
pub struct TestKey {
    pub bits: usize,
    pub form: Form,
    pub key: PathBuf,
    pub cert_pem: PathBuf,
    pub cert_der: PathBuf,
}

/// Bump the suffix when the recipe below changes, so stale fixtures are not reused.
fn key_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ima-core-test-keys-v2");
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs a command, panicking with its output if it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Writes `path` through `make(tmp)` and a rename, so a concurrent or
/// interrupted run never sees half a file. Tests of one binary run on
/// several threads: a lock per path makes each fixture once, so a
/// certificate is always made from the key that stays (a per-process
/// temporary name alone let two threads rename the same file).
fn atomically(path: &Path, make: impl FnOnce(&Path)) {
    type Locks = std::sync::Mutex<std::collections::HashMap<PathBuf, Arc<std::sync::Mutex<()>>>>;
    static LOCKS: OnceLock<Locks> = OnceLock::new();
    let lock = {
        let mut locks = LOCKS.get_or_init(Default::default).lock().unwrap();
        Arc::clone(locks.entry(path.to_path_buf()).or_default())
    };
    let _one_at_a_time = lock.lock().unwrap_or_else(|e| e.into_inner());
    if path.exists() {
        return;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    make(&tmp);
    fs::rename(&tmp, path).unwrap();
}

fn generate(bits: usize, form: Form) -> TestKey {
    let dir = key_dir();
    let stem = format!("rsa{bits}-{form:?}").to_lowercase();
    let key = dir.join(format!("{stem}.pem"));
    atomically(&key, |tmp| {
        let mut cmd = Command::new("openssl");
        match form {
            Form::Pkcs1 => cmd
                .args(["genrsa", "-traditional", "-out"])
                .arg(tmp)
                .arg(bits.to_string()),
            Form::Pkcs8 => cmd
                .args(["genpkey", "-algorithm", "RSA", "-pkeyopt"])
                .arg(format!("rsa_keygen_bits:{bits}"))
                .arg("-out")
                .arg(tmp),
        };
        run(&mut cmd);
    });
    let (cert_pem, cert_der) = certify(&stem, &key);
    TestKey {
        bits,
        form,
        key,
        cert_pem,
        cert_der,
    }
}

/// How an EC private key PEM is wrapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EcForm {
    /// `-----BEGIN EC PRIVATE KEY-----` (`openssl ecparam -genkey`, which
    /// also writes an `EC PARAMETERS` block before it).
    Sec1,
    /// `-----BEGIN PRIVATE KEY-----` (`openssl genpkey -algorithm EC`).
    Pkcs8,
}

/// A generated EC key with a self-signed certificate for it.
#[derive(Debug)]
pub struct EcTestKey {
    pub curve: ima_core::EcCurve,
    pub form: EcForm,
    pub key: PathBuf,
    pub cert_pem: PathBuf,
    pub cert_der: PathBuf,
}

/// A self-signed end-entity certificate for `key`, PEM and DER.
fn certify(stem: &str, key: &Path) -> (PathBuf, PathBuf) {
    let dir = key_dir();
    let cert_pem = dir.join(format!("{stem}.crt.pem"));
    atomically(&cert_pem, |tmp| {
        run(Command::new("openssl")
            .args(["req", "-x509", "-new", "-days", "3650", "-subj"])
            .arg(format!("/CN=ima-core test {stem}"))
            // An end-entity signing certificate, as IMA keys should be.
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .args(["-addext", "keyUsage=critical,digitalSignature"])
            .arg("-key")
            .arg(key)
            .arg("-out")
            .arg(tmp));
    });
    let cert_der = dir.join(format!("{stem}.crt.der"));
    atomically(&cert_der, |tmp| {
        run(Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert_pem)
            .arg("-out")
            .arg(tmp));
    });
    (cert_pem, cert_der)
}

fn generate_ec(curve: ima_core::EcCurve, form: EcForm) -> EcTestKey {
    let stem = format!("ec-{}-{form:?}", curve.openssl_name()).to_lowercase();
    let key = key_dir().join(format!("{stem}.pem"));
    atomically(&key, |tmp| {
        let mut cmd = Command::new("openssl");
        match form {
            EcForm::Sec1 => cmd.args(["ecparam", "-genkey", "-name", curve.openssl_name(), "-out"]),
            EcForm::Pkcs8 => cmd
                .args(["genpkey", "-algorithm", "EC", "-pkeyopt"])
                .arg(format!("ec_paramgen_curve:{}", curve.name()))
                .arg("-out"),
        };
        run(cmd.arg(tmp));
    });
    let (cert_pem, cert_der) = certify(&stem, &key);
    EcTestKey {
        curve,
        form,
        key,
        cert_pem,
        cert_der,
    }
}

/// The EC key on `curve` in `form` (cheap to make: generated on first use).
pub fn ec_key(curve: ima_core::EcCurve, form: EcForm) -> EcTestKey {
    generate_ec(curve, form)
}

/// All six keys (3 sizes x 2 forms), generated in parallel on first use.
pub fn keys() -> &'static [TestKey] {
    static KEYS: OnceLock<Vec<TestKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        std::thread::scope(|s| {
            let handles: Vec<_> = SIZES
                .iter()
                .flat_map(|&b| FORMS.iter().map(move |&f| (b, f)))
                .map(|(b, f)| s.spawn(move || generate(b, f)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    })
}

pub fn key(bits: usize, form: Form) -> &'static TestKey {
    keys()
        .iter()
        .find(|k| k.bits == bits && k.form == form)
        .unwrap()
}

/// Writes `len` bytes of a deterministic, non-repeating pattern.
pub fn write_pattern(path: &Path, len: usize, seed: u8) {
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_be_bytes()[0] ^ seed)
        .collect();
    fs::write(path, data).unwrap();
}

/// The raw `security.ima` of `path`, read with getfattr (an outside reader).
pub fn getfattr(path: &Path) -> Option<Vec<u8>> {
    let out = Command::new("getfattr")
        .args(["--only-values", "-n", "security.ima"])
        .arg(path)
        .output()
        .unwrap();
    out.status.success().then_some(out.stdout)
}

/// The one rule for tests that need something of the machine: when
/// `available` is false, print why the test is skipped and return false, or
/// panic when `CI` is set (as tests/kernel and tests/packaging do): under CI
/// every test must really run, a skip is a failure.
pub fn require(available: bool, what: &str, test: &str) -> bool {
    if available {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: needs {what}, and CI is set: every test must run under CI");
    }
    eprintln!("skipping {test}: needs {what}");
    false
}

/// Whether we may write `security.*` xattrs (root, CAP_SYS_ADMIN); see [`require`].
pub fn can_write_security_xattrs(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    require(root, "root to write security.ima (CAP_SYS_ADMIN)", test)
}

/// Whether `tool` is on PATH; see [`require`].
pub fn have(tool: &str, test: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    require(found, &format!("{tool} installed"), test)
}
