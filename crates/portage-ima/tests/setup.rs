//! `portage-ima setup` on scratch roots shaped like real Gentoo machines
//! (issue 21): each is planned, applied twice (the second run changes
//! nothing), and its certificates are checked with openssl itself. The
//! running kernel's facts come through the hidden flags (`--kernel-config`,
//! `--efivars`, `--proc-keys`). Then each bad input: an error that changes
//! nothing.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{cmd, require_root, require_tool, text};

const GLOBAL_GUID: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
const SHIM_GUID: &str = "605dab50-e046-4300-abb6-3dd810dd8b23";

/// What a kernel built for IMA appraisal has: the shipped fragment's
/// options (boot/kernel/portage-ima.config) but ECDSA, which shapes add.
fn ima_config() -> String {
    let shipped = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../boot/kernel/portage-ima.config"
    );
    fs::read_to_string(shipped)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("CONFIG_") && !l.starts_with("CONFIG_CRYPTO_ECDSA="))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// A scratch Gentoo root and the kernel facts that go with it.
struct Shape {
    _dir: tempfile::TempDir,
    _tmpfs: Option<tempfile::TempDir>,
    root: PathBuf,
    kernel_config: PathBuf,
    efivars: PathBuf,
    proc_keys: PathBuf,
}

#[derive(Default)]
struct Spec {
    systemd: bool,
    dracut: bool,
    /// `Some(use_flags)` for sys-kernel/gentoo-kernel.
    gentoo_kernel: Option<&'static str>,
    gentoo_kernel_bin: bool,
    /// Extra kernel .config lines (on top of [`ima_config`]).
    config: &'static str,
    tmpfs: bool,
    make_conf_dir: bool,
    secure_boot: bool,
    mok: bool,
    /// make.conf lines.
    make_conf: &'static str,
    grub: bool,
    kernel_cmdline: bool,
}

fn package(root: &Path, cpv: &str, use_flags: &str, contents: &str) {
    let dir = root.join("var/db/pkg").join(cpv);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("USE"), use_flags).unwrap();
    fs::write(dir.join("CONTENTS"), contents).unwrap();
}

fn efivar(dir: &Path, name: &str, guid: &str, value: u8) {
    fs::write(dir.join(format!("{name}-{guid}")), [6, 0, 0, 0, value]).unwrap();
}

impl Shape {
    fn new(spec: Spec) -> Shape {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        for d in [
            "etc/portage",
            "var/tmp",
            "usr/bin",
            "sbin",
            "usr/share/portage/config",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(root.join("etc/hostname"), "shape\n").unwrap();
        fs::write(
            root.join("usr/share/portage/config/make.globals"),
            "FEATURES=\"sandbox userpriv usersandbox\"\n",
        )
        .unwrap();
        if spec.systemd {
            fs::create_dir_all(root.join("usr/lib/systemd")).unwrap();
            fs::write(root.join("usr/lib/systemd/systemd"), "").unwrap();
        } else {
            fs::write(root.join("sbin/openrc-run"), "").unwrap();
        }
        let hello = root.join("usr/bin/hello");
        fs::write(&hello, "#!/bin/sh\necho hello\n").unwrap();
        let md5 = common::md5_hex(&fs::read(&hello).unwrap());
        package(
            &root,
            "app-misc/hello-1",
            "",
            &format!("dir /usr\ndir /usr/bin\nobj /usr/bin/hello {md5} 1700000000\n"),
        );
        if spec.dracut {
            package(&root, "sys-kernel/dracut-105", "", "");
        }
        if let Some(use_flags) = spec.gentoo_kernel {
            package(&root, "sys-kernel/gentoo-kernel-6.12.5", use_flags, "");
        }
        if spec.gentoo_kernel_bin {
            package(&root, "sys-kernel/gentoo-kernel-bin-6.12.5", "", "");
        }
        let tmpfs = spec
            .tmpfs
            .then(|| tempfile::tempdir_in("/dev/shm").unwrap());
        let tmpdir = tmpfs
            .as_ref()
            .map_or_else(|| root.join("var/tmp"), |t| t.path().to_path_buf());
        let make_conf = format!(
            "PORTAGE_TMPDIR=\"{}\"\n{}",
            tmpdir.display(),
            spec.make_conf
        );
        if spec.make_conf_dir {
            fs::create_dir_all(root.join("etc/portage/make.conf")).unwrap();
            fs::write(root.join("etc/portage/make.conf/00-base"), make_conf).unwrap();
        } else {
            fs::write(root.join("etc/portage/make.conf"), make_conf).unwrap();
        }
        if spec.grub {
            fs::create_dir_all(root.join("etc/default")).unwrap();
            fs::write(
                root.join("etc/default/grub"),
                "GRUB_TIMEOUT=3\nGRUB_CMDLINE_LINUX=\"quiet ima_appraise=fix\"\n",
            )
            .unwrap();
        }
        if spec.kernel_cmdline {
            fs::create_dir_all(root.join("etc/kernel")).unwrap();
            fs::write(root.join("etc/kernel/cmdline"), "root=/dev/vda1 rw\n").unwrap();
        }
        let kernel_config = dir.path().join("config");
        fs::write(&kernel_config, format!("{}{}", ima_config(), spec.config)).unwrap();
        let efivars = dir.path().join("efivars");
        if spec.secure_boot || spec.mok {
            fs::create_dir_all(&efivars).unwrap();
            efivar(&efivars, "SecureBoot", GLOBAL_GUID, spec.secure_boot as u8);
            efivar(&efivars, "SetupMode", GLOBAL_GUID, 0);
            if spec.mok {
                efivar(&efivars, "MokListRT", SHIM_GUID, 0);
            }
        }
        let proc_keys = dir.path().join("keys");
        let ima = if spec.config.contains("CONFIG_INTEGRITY_TRUSTED_KEYRING=y") {
            ".ima"
        } else {
            "_ima"
        };
        fs::write(
            &proc_keys,
            format!(
                "0e6a6d3c I------     1 perm 1f0b0000     0     0 keyring   .builtin_trusted_keys: 1\n\
                 1b2c3d4e I------     1 perm 1f0f0000     0     0 keyring   {ima}: empty\n"
            ),
        )
        .unwrap();
        Shape {
            _dir: dir,
            _tmpfs: tmpfs,
            root,
            kernel_config,
            efivars,
            proc_keys,
        }
    }

    fn setup(&self, args: &[&str]) -> Output {
        cmd()
            .arg("setup")
            .arg("--root")
            .arg(&self.root)
            .arg("--kernel-config")
            .arg(&self.kernel_config)
            .arg("--efivars")
            .arg(&self.efivars)
            .arg("--proc-keys")
            .arg(&self.proc_keys)
            .args(["--progress", "none"])
            .args(args)
            // No portageq: Portage's settings come from the scratch make.conf.
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap()
    }

    fn plan(&self, args: &[&str]) -> serde_json::Value {
        let out = self.setup(&[&["--json"], args].concat());
        assert!(out.status.code().is_some_and(|c| c < 2), "{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `--apply` twice: the second run changes nothing (same files, same
    /// bytes, no backup). Returns the first run's output.
    fn apply_twice(&self, args: &[&str], status: i32) -> String {
        let first = self.setup(&[&["--apply"], args].concat());
        assert_eq!(first.status.code(), Some(status), "{}", text(&first));
        let after_first = snapshot(&self.root);
        let second = self.setup(&[&["--apply"], args].concat());
        assert_eq!(second.status.code(), Some(status), "{}", text(&second));
        assert!(
            text(&second).contains("nothing to change"),
            "{}",
            text(&second)
        );
        assert_eq!(
            after_first,
            snapshot(&self.root),
            "the second run changed files"
        );
        text(&first)
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    fn read(&self, p: &str) -> String {
        fs::read_to_string(self.path(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
    }
}

/// Every file, link and directory under `root` with its content.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut map = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            let meta = fs::symlink_metadata(&p).unwrap();
            let value = if meta.is_symlink() {
                format!("-> {}", fs::read_link(&p).unwrap().display())
            } else if meta.is_dir() {
                todo.push(p.clone());
                "dir".into()
            } else {
                format!(
                    "{:o} {}",
                    meta.permissions().mode(),
                    common::md5_hex(&fs::read(&p).unwrap())
                )
            };
            map.insert(p.strip_prefix(root).unwrap().to_path_buf(), value);
        }
    }
    map
}

fn x509_text(cert: &Path, der: bool) -> String {
    let mut c = Command::new("openssl");
    c.arg("x509").arg("-in").arg(cert).args(["-noout", "-text"]);
    if der {
        c.args(["-inform", "DER"]);
    }
    String::from_utf8(common::run_ok(&mut c).stdout).unwrap()
}

/// The IMA certificate's extensions are what the kernel wants on .ima.
fn assert_ima_cert(cert: &Path) -> String {
    let t = x509_text(cert, true);
    for want in [
        "Basic Constraints: critical",
        "CA:FALSE",
        "Key Usage: critical",
        "Digital Signature",
        "Subject Key Identifier",
        "Authority Key Identifier",
    ] {
        assert!(t.contains(want), "{want} missing:\n{t}");
    }
    assert!(!t.contains("Certificate Sign"), "{t}");
    t
}

/// `openssl verify` of the DER `cert` against the PEM `ca`.
fn verify_against(cert: &Path, ca: &Path) -> Output {
    let pem = cert.with_extension("pem");
    common::run_ok(
        Command::new("openssl")
            .args(["x509", "-inform", "DER", "-in"])
            .arg(cert)
            .arg("-out")
            .arg(&pem),
    );
    Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(ca)
        .arg(&pem)
        .output()
        .unwrap()
}

/// A module signing key as the kernel build wants it: a P-256 key and its
/// self-signed certificate in one PEM (`key`), the certificate also in `cert`.
fn module_key(key: &Path, cert: &Path, args: &[&str]) {
    common::run_ok(
        Command::new("openssl")
            .args(["req", "-new", "-nodes", "-x509", "-sha256", "-days", "3650"])
            .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
            .args(args)
            .arg("-keyout")
            .arg(key)
            .arg("-out")
            .arg(cert),
    );
    let mut both = fs::read(key).unwrap();
    both.extend(fs::read(cert).unwrap());
    fs::write(key, both).unwrap();
}

fn ready(test: &str) -> bool {
    require_root(test) && require_tool("openssl", test)
}

/// Shape 1: OpenRC, no initramfs, a hand-built kernel without a trusted keyring
/// (keyring path 1), builds on the root filesystem, make.conf a file,
/// Secure Boot off, GRUB.
#[test]
fn openrc_hand_built_kernel_user_keyring() {
    if !ready("openrc_hand_built_kernel_user_keyring") {
        return;
    }
    let s = Shape::new(Spec {
        config: "CONFIG_CRYPTO_ECDSA=y\n",
        grub: true,
        ..Spec::default()
    });
    let plan = s.plan(&[]);
    assert_eq!(plan["keyring"]["number"], 1);
    assert_eq!(plan["algorithm"], "p256");
    assert_eq!(plan["facts"]["init"], "openrc");
    let kinds: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert!(
        !kinds.contains(&"make-conf"),
        "the merge renames: {kinds:?}"
    );
    assert!(!kinds.contains(&"kernel"), "nothing lacks: {kinds:?}");
    let grub_before = s.read("/etc/default/grub");
    let out = s.apply_twice(&[], 0);
    assert!(
        out.contains("GRUB_CMDLINE_LINUX=\"quiet ima_appraise=log\""),
        "{out}"
    );
    assert!(
        out.contains("GRUB_CMDLINE_LINUX=\"quiet ima_appraise=enforce\""),
        "{out}"
    );
    assert_eq!(
        s.read("/etc/default/grub"),
        grub_before,
        "the boot loader is never edited"
    );
    assert_eq!(
        fs::read_link(s.path("/etc/runlevels/boot/portage-ima")).unwrap(),
        Path::new("/etc/init.d/portage-ima")
    );
    let t = assert_ima_cert(&s.path("/etc/keys/x509_ima.der"));
    assert!(
        t.contains("ecdsa-with-SHA256") && t.contains("prime256v1"),
        "{t}"
    );
    let key_mode = fs::metadata(s.path("/etc/keys/IMA_signing_key.priv"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o400);
    assert!(s
        .read("/etc/portage/bashrc")
        .contains("[[ -r /usr/share/portage-ima/portage-ima.bashrc ]] && source"));
    assert!(s
        .read("/etc/portage/ima.toml")
        .contains("key = \"/etc/keys/IMA_signing_key.priv\""));
    assert!(s
        .read("/etc/ima/ima-policy")
        .contains("appraise func=BPRM_CHECK"));
    assert!(
        common::is_signed(&s.path("/usr/bin/hello")),
        "sign --all ran"
    );
}

/// Shape 2: systemd, dracut, gentoo-kernel with USE=modules-sign and the key the
/// kernel build generated (keyring path 2), builds on a tmpfs (the
/// make.conf block), Secure Boot off.
#[test]
fn systemd_dracut_gentoo_kernel_modules_sign() {
    if !ready("systemd_dracut_gentoo_kernel_modules_sign") {
        return;
    }
    let s = Shape::new(Spec {
        systemd: true,
        dracut: true,
        gentoo_kernel: Some("initramfs modules-sign strip"),
        config: "CONFIG_CRYPTO_ECDSA=y\nCONFIG_INTEGRITY_TRUSTED_KEYRING=y\nCONFIG_SYSTEM_TRUSTED_KEYRING=y\n",
        tmpfs: true,
        kernel_cmdline: true,
        ..Spec::default()
    });
    // What the kernel build leaves: key and certificate in one PEM, made
    // from certs/default_x509.genkey's extensions.
    let certs = s.path("/usr/src/linux/certs");
    fs::create_dir_all(&certs).unwrap();
    let genkey = certs.join("x509.genkey");
    fs::write(
        &genkey,
        "[req]\ndistinguished_name = dn\nprompt = no\nx509_extensions = myexts\n\
         [dn]\nCN = Build time autogenerated kernel key\n\
         [myexts]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=digitalSignature\n\
         subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    )
    .unwrap();
    let pem = certs.join("signing_key.pem");
    let config = genkey.display().to_string();
    module_key(
        &pem,
        &certs.join("cert.pem"),
        &["-config", &config, "-utf8", "-batch"],
    );

    let plan = s.plan(&[]);
    assert_eq!(plan["keyring"]["number"], 2, "{plan}");
    let out = s.apply_twice(&[], 0);
    let block = s.read("/etc/portage/make.conf");
    assert!(block.contains("# BEGIN portage-ima setup\n"), "{block}");
    assert!(block.contains("FEATURES=\"${FEATURES} xattr\""), "{block}");
    let exclude = block
        .lines()
        .find(|l| l.starts_with("PORTAGE_XATTR_EXCLUDE="))
        .unwrap();
    assert!(
        !exclude.contains("security.ima") && exclude.contains("security.evm"),
        "{exclude}"
    );
    // dracut loads the certificate before systemd loads /etc/ima/ima-policy:
    // no unit.
    assert!(s
        .read("/etc/ima/ima-policy")
        .contains("appraise func=BPRM_CHECK"));
    assert!(!s.path("/etc/systemd/system/sysinit.target.wants").exists());
    assert_eq!(
        fs::read(s.path("/etc/keys/ima/x509_ima.der")).unwrap(),
        fs::read(s.path("/etc/keys/x509_ima.der")).unwrap()
    );
    let shipped = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../boot/dracut/portage-ima.conf"
    );
    assert_eq!(
        s.read("/etc/dracut.conf.d/portage-ima.conf"),
        fs::read_to_string(shipped).unwrap()
    );
    assert!(out.contains("dracut --force"), "{out}");
    assert!(
        out.contains("in /etc/kernel/cmdline: root=/dev/vda1 rw ima_appraise=log"),
        "{out}"
    );
    // Signed by the module key: issuer and AKID name it, and it verifies.
    let t = assert_ima_cert(&s.path("/etc/keys/x509_ima.der"));
    assert!(
        t.contains("Issuer: CN = Build time autogenerated kernel key"),
        "{t}"
    );
    let module = x509_text(&certs.join("cert.pem"), false);
    let skid = module
        .lines()
        .skip_while(|l| !l.contains("Subject Key Identifier"))
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    assert!(t.contains(&skid), "AKID {skid} missing:\n{t}");
}

/// Shape 3: OpenRC, genkernel (named, not configured), gentoo-kernel without
/// modules-sign (keyring path 3 through /etc/kernel/config.d), builds on a
/// tmpfs with make.conf a directory, Secure Boot on.
#[test]
fn gentoo_kernel_local_ca_secure_boot_make_conf_dir() {
    if !ready("gentoo_kernel_local_ca_secure_boot_make_conf_dir") {
        return;
    }
    let s = Shape::new(Spec {
        gentoo_kernel: Some("initramfs strip"),
        config: "CONFIG_CRYPTO_ECDSA=y\nCONFIG_INTEGRITY_TRUSTED_KEYRING=y\n",
        tmpfs: true,
        make_conf_dir: true,
        secure_boot: true,
        ..Spec::default()
    });
    package(&s.root, "sys-kernel/genkernel-4.3.10", "", "");
    let plan = s.plan(&[]);
    assert_eq!(plan["keyring"]["number"], 3, "{plan}");
    assert_eq!(plan["facts"]["secure_boot_enabled"], true);
    let out = s.apply_twice(&[], 0);
    assert!(
        out.contains("genkernel: setup does not configure it"),
        "{out}"
    );
    let own = s.read("/etc/portage/make.conf/zz-portage-ima.conf");
    assert!(own.contains("FEATURES=\"${FEATURES} xattr\""), "{own}");
    let fragment = s.read("/etc/kernel/config.d/portage-ima.config");
    assert!(
        fragment.contains("CONFIG_SYSTEM_TRUSTED_KEYS=\"/etc/keys/IMA_ca.pem\""),
        "{fragment}"
    );
    assert!(
        fragment.contains("CONFIG_SYSTEM_TRUSTED_KEYRING=y"),
        "{fragment}"
    );
    assert!(
        out.contains("emerge --oneshot sys-kernel/gentoo-kernel"),
        "{out}"
    );
    // Secure Boot: an observe policy first, the enforcing one beside it,
    // and no ima_appraise= (ignored).
    assert!(s
        .read("/etc/ima/ima-policy")
        .contains("audit func=BPRM_CHECK"));
    assert!(s
        .read("/etc/ima/ima-policy.enforce")
        .contains("appraise func=BPRM_CHECK"));
    assert!(!out.contains("ima_appraise=log"), "{out}");
    assert!(
        out.contains("cp /etc/ima/ima-policy.enforce /etc/ima/ima-policy"),
        "{out}"
    );
    // The CA: CA:TRUE, keyCertSign only; the IMA certificate verifies against it.
    let ca = x509_text(&s.path("/etc/keys/IMA_ca.pem"), false);
    assert!(
        ca.contains("CA:TRUE") && ca.contains("Certificate Sign"),
        "{ca}"
    );
    assert!(!ca.contains("Digital Signature"), "{ca}");
    assert_eq!(
        fs::metadata(s.path("/etc/keys/IMA_ca.priv"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o400
    );
    assert_ima_cert(&s.path("/etc/keys/x509_ima.der"));
    let v = verify_against(
        &s.path("/etc/keys/x509_ima.der"),
        &s.path("/etc/keys/IMA_ca.pem"),
    );
    assert!(v.status.success(), "{}", text(&v));
    // After the observe boot the admin puts the enforcing policy in place:
    // setup run again keeps it.
    fs::copy(
        s.path("/etc/ima/ima-policy.enforce"),
        s.path("/etc/ima/ima-policy"),
    )
    .unwrap();
    let again = s.setup(&["--apply"]);
    assert!(
        text(&again).contains("nothing to change"),
        "{}",
        text(&again)
    );
}

/// Shape 4: systemd, a hand-built kernel with a machine keyring and shim's MOK
/// list (keyring path 4), Secure Boot on.
#[test]
fn machine_keyring_mok() {
    if !ready("machine_keyring_mok") {
        return;
    }
    let s = Shape::new(Spec {
        systemd: true,
        config: "CONFIG_CRYPTO_ECDSA=y\nCONFIG_INTEGRITY_TRUSTED_KEYRING=y\n\
                 CONFIG_INTEGRITY_MACHINE_KEYRING=y\n\
                 CONFIG_IMA_KEYRINGS_PERMIT_SIGNED_BY_BUILTIN_OR_SECONDARY=y\n",
        secure_boot: true,
        mok: true,
        ..Spec::default()
    });
    assert_eq!(s.plan(&[])["keyring"]["number"], 4);
    // Without the permit option .ima searches only the builtin keyring
    // (restrict_link_by_digsig_builtin): a MOK CA would vouch for nothing,
    // so the CA goes into the kernel (path 3).
    let builtin_only = Shape::new(Spec {
        systemd: true,
        config: "CONFIG_CRYPTO_ECDSA=y\nCONFIG_INTEGRITY_TRUSTED_KEYRING=y\n\
                 CONFIG_INTEGRITY_MACHINE_KEYRING=y\n",
        secure_boot: true,
        mok: true,
        ..Spec::default()
    });
    assert_eq!(builtin_only.plan(&[])["keyring"]["number"], 3);
    // A policy left at /etc/ima/ima-policy: systemd would load it before
    // the unit's certificate.
    fs::create_dir_all(s.path("/etc/ima")).unwrap();
    fs::write(s.path("/etc/ima/ima-policy"), "appraise func=BPRM_CHECK\n").unwrap();
    let out = s.apply_twice(&[], 0);
    assert!(out.contains("remove /etc/ima/ima-policy"), "{out}");
    assert_eq!(
        fs::read_link(s.path("/etc/systemd/system/sysinit.target.wants/portage-ima.service"))
            .unwrap(),
        Path::new("/usr/lib/systemd/system/portage-ima.service")
    );
    assert!(s
        .read("/etc/ima/portage-ima.policy")
        .contains("audit func=BPRM_CHECK"));
    assert!(s
        .read("/etc/ima/portage-ima.policy.enforce")
        .contains("appraise func=BPRM_CHECK"));
    assert!(
        out.contains("cp /etc/ima/portage-ima.policy.enforce /etc/ima/portage-ima.policy"),
        "{out}"
    );
    assert!(
        out.contains("mokutil --import /etc/keys/IMA_ca.der"),
        "{out}"
    );
    let v = verify_against(
        &s.path("/etc/keys/x509_ima.der"),
        &s.path("/etc/keys/IMA_ca.pem"),
    );
    assert!(v.status.success(), "{}", text(&v));
    let der = x509_text(&s.path("/etc/keys/IMA_ca.der"), true);
    assert!(der.contains("CA:TRUE"), "{der}");
}

/// Shape 5: OpenRC, dracut, a hand-built kernel with a trusted keyring and no
/// MOK (keyring path 3, the options listed), builds on the root
/// filesystem with make.conf a directory (nothing to add there).
#[test]
fn hand_built_kernel_local_ca_listed() {
    if !ready("hand_built_kernel_local_ca_listed") {
        return;
    }
    let s = Shape::new(Spec {
        dracut: true,
        config: "CONFIG_CRYPTO_ECDSA=y\nCONFIG_INTEGRITY_TRUSTED_KEYRING=y\n",
        make_conf_dir: true,
        ..Spec::default()
    });
    assert_eq!(s.plan(&[])["keyring"]["number"], 3);
    let out = s.apply_twice(&[], 0);
    assert!(
        out.contains("set in your kernel's .config: CONFIG_SYSTEM_TRUSTED_KEYRING=y CONFIG_SYSTEM_TRUSTED_KEYS=\"/etc/keys/IMA_ca.pem\""),
        "{out}"
    );
    assert!(!s.path("/etc/kernel/config.d").exists());
    assert!(!s
        .path("/etc/portage/make.conf/zz-portage-ima.conf")
        .exists());
    assert!(s.path("/etc/keys/ima/x509_ima.der").exists());
}

/// Shape 6: gentoo-kernel-bin with a trusted keyring and no MOK: no path fits;
/// the rest is still done, and the status says something was left.
#[test]
fn binary_kernel_with_trusted_keyring_is_blocked() {
    if !ready("binary_kernel_with_trusted_keyring_is_blocked") {
        return;
    }
    let s = Shape::new(Spec {
        gentoo_kernel_bin: true,
        config: "CONFIG_CRYPTO_ECDSA=y\nCONFIG_INTEGRITY_TRUSTED_KEYRING=y\n",
        ..Spec::default()
    });
    assert_eq!(s.plan(&[])["keyring"]["number"], 0);
    let out = s.apply_twice(&[], 1);
    assert!(out.contains("switch to sys-kernel/gentoo-kernel"), "{out}");
    assert!(s.path("/etc/portage/ima.toml").exists());
}

/// Shape 7: No CONFIG_CRYPTO_ECDSA: RSA-4096; the kernel lacks appraisal, which
/// a hand-built kernel gets as a list; installkernel's /etc/kernel/cmdline.
#[test]
fn rsa_without_ecdsa_and_missing_options() {
    if !ready("rsa_without_ecdsa_and_missing_options") {
        return;
    }
    let s = Shape::new(Spec {
        kernel_cmdline: true,
        ..Spec::default()
    });
    fs::write(&s.kernel_config, "CONFIG_INTEGRITY=y\nCONFIG_IMA=y\n").unwrap();
    let plan = s.plan(&[]);
    assert_eq!(plan["algorithm"], "rsa");
    let out = s.apply_twice(&[], 0);
    assert!(out.contains("CONFIG_IMA_APPRAISE=y"), "{out}");
    assert!(s.read("/etc/kernel/cmdline") == "root=/dev/vda1 rw\n");
    let t = assert_ima_cert(&s.path("/etc/keys/x509_ima.der"));
    assert!(t.contains("Public-Key: (4096 bit)"), "{t}");
}

/// Shape 8: gentoo-kernel with USE=modules-sign and MODULES_SIGN_KEY in
/// make.conf (keyring path 2), an ima.toml with other settings already,
/// and --algorithm p256 on a kernel with ECDSA only as a module: the
/// fragment builds it in.
#[test]
fn modules_sign_key_from_make_conf_and_existing_settings() {
    if !ready("modules_sign_key_from_make_conf_and_existing_settings") {
        return;
    }
    let s = Shape::new(Spec {
        gentoo_kernel: Some("modules-sign"),
        config: "CONFIG_CRYPTO_ECDSA=m\nCONFIG_INTEGRITY_TRUSTED_KEYRING=y\n",
        make_conf: "MODULES_SIGN_KEY=\"/etc/kernel/module-key.pem\"\n",
        ..Spec::default()
    });
    fs::create_dir_all(s.path("/etc/kernel")).unwrap();
    let key = s.path("/etc/kernel/module-key.pem");
    let cert = s.path("/etc/kernel/module-cert.pem");
    module_key(&key, &cert, &["-subj", "/CN=module key"]);
    fs::write(s.path("/etc/portage/ima.toml"), "strict = true\n").unwrap();
    let plan = s.plan(&["--algorithm", "p256"]);
    assert_eq!(plan["keyring"]["number"], 2);
    assert_eq!(plan["algorithm"], "p256");
    s.apply_twice(&["--algorithm", "p256"], 0);
    let toml = s.read("/etc/portage/ima.toml");
    assert!(
        toml.contains("cert = \"/etc/keys/x509_ima.der\"") && toml.ends_with("strict = true\n"),
        "{toml}"
    );
    let fragment = s.read("/etc/kernel/config.d/portage-ima.config");
    assert!(fragment.contains("CONFIG_CRYPTO_ECDSA=y"), "{fragment}");
    let v = verify_against(
        &s.path("/etc/keys/x509_ima.der"),
        &s.path("/etc/kernel/module-cert.pem"),
    );
    assert!(v.status.success(), "{}", text(&v));
}

/// Runs setup on a shape spoiled by `spoil`, expecting exit 2 with
/// `message`, and no file changed.
fn refused(test: &str, spoil: impl FnOnce(&Shape), args: &[&str], message: &str) {
    if !ready(test) {
        return;
    }
    let s = Shape::new(Spec {
        config: "CONFIG_CRYPTO_ECDSA=y\n",
        ..Spec::default()
    });
    spoil(&s);
    let before = snapshot(&s.root);
    let out = s.setup(&[&["--apply"], args].concat());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains(message), "{}", text(&out));
    assert_eq!(before, snapshot(&s.root), "an error changed files");
}

#[test]
fn unknown_init_changes_nothing() {
    refused(
        "unknown_init_changes_nothing",
        |s| fs::remove_file(s.path("/sbin/openrc-run")).unwrap(),
        &[],
        "neither OpenRC",
    );
}

#[test]
fn unreadable_kernel_config_changes_nothing() {
    refused(
        "unreadable_kernel_config_changes_nothing",
        |s| fs::remove_file(&s.kernel_config).unwrap(),
        &[],
        "cannot read the kernel configuration",
    );
}

#[test]
fn key_without_certificate_changes_nothing() {
    refused(
        "key_without_certificate_changes_nothing",
        |s| {
            fs::create_dir_all(s.path("/etc/keys")).unwrap();
            fs::write(s.path("/etc/keys/IMA_signing_key.priv"), "key").unwrap();
        },
        &[],
        "has no certificate",
    );
}

#[test]
fn hardware_key_without_certificate_changes_nothing() {
    refused(
        "hardware_key_without_certificate_changes_nothing",
        |_| {},
        &["--hardware", "pkcs11:token=ima;object=signing"],
        "has no certificate",
    );
}

#[test]
fn not_a_gentoo_root_changes_nothing() {
    refused(
        "not_a_gentoo_root_changes_nothing",
        |s| fs::remove_dir_all(s.path("/var/db/pkg")).unwrap(),
        &[],
        "not a Gentoo root",
    );
}

/// Without --apply nothing is written, and the plan names every step.
#[test]
fn plan_alone_changes_nothing() {
    if !ready("plan_alone_changes_nothing") {
        return;
    }
    let s = Shape::new(Spec {
        config: "CONFIG_CRYPTO_ECDSA=y\n",
        ..Spec::default()
    });
    let before = snapshot(&s.root);
    let out = s.setup(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = text(&out);
    for want in [
        "1. Make a NIST P-256 signing key",
        "openssl genpkey -algorithm EC",
        "write /etc/portage/ima.toml:",
        "write /etc/ima/ima-policy:",
        "link /etc/runlevels/boot/portage-ima -> /etc/init.d/portage-ima",
        "run: portage-ima sign --all",
        "Boot 1: Log mode",
    ] {
        assert!(t.contains(want), "{want} missing:\n{t}");
    }
    assert_eq!(before, snapshot(&s.root));
}
