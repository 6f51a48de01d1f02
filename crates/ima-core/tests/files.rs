//! File handling: open_regular's refusals, digests, the sign options, files
//! that change while hashed, and the xattr write errors on real file systems.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use common::{can_write_security_xattrs, getfattr, key, require, run, write_pattern, Form};
use ima_core::{
    default_provider, digest_file, open_regular, providers, read_ima_xattr, write_ima_xattr, Error,
    FileStamp, HashAlgo, ImaSigner, KeyMaterial, SignOptions, SignOutcome,
};

fn signer(algo: HashAlgo) -> ImaSigner {
    static KEY: OnceLock<KeyMaterial> = OnceLock::new();
    let km = KEY.get_or_init(|| KeyMaterial::load(&key(2048, Form::Pkcs1).key, None).unwrap());
    ImaSigner::new(default_provider(), km, algo, None).unwrap()
}

fn md5_of(path: &Path) -> [u8; 16] {
    let out = run(Command::new("md5sum").arg(path));
    let hex_md5 = String::from_utf8(out.stdout).unwrap();
    hex::decode(&hex_md5[..32]).unwrap().try_into().unwrap()
}

/// A file system mounted for one test, unmounted on drop.
struct Mount(PathBuf);

impl Mount {
    /// `mount -t fstype -o opts`; `None` (with the reason printed) where
    /// mounting is not possible.
    fn new(dir: &Path, fstype: &str, opts: &str, test: &str) -> Option<Mount> {
        fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", fstype, "-o", opts, fstype])
            .arg(dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Mount(dir.to_path_buf())),
            Ok(o) => {
                let why = format!("to mount {fstype}: {}", String::from_utf8_lossy(&o.stderr));
                require(false, &why, test);
                None
            }
            Err(e) => {
                require(false, &format!("to run mount: {e}"), test);
                None
            }
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn open_regular_refuses_everything_but_regular_files() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let file = d.join("file");
    fs::write(&file, "x").unwrap();
    std::os::unix::fs::symlink("file", d.join("link")).unwrap();
    std::os::unix::fs::symlink("missing", d.join("dangling")).unwrap();
    let fifo = std::ffi::CString::new(d.join("fifo").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let _sock = std::os::unix::net::UnixListener::bind(d.join("sock")).unwrap();
    fs::create_dir(d.join("dir")).unwrap();

    assert!(open_regular(&file).is_ok());
    let mut cases: Vec<(PathBuf, &str)> = vec![
        (d.join("link"), "symbolic link"),
        (d.join("dangling"), "symbolic link"),
        (d.join("fifo"), "fifo"),
        (d.join("sock"), "socket"),
        (d.join("dir"), "directory"),
        ("/dev/null".into(), "character device"),
    ];
    // A block device node of our own (loop0's numbers); needs root.
    let blk = std::ffi::CString::new(d.join("blk").to_str().unwrap()).unwrap();
    if unsafe { libc::mknod(blk.as_ptr(), libc::S_IFBLK | 0o600, libc::makedev(7, 0)) } == 0 {
        cases.push((d.join("blk"), "block device"));
    } else {
        require(
            false,
            "root to mknod a block device",
            "open_regular block device case",
        );
    }
    for (path, want) in cases {
        match open_regular(&path) {
            Err(Error::NotRegularFile { kind }) => assert_eq!(kind, want, "{path:?}"),
            other => panic!("{path:?}: want NotRegularFile({want}), got {other:?}"),
        }
    }
    // A symlink in a directory component is fine: only the last one counts.
    std::os::unix::fs::symlink(".", d.join("here")).unwrap();
    assert!(open_regular(&d.join("here/file")).is_ok());
    // Missing files are I/O errors naming the call.
    let err = open_regular(&d.join("missing")).unwrap_err();
    assert!(
        matches!(&err, Error::Io { op: "stat", source } if source.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );
    let msg = Error::NotRegularFile { kind: "fifo" }.to_string();
    assert!(msg.contains("fifo") && msg.contains("regular"), "{msg}");
}

#[test]
fn digests_match_coreutils_whatever_the_offset() {
    let tmp = tempfile::tempdir().unwrap();
    for (len, tool, algo) in [
        (0, "sha256sum", HashAlgo::Sha256),
        (1, "sha1sum", HashAlgo::Sha1),
        (256 * 1024, "sha224sum", HashAlgo::Sha224),
        (256 * 1024 + 1, "sha384sum", HashAlgo::Sha384),
        (3 * 256 * 1024 + 12345, "sha512sum", HashAlgo::Sha512),
    ] {
        let p = tmp.path().join(format!("f{len}"));
        write_pattern(&p, len, 3);
        let out = run(Command::new(tool).arg(&p));
        let want = String::from_utf8(out.stdout).unwrap();
        let want = want.split_whitespace().next().unwrap();
        for provider in providers() {
            let mut f = open_regular(&p).unwrap();
            // pread from 0: the descriptor's offset neither matters nor moves.
            f.seek(SeekFrom::Start(len as u64 / 2)).unwrap();
            let d = digest_file(provider, &f, algo, true).unwrap();
            assert_eq!(hex::encode(&d.digest), want, "{} {len}", provider.name());
            assert_eq!(d.md5.unwrap(), md5_of(&p));
            assert_eq!(d.size, len as u64);
            assert_eq!(d.algo, algo);
            assert_eq!(f.stream_position().unwrap(), len as u64 / 2);
            let d = digest_file(provider, &f, algo, false).unwrap();
            assert_eq!(d.md5, None);
        }
    }
}

#[test]
fn file_stamp_tracks_content_and_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("f");
    fs::write(&p, "abc").unwrap();
    let f = open_regular(&p).unwrap();
    let a = FileStamp::of(&f).unwrap();
    assert_eq!(a, FileStamp::of(&f).unwrap());
    assert_eq!(a.size, 3);
    std::thread::sleep(Duration::from_millis(5));
    fs::write(&p, "abd").unwrap(); // same size, new mtime
    let b = FileStamp::of(&f).unwrap();
    assert_ne!(a, b);
    assert_eq!((a.dev, a.ino, a.size), (b.dev, b.ino, b.size));
    assert_ne!(a.mtime, b.mtime);
}

#[test]
fn sign_options() {
    let test = "sign options";
    if !can_write_security_xattrs(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("f");
    write_pattern(&p, 5000, 1);
    let md5 = md5_of(&p);
    let s = signer(HashAlgo::Sha256);

    // Dry run: nothing written.
    let opts = SignOptions {
        dry_run: true,
        ..Default::default()
    };
    assert_eq!(s.sign_path(&p, &opts).unwrap(), SignOutcome::WouldSign);
    assert_eq!(getfattr(&p), None);

    // Wrong MD5: refused, nothing written, both sums reported.
    let mut wrong = md5;
    wrong[15] ^= 0xff;
    let opts = SignOptions {
        expect_md5: Some(wrong),
        ..Default::default()
    };
    match s.sign_path(&p, &opts).unwrap_err() {
        Error::Md5Mismatch { expected, actual } => {
            assert_eq!(expected, hex::encode(wrong));
            assert_eq!(actual, hex::encode(md5));
        }
        e => panic!("want Md5Mismatch, got {e:?}"),
    }
    assert_eq!(getfattr(&p), None);

    // Right MD5: signed.
    let opts = SignOptions {
        expect_md5: Some(md5),
        keep_valid: true,
        ..Default::default()
    };
    assert_eq!(s.sign_path(&p, &opts).unwrap(), SignOutcome::Signed);
    let first = getfattr(&p).unwrap();
    // Again with keep_valid: ours and valid, kept.
    assert_eq!(s.sign_path(&p, &opts).unwrap(), SignOutcome::AlreadyValid);
    assert_eq!(getfattr(&p).unwrap(), first);
    // Without keep_valid: signed again (same bytes: PKCS#1 v1.5 is deterministic).
    assert_eq!(
        s.sign_path(&p, &SignOptions::default()).unwrap(),
        SignOutcome::Signed
    );
    assert_eq!(getfattr(&p).unwrap(), first);

    // Another algorithm is not "ours": replaced.
    let s512 = signer(HashAlgo::Sha512);
    let keep = SignOptions {
        keep_valid: true,
        ..Default::default()
    };
    assert_eq!(s512.sign_path(&p, &keep).unwrap(), SignOutcome::Signed);
    assert_eq!(getfattr(&p).unwrap()[2], HashAlgo::Sha512.kernel_id());
    // Another key is not ours either.
    let other = KeyMaterial::load(&key(3072, Form::Pkcs1).key, None).unwrap();
    let other = ImaSigner::new(default_provider(), &other, HashAlgo::Sha512, None).unwrap();
    // Writing over another key id's signature says whose it was (rotation).
    assert_eq!(
        other.sign_path(&p, &keep).unwrap(),
        SignOutcome::Replaced {
            previous: s512.key_id()
        }
    );
    assert_eq!(
        s512.sign_path(&p, &keep).unwrap(),
        SignOutcome::Replaced {
            previous: other.key_id()
        }
    );
    // Our key and algorithm but a stale signature (content changed): re-signed.
    fs::write(&p, b"new content").unwrap();
    assert_eq!(s512.sign_path(&p, &keep).unwrap(), SignOutcome::Signed);
    assert_eq!(
        s512.sign_path(&p, &keep).unwrap(),
        SignOutcome::AlreadyValid
    );
    // A malformed value is replaced too.
    write_ima_xattr(&open_regular(&p).unwrap(), &[0x03, 0x02]).unwrap();
    assert_eq!(s512.sign_path(&p, &keep).unwrap(), SignOutcome::Signed);

    // An explicit key id overrides the key's.
    let km = KeyMaterial::load(&key(2048, Form::Pkcs1).key, None).unwrap();
    let id = ima_core::KeyId([0xde, 0xad, 0xbe, 0xef]);
    let s = ImaSigner::new(default_provider(), &km, HashAlgo::Sha256, Some(id)).unwrap();
    assert_eq!(s.key_id(), id);
    s.sign_path(&p, &SignOptions::default()).unwrap();
    assert_eq!(&getfattr(&p).unwrap()[3..7], &id.0);
}

#[test]
fn a_file_changed_while_hashed_is_not_signed() {
    if !can_write_security_xattrs("file changed test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = signer(HashAlgo::Sha256);

    // Deterministic: change the file between hashing and the second stamp.
    let p = tmp.path().join("appended");
    write_pattern(&p, 10_000, 2);
    let f = open_regular(&p).unwrap();
    let err = s
        .sign_file_hooked(&f, &SignOptions::default(), || {
            OpenOptions::new()
                .append(true)
                .open(&p)
                .unwrap()
                .write_all(b"more")
                .unwrap();
        })
        .unwrap_err();
    assert!(matches!(err, Error::FileChanged), "{err:?}");
    assert_eq!(read_ima_xattr(&f).unwrap(), None);

    // Same size, only the mtime moves (a rewrite in place).
    let p = tmp.path().join("touched");
    write_pattern(&p, 10_000, 2);
    let f = open_regular(&p).unwrap();
    let err = s
        .sign_file_hooked(&f, &SignOptions::default(), || {
            let times = [libc::timespec {
                tv_sec: 1,
                tv_nsec: 0,
            }; 2];
            let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
            assert_eq!(
                unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) },
                0
            );
        })
        .unwrap_err();
    assert!(matches!(err, Error::FileChanged), "{err:?}");
    assert_eq!(read_ima_xattr(&f).unwrap(), None);

    // For real: a second thread appends while a large file is hashed.
    let p = tmp.path().join("growing");
    write_pattern(&p, 32 << 20, 5);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut w = OpenOptions::new().append(true).open(&p).unwrap();
            while !stop.load(Ordering::Relaxed) {
                w.write_all(&[0u8; 512]).unwrap();
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        std::thread::sleep(Duration::from_millis(5));
        let err = s.sign_path(&p, &SignOptions::default()).unwrap_err();
        stop.store(true, Ordering::Relaxed);
        assert!(matches!(err, Error::FileChanged), "{err:?}");
    });
    assert_eq!(getfattr(&p), None);
    assert!(Error::FileChanged.to_string().contains("changed while"));
}

#[test]
fn read_only_file_system() {
    let test = "read-only file system test";
    if !can_write_security_xattrs(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some(m) = Mount::new(&tmp.path().join("mnt"), "tmpfs", "size=1m", test) else {
        return;
    };
    let p = m.0.join("f");
    fs::write(&p, "content").unwrap();
    run(Command::new("mount").args(["-o", "remount,ro"]).arg(&m.0));
    let err = signer(HashAlgo::Sha256)
        .sign_path(&p, &SignOptions::default())
        .unwrap_err();
    assert!(matches!(err, Error::ReadOnlyFilesystem), "{err:?}");
    assert!(err.to_string().contains("read-write"), "{err}");
    // Dry run still works there.
    let opts = SignOptions {
        dry_run: true,
        ..Default::default()
    };
    assert_eq!(
        signer(HashAlgo::Sha256).sign_path(&p, &opts).unwrap(),
        SignOutcome::WouldSign
    );
}

#[test]
fn file_system_without_security_xattrs() {
    let test = "no-xattr file system test";
    if !can_write_security_xattrs(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // ramfs has no xattr handlers at all.
    let Some(m) = Mount::new(&tmp.path().join("mnt"), "ramfs", "mode=0755", test) else {
        return;
    };
    let p = m.0.join("f");
    fs::write(&p, "content").unwrap();
    let f = open_regular(&p).unwrap();
    assert_eq!(read_ima_xattr(&f).unwrap(), None);
    let err = signer(HashAlgo::Sha256)
        .sign_file(&f, &SignOptions::default())
        .unwrap_err();
    assert!(matches!(err, Error::XattrUnsupported), "{err:?}");
    // And /proc, the brief's other example.
    let f = open_regular(Path::new("/proc/self/status")).unwrap();
    let err = write_ima_xattr(&f, &[0x01; 21]).unwrap_err();
    assert!(matches!(err, Error::XattrUnsupported), "{err:?}");
}

#[test]
fn immutable_and_append_only_files() {
    let test = "immutable file test";
    if !can_write_security_xattrs(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = signer(HashAlgo::Sha256);
    for flag in ["+i", "+a"] {
        let p = tmp.path().join(format!("f{flag}"));
        fs::write(&p, "content").unwrap();
        let out = Command::new("chattr").arg(flag).arg(&p).output().unwrap();
        if !out.status.success() {
            let why = format!("chattr {flag}: {}", String::from_utf8_lossy(&out.stderr));
            require(false, &why, test);
            return;
        }
        let res = s.sign_path(&p, &SignOptions::default());
        let _ = Command::new("chattr")
            .arg(flag.replace('+', "-"))
            .arg(&p)
            .status();
        let err = res.unwrap_err();
        assert!(matches!(err, Error::NotPermitted), "chattr {flag}: {err:?}");
        assert!(err.to_string().contains("lsattr"), "{err}");
        // Once cleared, signing works.
        assert_eq!(
            s.sign_path(&p, &SignOptions::default()).unwrap(),
            SignOutcome::Signed
        );
    }
}

#[test]
fn io_errors_name_the_call() {
    // A descriptor opened write-only cannot be read: EBADF from pread.
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("f");
    fs::write(&p, "x").unwrap();
    let f = File::options().write(true).open(&p).unwrap();
    let err = digest_file(default_provider(), &f, HashAlgo::Sha256, false).unwrap_err();
    assert!(matches!(err, Error::Io { op: "read", .. }), "{err:?}");
    assert!(err.to_string().starts_with("cannot read: "), "{err}");
}
