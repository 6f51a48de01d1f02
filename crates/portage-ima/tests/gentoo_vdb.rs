//! The vdb, CONTENTS, RootDir and atoms together, on a tree real Portage
//! produced (`tests/data/emerged-root`: `emerge` of two test ebuilds into
//! ROOT with Portage 3.0.x from PyPI, the vdb trimmed to the files read
//! here), and on hand-made vdbs with the clutter Portage leaves around.

use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use portage_ima::fs::rootfs::{cfg_siblings, Resolver, RootDir};
use portage_ima::gentoo::atom::{resolve, Atom, AtomError};
use portage_ima::gentoo::contents::{Contents, ContentsEntry};
use portage_ima::gentoo::vdb::{InstalledPackage, Vdb};

fn emerged_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/emerged-root")
}

fn md5_hex(bytes: &[u8]) -> String {
    // coreutils' md5sum as the reference digest.
    let mut child = Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("md5sum (coreutils)");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..32].to_string()
}

#[test]
fn real_portage_vdb_contents_and_files_agree() {
    let root = emerged_root();
    let vdb = Vdb::open(&root).unwrap();
    assert_eq!(vdb.path(), root.join("var/db/pkg"));
    let pkgs = vdb.packages().unwrap();
    let cpvs: Vec<String> = pkgs.iter().map(|p| p.cpv().to_string()).collect();
    assert_eq!(cpvs, ["test-ima/bar-3", "test-ima/foo-1"]);
    let foo = &pkgs[1];
    let name_version = |p: &InstalledPackage| {
        let cpv = p.cpv();
        (cpv.package().to_string(), cpv.version().to_string())
    };
    assert_eq!(name_version(foo), ("foo".into(), "1".into()));
    assert_eq!(foo.slot().unwrap().as_str(), "0");
    assert_eq!(foo.repository().unwrap().as_str(), "ima_test");
    assert_eq!(vdb.package("test-ima", "foo-1").as_ref(), Some(foo));
    // Atoms with the slot and repository Portage recorded.
    let sel = |a: &str| resolve(&[a.parse::<Atom>().unwrap()], &pkgs);
    assert_eq!(sel("foo:0::ima_test").unwrap(), std::slice::from_ref(foo));
    assert!(matches!(sel("foo::gentoo"), Err(AtomError::Unknown { .. })));
    assert!(matches!(sel("foo:1"), Err(AtomError::Unknown { .. })));

    for res in [Resolver::Openat2, Resolver::Walk] {
        let rd = RootDir::open_with(&root, res).unwrap();
        for pkg in &pkgs {
            let contents = pkg.contents().unwrap();
            let kinds: Vec<&str> = contents.entries.iter().map(|e| e.kind()).collect();
            assert!(kinds.contains(&"obj") && kinds.contains(&"sym") && kinds.contains(&"dir"));
            let mut objs = 0;
            for entry in &contents.entries {
                match entry {
                    ContentsEntry::Obj { path, md5, .. } => {
                        let mut data = Vec::new();
                        rd.open_file(path)
                            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                            .read_to_end(&mut data)
                            .unwrap();
                        assert_eq!(md5_hex(&data), hex(md5), "{}", path.display());
                        objs += 1;
                    }
                    ContentsEntry::Sym { path, target, .. } => {
                        let e = rd.open_file(path).unwrap_err();
                        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
                        assert_eq!(&fs::read_link(rd.display_path(path)).unwrap(), target);
                    }
                    ContentsEntry::Dir { path } => {
                        rd.open_dir(path).unwrap();
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!(objs, contents.objects().count());
        }
        // The name with a space is there, as Portage wrote it.
        let foo_contents = foo.contents().unwrap();
        assert!(foo_contents
            .objects()
            .any(|(p, _)| p == Path::new("/usr/share/foo/file with space.txt")));
    }
}

fn hex(md5: &[u8; 16]) -> String {
    md5.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn config_protected_sibling_is_found_by_md5() {
    // Portage merged the new foo.conf as ._cfg0001_foo.conf because the admin
    // had edited foo.conf; CONTENTS still names /etc/foo.conf with the new MD5.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fs::create_dir_all(root.join("etc")).unwrap();
    let new = fs::read(emerged_root().join("etc/foo.conf")).unwrap();
    fs::write(root.join("etc/foo.conf"), b"admin's edit\n").unwrap();
    fs::write(root.join("etc/._cfg0000_foo.conf"), b"an older update\n").unwrap();
    fs::write(root.join("etc/._cfg0001_foo.conf"), &new).unwrap();
    let contents =
        Contents::read(&emerged_root().join("var/db/pkg/test-ima/foo-1/CONTENTS")).unwrap();
    let (path, md5) = contents
        .objects()
        .find(|(p, _)| *p == Path::new("/etc/foo.conf"))
        .unwrap();
    let rd = RootDir::open(root).unwrap();
    let names = rd.read_dir_names(path.parent().unwrap()).unwrap();
    let sibs = cfg_siblings(&names, path.file_name().unwrap());
    assert_eq!(
        sibs,
        ["._cfg0000_foo.conf", "._cfg0001_foo.conf"].map(OsString::from)
    );
    let matching: Vec<&OsString> = sibs
        .iter()
        .filter(|s| {
            let mut data = Vec::new();
            rd.open_file(&path.with_file_name(s))
                .unwrap()
                .read_to_end(&mut data)
                .unwrap();
            md5_hex(&data) == hex(md5)
        })
        .collect();
    assert_eq!(matching, [&OsString::from("._cfg0001_foo.conf")]);
}

/// A vdb with what Portage and admins leave next to package directories.
fn cluttered_vdb() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let vdb = tmp.path().join("var/db/pkg");
    let pkg = |cpv: &str, slot: &str| {
        let d = vdb.join(cpv);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("CONTENTS"), "dir /usr\n").unwrap();
        fs::write(d.join("SLOT"), format!("{slot}\n")).unwrap();
    };
    pkg("app-misc/foo-1.0", "0");
    pkg("app-misc/foo-10", "0");
    pkg("app-misc/foo-2.0-r1", "0");
    pkg("x11-libs/gtk+-3.24.38-r1", "3/3.24");
    pkg("x11-libs/gtk+-2.24.33", "2");
    pkg("dev-lang/perl-5.38.2-r3", "0/5.38");
    pkg("dev-libs/common-1", "0");
    pkg("sys-apps/common-2", "0");
    // Clutter: an in-progress merge, lock files, .keep files, invalid names.
    fs::create_dir_all(vdb.join("app-misc/-MERGING-foo-3")).unwrap();
    fs::write(vdb.join("app-misc/.foo-2.0-r1.portage_lockfile"), "").unwrap();
    fs::write(vdb.join(".keep_sys-apps_portage-0"), "").unwrap();
    fs::write(vdb.join("app-misc/.keep"), "").unwrap();
    fs::create_dir_all(vdb.join(".hidden/x-1")).unwrap();
    fs::create_dir_all(vdb.join("app-misc/not-a-version")).unwrap();
    fs::create_dir_all(vdb.join("app-misc/foo-1a-2")).unwrap();
    fs::create_dir_all(vdb.join("-MERGING-cat/x-1")).unwrap();
    fs::create_dir_all(vdb.join("lost+found/x-1")).unwrap();
    fs::create_dir_all(vdb.join("app-misc/CVS")).unwrap();
    fs::create_dir_all(vdb.join("bad~cat/x-1")).unwrap();
    // Symlinks are not package directories.
    symlink(vdb.join("app-misc/foo-1.0"), vdb.join("app-misc/link-1")).unwrap();
    tmp
}

#[test]
fn scan_skips_clutter_and_sorts_by_version() {
    let tmp = cluttered_vdb();
    let vdb = Vdb::open(tmp.path()).unwrap();
    let scan = vdb.scan().unwrap();
    let cpvs: Vec<String> = scan.packages.iter().map(|p| p.cpv().to_string()).collect();
    assert_eq!(
        cpvs,
        [
            "app-misc/foo-1.0",
            "app-misc/foo-2.0-r1",
            "app-misc/foo-10",
            "dev-lang/perl-5.38.2-r3",
            "dev-libs/common-1",
            "sys-apps/common-2",
            "x11-libs/gtk+-2.24.33",
            "x11-libs/gtk+-3.24.38-r1",
        ]
    );
    let invalid: Vec<String> = scan
        .invalid
        .iter()
        .map(|p| p.strip_prefix(vdb.path()).unwrap().display().to_string())
        .collect();
    assert_eq!(
        invalid,
        ["app-misc/foo-1a-2", "app-misc/not-a-version", "bad~cat"]
    );
    assert_eq!(vdb.packages().unwrap(), scan.packages);
    assert!(vdb.package("app-misc", "foo-1.0").is_some());
    assert!(vdb.package("app-misc", "foo-9").is_none());
    assert!(vdb.package("app-misc", "-MERGING-foo-3").is_none());
    assert!(vdb.package("..", "foo-1.0").is_none());
    assert!(vdb.package("app-misc/../app-misc", "foo-1.0").is_none());
    let gtk = vdb.package("x11-libs", "gtk+-3.24.38-r1").unwrap();
    let slot = gtk.slot().unwrap();
    assert_eq!((slot.name(), slot.as_str()), ("3", "3/3.24"));
    assert_eq!(
        gtk.contents_path(),
        vdb.path().join("x11-libs/gtk+-3.24.38-r1/CONTENTS")
    );
    assert_eq!(gtk.contents().unwrap().entries.len(), 1);
}

#[test]
fn atoms_against_a_vdb() {
    let tmp = cluttered_vdb();
    let installed = Vdb::open(tmp.path()).unwrap().packages().unwrap();
    let sel = |atoms: &[&str]| -> Result<Vec<String>, AtomError> {
        let atoms: Vec<Atom> = atoms.iter().map(|a| a.parse().unwrap()).collect();
        Ok(resolve(&atoms, &installed)?
            .iter()
            .map(|p| p.cpv().to_string())
            .collect())
    };
    assert_eq!(
        sel(&["gtk+"]).unwrap(),
        ["x11-libs/gtk+-2.24.33", "x11-libs/gtk+-3.24.38-r1"]
    );
    assert_eq!(sel(&["gtk+:3"]).unwrap(), ["x11-libs/gtk+-3.24.38-r1"]);
    assert_eq!(
        sel(&["x11-libs/gtk+:2"]).unwrap(),
        ["x11-libs/gtk+-2.24.33"]
    );
    assert_eq!(sel(&["gtk+:3/3.24"]).unwrap(), ["x11-libs/gtk+-3.24.38-r1"]);
    assert!(matches!(
        sel(&["gtk+:4"]).unwrap_err(),
        AtomError::Unknown { .. }
    ));
    assert_eq!(sel(&["perl:0"]).unwrap(), ["dev-lang/perl-5.38.2-r3"]);
    assert_eq!(
        sel(&[">foo-2"]).unwrap(),
        ["app-misc/foo-2.0-r1", "app-misc/foo-10"]
    );
    assert_eq!(sel(&["=foo-1*"]).unwrap(), ["app-misc/foo-1.0"]);
    assert!(matches!(
        sel(&["common"]).unwrap_err(),
        AtomError::Ambiguous { .. }
    ));
}

#[test]
fn missing_vdb_names_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let e = Vdb::open(tmp.path()).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    let want = format!(
        "no package database at {}",
        tmp.path().join("var/db/pkg").display()
    );
    assert!(e.to_string().starts_with(&want), "{e}");
    assert!(e.to_string().ends_with("is --root right?"), "{e}");
    // A file where the directory should be.
    fs::create_dir_all(tmp.path().join("var/db")).unwrap();
    fs::write(tmp.path().join("var/db/pkg"), "").unwrap();
    let e = Vdb::open(tmp.path()).unwrap_err();
    assert!(e.to_string().contains("not a directory"), "{e}");
}

/// `tests/data/tricky-root`: real Portage merged the ebuild stored beside
/// its CONTENTS, whose file names are made to confuse a CONTENTS reader.
#[test]
fn real_portage_tricky_names() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tricky-root");
    let vdb = Vdb::open(&root).unwrap();
    let pkg = vdb.package("test-ima", "tricky-1.2_rc3-r1").unwrap();
    assert_eq!(
        (pkg.cpv().package().as_str(), pkg.cpv().version().as_str()),
        ("tricky", "1.2_rc3-r1")
    );
    let contents = pkg.contents().unwrap();
    let d = "/usr/share/tricky/";
    let objs: Vec<String> = contents
        .objects()
        .map(|(p, _)| p.to_str().unwrap().strip_prefix(d).unwrap().to_string())
        .collect();
    assert_eq!(
        objs,
        [
            "x ec4821ad3db39e619b360ee097ff8f99 12",
            "a -> b",
            "trailing ",
            "empty",
            // Portage renames non-UTF-8 names (QA notice): caf\xe9 -> caf?
            "caf?",
            " lead",
        ]
    );
    assert!(contents.entries.contains(&ContentsEntry::Fif {
        path: "/var/lib/tricky/fifo".into()
    }));
    let syms: Vec<(PathBuf, PathBuf)> = contents
        .entries
        .iter()
        .filter_map(|e| match e {
            ContentsEntry::Sym { path, target, .. } => Some((path.clone(), target.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        syms,
        [
            // The ebuild made `link -> x` pointing at `a -> b`; Portage wrote
            // `sym .../link -> x -> a -> b`, which no reader can split
            // correctly. Like Portage's own reader this one takes the last
            // arrow. Harmless: symlinks are never signed.
            ("/usr/share/tricky/link -> x -> a".into(), "b".into()),
            (
                "/usr/share/tricky/spacey-link".into(),
                "../target with space".into()
            ),
        ]
    );

    // Every obj opens inside the root with the MD5 Portage recorded.
    let rd = RootDir::open(&root).unwrap();
    for (path, md5) in contents.objects() {
        let mut data = Vec::new();
        rd.open_file(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .read_to_end(&mut data)
            .unwrap();
        assert_eq!(md5_hex(&data), hex(md5), "{}", path.display());
    }
    // The correctly split symlink is refused as a final component.
    let e = rd
        .open_file(Path::new("/usr/share/tricky/spacey-link"))
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
}
