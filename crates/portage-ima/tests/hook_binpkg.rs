//! The hook's binary-package side without Portage (tests/e2e/test_binpkg.py
//! runs it under real emerge): the package phase lists the signatures in
//! build-info, a keyless client (mode = "verify") applies them, never
//! opening a private key (traced with strace when it is there), and reports
//! a file changed after signing or a damaged list; `sign-missing` signs only
//! what Portage vouched for; a file of `${D}` hard-linked from outside is
//! never signed. Needs root (security.ima).

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Output;

struct Host {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    tmpdir: PathBuf,
    cert: PathBuf,
}

const FILES: [(&str, &str); 3] = [
    ("usr/bin/foo", "#!/bin/sh\necho foo\n"),
    ("usr/share/foo/a file.txt", "data\n"),
    ("etc/foo.conf", "setting = 1\n"),
];

impl Host {
    fn new() -> Host {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let tmpdir = dir.join("tmpdir");
        let key = common::new_key(&dir);
        let cert = common::new_cert(&dir, &key);
        std::fs::write(
            dir.join("build.toml"),
            format!(
                "key = \"{}\"\ncert = \"{}\"\n",
                key.display(),
                cert.display()
            ),
        )
        .unwrap();
        Host {
            _tmp: tmp,
            dir,
            tmpdir,
            cert,
        }
    }

    /// `${PORTAGE_TMPDIR}/portage/app-misc/foo-1` for `side`, with a fresh image.
    fn builddir(&self, side: &str) -> PathBuf {
        let build = self.tmpdir.join(side).join("app-misc/foo-1");
        let image = build.join("image");
        for (path, text) in FILES {
            let file = image.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, text).unwrap();
        }
        std::fs::create_dir_all(build.join("build-info")).unwrap();
        std::fs::create_dir_all(build.join("temp")).unwrap();
        build
    }

    fn hook(&self, conf: &str, phase: &str, build: &Path) -> Output {
        self.hook_with(conf, phase, build, &[])
    }

    /// [`Host::hook`] with more of Portage's variables.
    fn hook_with(
        &self,
        conf: &str,
        phase: &str,
        build: &Path,
        extra: &[(&'static str, &str)],
    ) -> Output {
        let mut vars = self.vars(phase, build);
        vars.extend(extra.iter().map(|(k, v)| (*k, PathBuf::from(v))));
        let vars: Vec<(&str, &OsStr)> = vars.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
        common::hook(&self.dir.join(conf), &vars)
    }

    fn vars(&self, phase: &str, build: &Path) -> Vec<(&'static str, PathBuf)> {
        vec![
            ("EBUILD_PHASE", phase.into()),
            ("CATEGORY", "app-misc".into()),
            ("PF", "foo-1".into()),
            ("ROOT", "/".into()),
            ("D", build.join("image")),
            ("T", build.join("temp")),
            ("PORTAGE_BUILDDIR", build.to_path_buf()),
            ("PORTAGE_TMPDIR", self.tmpdir.clone()),
        ]
    }

    /// A client's settings: the build host's certificate only, no key.
    fn client_toml(&self, extra: &str) {
        std::fs::write(
            self.dir.join("client.toml"),
            format!(
                "mode = \"verify\"\ntrusted_certs = [\"{}\"]\n{extra}",
                self.cert.display()
            ),
        )
        .unwrap();
    }

    /// The client's build directory: a fresh image (no xattrs) and `list`
    /// as the binary package's IMA_SIGNATURES in build-info.
    fn client_with(&self, list: &[u8]) -> PathBuf {
        let client = self.builddir("client");
        std::fs::write(client.join("build-info/IMA_SIGNATURES"), list).unwrap();
        client
    }

    /// Builds, signs in the package phase; returns the build's IMA_SIGNATURES.
    fn package(&self) -> Vec<u8> {
        let build = self.builddir("build");
        let out = self.hook("build.toml", "package", &build);
        assert!(out.status.success(), "{}", common::text(&out));
        assert!(
            common::text(&out).contains(
                "binary package: 2 files signed (2 newly), listed in build-info/IMA_SIGNATURES, \
                 1 config files as config_files = \"executable\" says"
            ),
            "{}",
            common::text(&out)
        );
        std::fs::read(build.join("build-info/IMA_SIGNATURES")).unwrap()
    }
}

fn xattr(path: &Path) -> Option<Vec<u8>> {
    let f = std::fs::File::open(path).unwrap();
    ima_core::read_ima_xattr(&f).unwrap()
}

#[test]
fn package_phase_lists_the_signatures_and_a_keyless_client_applies_them() {
    if !common::require_root("package_phase_lists_the_signatures_and_a_keyless_client_applies_them")
    {
        return;
    }
    let host = Host::new();
    let list = host.package();
    let text = String::from_utf8(list.clone()).unwrap();
    let build = host.tmpdir.join("build/app-misc/foo-1/image");
    for (path, _) in FILES {
        let Some(value) = xattr(&build.join(path)) else {
            // config_files = "executable" (the default) leaves it alone.
            assert_eq!(path, "etc/foo.conf");
            assert!(!text.contains(path), "{text}");
            continue;
        };
        assert!(
            text.contains(&format!("{} /{path}\n", hex::encode(&value))),
            "{path} in:\n{text}"
        );
    }

    // The client: the same image without xattrs, the list in build-info.
    host.client_toml("");
    let client = host.client_with(&list);
    let mut cmd = std::process::Command::new("strace");
    let trace = host.dir.join("strace.log");
    let traced = common::on_path("strace");
    let out = if traced {
        cmd.args(["-f", "-qq", "-e", "trace=open,openat,openat2", "-o"])
            .arg(&trace)
            .arg(common::bin())
            .arg("--config")
            .arg(host.dir.join("client.toml"))
            .arg("hook")
            .env_clear()
            .env("PATH", "/usr/bin:/bin");
        for (k, v) in host.vars("preinst", &client) {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    } else {
        host.hook("client.toml", "preinst", &client)
    };
    let said = common::text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("before the merge: 0 carried signatures kept, 2 applied from IMA_SIGNATURES")
            && said.contains("0 without a trusted signature, 1 config files left alone"),
        "{said}"
    );
    for (path, _) in FILES {
        assert_eq!(
            xattr(&client.join("image").join(path)),
            xattr(&build.join(path)),
            "{path}"
        );
    }
    if traced {
        let opened = std::fs::read_to_string(&trace).unwrap();
        for line in opened.lines() {
            assert!(
                !line.contains(".priv")
                    && !line.contains("key.pem")
                    && !line.contains("/etc/keys/"),
                "the keyless client opened a key: {line}"
            );
        }
        assert!(
            opened.contains("IMA_SIGNATURES"),
            "the trace sees opens:\n{opened}"
        );
    }
}

#[test]
fn client_reports_a_file_changed_after_signing_and_strict_refuses() {
    if !common::require_root("client_reports_a_file_changed_after_signing_and_strict_refuses") {
        return;
    }
    let host = Host::new();
    let list = host.package();
    let client = host.client_with(&list);
    std::fs::write(client.join("image/usr/bin/foo"), "#!/bin/sh\nrm -rf /\n").unwrap();

    host.client_toml("");
    let out = host.hook("client.toml", "preinst", &client);
    let said = common::text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("1 applied from IMA_SIGNATURES"), "{said}");
    assert!(said.contains("1 without a trusted signature"), "{said}");
    let line = said
        .lines()
        .find(|l| l.contains("usr/bin/foo"))
        .unwrap_or_else(|| panic!("{said}"));
    assert!(line.contains("changed after signing"), "{line}");
    assert_eq!(xattr(&client.join("image/usr/bin/foo")), None);

    host.client_toml("strict = true\n");
    let out = host.hook("client.toml", "preinst", &client);
    assert_eq!(out.status.code(), Some(3), "{}", common::text(&out));
}

#[test]
fn client_reports_a_damaged_list_and_a_missing_certificate() {
    if !common::require_root("client_reports_a_damaged_list_and_a_missing_certificate") {
        return;
    }
    let host = Host::new();
    host.client_toml("");
    let client = host.client_with(b"zz /usr/bin/foo\n");
    let out = host.hook("client.toml", "preinst", &client);
    let said = common::text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("IMA_SIGNATURES line 1: the value is not hex"),
        "{said}"
    );
    // The two files, and the list itself (issue 22: a broken list fails closed).
    assert!(said.contains("3 without a trusted signature"), "{said}");

    std::fs::write(
        host.dir.join("client.toml"),
        "mode = \"verify\"\ntrusted_certs = [\"/nonexistent/binhost.der\"]\n",
    )
    .unwrap();
    let out = host.hook("client.toml", "preinst", &client);
    let said = common::text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("trusted certificate /nonexistent/binhost.der"),
        "{said}"
    );
}

/// config_files = "hash" on a keyless client: the config file gets a digest
/// (no key needed for that), the others the build host's signatures.
#[test]
fn keyless_client_hashes_config_files_when_asked() {
    if !common::require_root("keyless_client_hashes_config_files_when_asked") {
        return;
    }
    let host = Host::new();
    let list = host.package();
    host.client_toml("config_files = \"hash\"\n");
    let client = host.client_with(&list);
    let out = host.hook("client.toml", "preinst", &client);
    let said = common::text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("2 applied from IMA_SIGNATURES"), "{said}");
    assert!(said.contains("1 config files hashed"), "{said}");
    let value = xattr(&client.join("image/etc/foo.conf")).expect("a digest");
    assert_eq!(value[0], 0x04, "digest-only (ima-ng), not a signature");
}

/// A sign-missing client's settings: the build host's certificate, and a
/// key of its own (made once, in `client-key/`).
fn sign_missing_toml(host: &Host, extra: &str) {
    let dir = host.dir.join("client-key");
    if !dir.exists() {
        std::fs::create_dir(&dir).unwrap();
        let key = common::new_key(&dir);
        common::new_cert(&dir, &key);
    }
    std::fs::write(
        host.dir.join("client.toml"),
        format!(
            "mode = \"sign-missing\"\ntrusted_certs = [\"{}\"]\nkey = \"{}\"\ncert = \"{}\"\n{extra}",
            host.cert.display(),
            dir.join("key.pem").display(),
            dir.join("cert.der").display()
        ),
    )
    .unwrap();
}

/// What Portage sets for a gpkg whose GPG signature it verified.
const VOUCHED: [(&str, &str); 3] = [
    ("EMERGE_FROM", "binary"),
    ("FEATURES", "sandbox binpkg-request-signature"),
    (
        "PORTAGE_BINPKG_FILE",
        "/var/cache/binpkgs/app-misc/foo/foo-1-1.gpkg.tar",
    ),
];

/// Issue 22, row 4 (a): a line dropped from the list does not make the
/// client's key sign the file, unless Portage verified the package.
#[test]
fn sign_missing_signs_what_the_list_lacks_only_for_a_vouched_package() {
    if !common::require_root("sign_missing_signs_what_the_list_lacks_only_for_a_vouched_package") {
        return;
    }
    let host = Host::new();
    let list = String::from_utf8(host.package()).unwrap();
    let dropped: String = list
        .lines()
        .filter(|l| !l.ends_with("/a file.txt"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(dropped, list);
    let client = host.client_with(dropped.as_bytes());
    let victim = client.join("image/usr/share/foo/a file.txt");
    std::fs::write(&victim, "changed on the binary host\n").unwrap();

    sign_missing_toml(&host, "");
    let unsigned = [
        ("EMERGE_FROM", "binary"),
        ("PORTAGE_BINPKG_FILE", "/p/foo-1-1.gpkg.tar"),
    ];
    let out = host.hook_with("client.toml", "preinst", &client, &unsigned);
    let said = common::text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("nothing vouches for the package (FEATURES has no binpkg-request-signature"),
        "{said}"
    );
    assert_eq!(xattr(&victim), None);

    sign_missing_toml(&host, "strict = true\n");
    let out = host.hook_with("client.toml", "preinst", &client, &unsigned);
    assert_eq!(out.status.code(), Some(3), "{}", common::text(&out));

    sign_missing_toml(&host, "strict = true\n");
    let out = host.hook_with("client.toml", "preinst", &client, &VOUCHED);
    let said = common::text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("1 signed with our key"), "{said}");
    assert!(xattr(&victim).is_some());
}

/// Issue 22, row 4 (b): one malformed line: none of the list is used and
/// nothing is signed with the client's key, even for a verified package.
#[test]
fn a_malformed_list_fails_closed_in_sign_missing_mode() {
    if !common::require_root("a_malformed_list_fails_closed_in_sign_missing_mode") {
        return;
    }
    let host = Host::new();
    let mut list = host.package();
    list.extend_from_slice(b"zz /usr/share/nothing\n");
    let client = host.client_with(&list);
    sign_missing_toml(&host, "");
    let out = host.hook_with("client.toml", "preinst", &client, &VOUCHED);
    let said = common::text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("none of its signatures is used, and nothing is signed with our key"),
        "{said}"
    );
    for (path, _) in FILES {
        assert_eq!(xattr(&client.join("image").join(path)), None, "{path}");
    }
    sign_missing_toml(&host, "strict = true\n");
    let out = host.hook_with("client.toml", "preinst", &client, &VOUCHED);
    assert_eq!(out.status.code(), Some(3), "{}", common::text(&out));
}

/// Issue 22, row 7: a file of `${D}` hard-linked from outside the image is
/// not signed in preinst (exit 1, strict: 3); links inside the image are.
#[test]
fn preinst_refuses_a_file_linked_from_outside_the_image() {
    if !common::require_root("preinst_refuses_a_file_linked_from_outside_the_image") {
        return;
    }
    let host = Host::new();
    let build = host.builddir("build");
    let image = build.join("image");
    let outside = host.dir.join("outside.txt");
    std::fs::write(&outside, "someone else's\n").unwrap();
    std::fs::hard_link(&outside, image.join("usr/share/foo/linked.txt")).unwrap();
    std::fs::hard_link(image.join("usr/bin/foo"), image.join("usr/bin/foo-twin")).unwrap();
    let conf = std::fs::read_to_string(host.dir.join("build.toml")).unwrap();
    for (name, extra, status) in [
        ("always.toml", "", 1),
        ("strict.toml", "strict = true\n", 3),
    ] {
        std::fs::write(
            host.dir.join(name),
            format!("{conf}premerge = \"always\"\n{extra}"),
        )
        .unwrap();
        let out = host.hook(name, "preinst", &build);
        let said = common::text(&out);
        assert_eq!(out.status.code(), Some(status), "{said}");
        let line = said
            .lines()
            .find(|l| l.contains("linked.txt"))
            .unwrap_or_else(|| panic!("{said}"));
        assert!(
            line.contains("has 2 hard links but only 1 inside the tree"),
            "{line}"
        );
        assert_eq!(xattr(&outside), None);
        assert!(xattr(&image.join("usr/bin/foo-twin")).is_some(), "{said}");
    }
}
