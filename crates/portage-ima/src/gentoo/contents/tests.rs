//! Unit tests of the CONTENTS parser, kept apart so that contents.rs reads
//! as the format.

use super::*;
use proptest::prelude::*;

const MD5: &str = "ec4821ad3db39e619b360ee097ff8f99";

fn md5() -> [u8; 16] {
    let mut m = [0; 16];
    hex::decode_to_slice(MD5, &mut m).unwrap();
    m
}

#[test]
fn parses_every_kind() {
    let data = format!(
        "dir /usr/share/foo\n\
         obj /usr/share/foo/file with space.txt {MD5} 1795842074\n\
         sym /usr/bin/foo-link -> foo 1795842074\n\
         dev /dev/foo\n\
         fif /var/lib/foo/fifo\n"
    );
    let c = Contents::parse_strict(data.as_bytes()).unwrap();
    assert_eq!(
        c.entries,
        vec![
            ContentsEntry::Dir {
                path: "/usr/share/foo".into()
            },
            ContentsEntry::Obj {
                path: "/usr/share/foo/file with space.txt".into(),
                md5: md5(),
                mtime: 1795842074
            },
            ContentsEntry::Sym {
                path: "/usr/bin/foo-link".into(),
                target: "foo".into(),
                mtime: 1795842074
            },
            ContentsEntry::Dev {
                path: "/dev/foo".into()
            },
            ContentsEntry::Fif {
                path: "/var/lib/foo/fifo".into()
            },
        ]
    );
    let kinds: Vec<_> = c.entries.iter().map(|e| e.kind()).collect();
    assert_eq!(kinds, ["dir", "obj", "sym", "dev", "fif"]);
    let objs: Vec<_> = c.objects().collect();
    assert_eq!(
        objs,
        vec![(Path::new("/usr/share/foo/file with space.txt"), &md5())]
    );
    assert_eq!(c.to_bytes(), data.as_bytes());
}

#[test]
fn empty_and_trailing_newline() {
    assert_eq!(Contents::parse(b""), Contents::default());
    assert_eq!(Contents::parse(b"\n"), Contents::default());
    assert_eq!(Contents::parse(b"dir /a").entries.len(), 1);
    assert_eq!(Contents::parse(b"dir /a\n").entries.len(), 1);
    // A blank line in the middle is not something Portage writes: it is
    // skipped, the lines around it are kept.
    let c = Contents::parse(b"dir /a\n\ndir /b\n");
    assert_eq!(c.entries.len(), 2);
    assert_eq!(c.skipped.len(), 1);
    assert_eq!(c.skipped[0].line, 2);
    let e = Contents::parse_strict(b"dir /a\n\ndir /b\n").unwrap_err();
    assert_eq!(e.line(), Some(2));
}

#[test]
fn obj_path_with_spaces_and_hex_like_words() {
    // The path itself ends in something that looks like an MD5 and an mtime.
    let line = format!("obj /a {MD5} 12 b {MD5} 7\n");
    let c = Contents::parse_strict(line.as_bytes()).unwrap();
    assert_eq!(
        c.entries[0],
        ContentsEntry::Obj {
            path: format!("/a {MD5} 12 b").into(),
            md5: md5(),
            mtime: 7
        }
    );
}

#[test]
fn non_utf8_paths() {
    let mut data = b"obj /usr/share/caf\xe9 \xff".to_vec();
    data.extend_from_slice(format!(" {MD5} 1\n").as_bytes());
    let c = Contents::parse_strict(&data).unwrap();
    assert_eq!(
        c.entries[0].path().as_os_str().as_bytes(),
        b"/usr/share/caf\xe9 \xff"
    );
    assert_eq!(c.to_bytes(), data);
}

#[test]
fn sym_splits_at_the_last_arrow() {
    let c = Contents::parse_strict(b"sym /usr/a -> b -> c 5\n").unwrap();
    assert_eq!(
        c.entries[0],
        ContentsEntry::Sym {
            path: "/usr/a -> b".into(),
            target: "c".into(),
            mtime: 5
        }
    );
    // A target with spaces.
    let c = Contents::parse_strict(b"sym /usr/x -> ../some dir/y 5\n").unwrap();
    assert_eq!(
        c.entries[0],
        ContentsEntry::Sym {
            path: "/usr/x".into(),
            target: "../some dir/y".into(),
            mtime: 5
        }
    );
}

/// The reason the only line of `data` was skipped, as displayed.
fn err(data: &str) -> String {
    let c = Contents::parse(data.as_bytes());
    assert!(c.entries.is_empty(), "{data:?} was not skipped: {c:?}");
    assert_eq!(c.skipped.len(), 1, "{data:?}");
    c.skipped[0].to_string()
}

#[test]
fn refuses_what_portage_never_writes() {
    let cases: &[(&str, &str)] = &[
        ("obj /usr/bin/foo 1795842074", "obj entry has no MD5"),
        ("obj /usr/bin/foo", "obj entry has no MD5 and no mtime"),
        (&format!("obj /usr/bin/foo {MD5}"), "obj entry has no mtime"),
        (&format!("obj /usr/a b {MD5}"), "obj entry has no mtime"),
        ("obj /usr/a b 12", "bad MD5 `b`"),
        (
            "obj /usr/bin/foo zz4821ad3db39e619b360ee097ff8f99 1",
            "bad MD5",
        ),
        ("obj /usr/bin/foo ec48 1", "bad MD5"),
        (&format!("obj /usr/bin/foo {MD5} --1"), "bad mtime"),
        (&format!("obj /usr/bin/foo {MD5} -"), "bad mtime"),
        (&format!("obj /usr/bin/foo {MD5} 1-"), "bad mtime"),
        (&format!("obj /usr/bin/foo {MD5} +1"), "bad mtime"),
        (&format!("obj /usr/bin/foo {MD5} 1.5"), "bad mtime"),
        (
            &format!("obj /usr/bin/foo {MD5} 99999999999999999999999"),
            "bad mtime",
        ),
        (&format!("obj usr/bin/foo {MD5} 1"), "not absolute"),
        (&format!("obj  {MD5} 1"), "empty path"),
        (&format!("obj /usr/../etc/shadow {MD5} 1"), "`..` component"),
        (&format!("obj /usr/./bin {MD5} 1"), "`.` component"),
        (&format!("obj /usr//bin {MD5} 1"), "empty component"),
        ("dir /usr/", "empty component"),
        ("dir /..", "`..` component"),
        ("dir", "has no path"),
        ("dir ", "empty path"),
        ("DIR /usr", "unknown entry type `DIR`"),
        ("lnk /usr", "unknown entry type `lnk`"),
        ("sym /a 1", "no ` -> `"),
        ("sym /a -> b", "bad mtime"),
        ("sym /a ->  1", "empty target"),
        ("sym a -> b 1", "not absolute"),
        ("dir /a\0b", "NUL"),
    ];
    for (line, want) in cases {
        let got = err(line);
        assert!(got.contains(want), "{line:?}: got {got:?}, want {want:?}");
        assert!(got.starts_with("line 1: "), "{got}");
    }
}

#[test]
fn old_symlink_format() {
    let c = Contents::parse(
        b"sym /usr/lib/libfoo.so -> libfoo.so.1 \
          (41471, 1234567L, 2049L, 1, 0, 0, 11L, 1104537600, 1104537601, 1104537602)\n",
    );
    assert_eq!(
        c.entries[0],
        ContentsEntry::Sym {
            path: "/usr/lib/libfoo.so".into(),
            target: "libfoo.so.1".into(),
            mtime: 1104537601
        }
    );
    // Not a stat tuple: the last word is the (bad) mtime.
    let e = err("sym /a -> b (1, 2)\n");
    assert!(e.contains("bad mtime `2)`"), "{e}");
}

#[test]
fn skips_bad_lines_with_their_number_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("CONTENTS");
    let data = format!(
        "dir /usr\n\
         obj /usr/bin/foo 1795842074\n\
         obj /usr/share/old {MD5} -1\n\
         garbage here\n\
         obj /usr/bin/bar {MD5} 1795842074\n"
    );
    std::fs::write(&p, data).unwrap();
    let c = Contents::read(&p).unwrap();
    // Portage writes `-1` for a file dated before 1970: accepted.
    let objs: Vec<_> = c.objects().map(|(p, _)| p).collect();
    assert_eq!(
        objs,
        [Path::new("/usr/share/old"), Path::new("/usr/bin/bar")]
    );
    assert!(matches!(c.entries[1], ContentsEntry::Obj { mtime: -1, .. }));
    let messages: Vec<String> = c.skipped_messages(&p).collect();
    assert_eq!(
        messages,
        [
            format!(
                "{} line 2: obj entry has no MD5 (expected `obj PATH MD5 MTIME`); \
                 line skipped (Portage skips it too), its file is not handled",
                p.display()
            ),
            format!(
                "{} line 4: unknown entry type `garbage` (expected dir, obj, sym, dev or fif); \
                 line skipped (Portage skips it too), its file is not handled",
                p.display()
            ),
        ]
    );
    let missing = dir.path().join("nope");
    let e = Contents::read(&missing).unwrap_err();
    assert!(e.is_not_found());
    assert!(e.to_string().contains(&*missing.to_string_lossy()), "{e}");
}

#[test]
fn negative_mtime_round_trips() {
    let line = format!("obj /usr/share/old {MD5} -1\nsym /usr/l -> t -86400\n");
    let c = Contents::parse_strict(line.as_bytes()).unwrap();
    assert_eq!(c.to_bytes(), line.as_bytes());
}

/// One path component: any bytes but `/`, NUL and newline, not `.`/`..`;
/// spaces and ` -> ` included on purpose.
fn component() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 1..12),
        Just(b" -> ".to_vec()),
        Just(b"a b".to_vec()),
        Just(b"x -> y".to_vec()),
    ]
    .prop_map(|c| {
        c.into_iter()
            .filter(|&b| b != b'/' && b != 0 && b != b'\n')
            .collect::<Vec<u8>>()
    })
    .prop_filter("not empty, . or ..", |c| {
        !c.is_empty() && c != b"." && c != b".."
    })
}

fn abs_path() -> impl Strategy<Value = PathBuf> {
    proptest::collection::vec(component(), 1..5).prop_map(|cs| {
        let mut p = Vec::new();
        for c in cs {
            p.push(b'/');
            p.extend(c);
        }
        PathBuf::from(OsStr::from_bytes(&p))
    })
}

/// A symlink target: anything without newline/NUL, not empty, without
/// ` -> ` and not starting with `-> ` (the separator's last space would
/// complete a later arrow): what the format cannot carry in a target.
fn target() -> impl Strategy<Value = PathBuf> {
    proptest::collection::vec(any::<u8>(), 1..20)
        .prop_map(|t| {
            t.into_iter()
                .filter(|&b| b != 0 && b != b'\n')
                .collect::<Vec<u8>>()
        })
        .prop_filter("usable target", |t| {
            !t.is_empty() && rfind(t, b" -> ").is_none() && !t.starts_with(b"-> ")
        })
        .prop_map(|t| PathBuf::from(OsStr::from_bytes(&t)))
}

fn entry() -> impl Strategy<Value = ContentsEntry> {
    prop_oneof![
        abs_path().prop_map(|path| ContentsEntry::Dir { path }),
        (abs_path(), any::<[u8; 16]>(), any::<i64>())
            .prop_map(|(path, md5, mtime)| ContentsEntry::Obj { path, md5, mtime }),
        (abs_path(), target(), any::<i64>()).prop_map(|(path, target, mtime)| {
            ContentsEntry::Sym {
                path,
                target,
                mtime,
            }
        }),
        abs_path().prop_map(|path| ContentsEntry::Dev { path }),
        abs_path().prop_map(|path| ContentsEntry::Fif { path }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Contents::parse(&data);
    }

    #[test]
    fn near_valid_lines_never_panic(
        kind in prop_oneof![Just("obj "), Just("sym "), Just("dir "), Just("fif ")],
        tail in proptest::collection::vec(
            proptest::sample::select(b" /->.a0f\n".to_vec()),
            0..60),
    ) {
        let mut line = kind.as_bytes().to_vec();
        line.extend(tail);
        let _ = Contents::parse(&line);
    }

    #[test]
    fn valid_contents_round_trip(entries in proptest::collection::vec(entry(), 0..20)) {
        let c = Contents { entries, skipped: Vec::new() };
        let bytes = c.to_bytes();
        let back = Contents::parse_strict(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, c);
    }
}
