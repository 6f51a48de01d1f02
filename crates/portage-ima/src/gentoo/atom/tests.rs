//! Unit tests of the atom parser and of its matching against installed
//! packages, kept apart so that atom.rs reads as the grammar.

use super::*;
use std::path::PathBuf;

fn pkg(cpv: &str) -> InstalledPackage {
    let (c, pf) = cpv.split_once('/').unwrap();
    InstalledPackage::new(c, pf, PathBuf::from("/vdb").join(cpv)).unwrap()
}

fn world() -> Vec<InstalledPackage> {
    [
        "app-misc/foo-1.0",
        "app-misc/foo-2.0-r1",
        "app-misc/foo-bar-3",
        "dev-lang/perl-5.38.2-r3",
        "x11-libs/gtk+-3.24.38-r1",
        "x11-libs/gtk+-2.24.33",
        "dev-libs/common-1",
        "sys-apps/common-2",
        "app-editors/vim-9.1.0-r1",
        "app-editors/vim-core-9.1.0",
    ]
    .iter()
    .map(|s| pkg(s))
    .collect()
}

fn atom(s: &str) -> Atom {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn cpvs(atoms: &[&str]) -> Result<Vec<String>, AtomError> {
    let atoms: Vec<Atom> = atoms.iter().map(|s| atom(s)).collect();
    Ok(resolve(&atoms, &world())?
        .iter()
        .map(|p| p.cpv().to_string())
        .collect())
}

#[test]
fn parse_forms() {
    let a = atom("foo");
    assert_eq!((a.category(), a.package().as_str()), (None, "foo"));
    assert!(a.version().is_none());
    let a = atom("app-misc/foo-bar");
    assert_eq!(a.category().map(Category::as_str), Some("app-misc"));
    assert_eq!(a.package().as_str(), "foo-bar");
    assert!(a.version().is_none());
    let a = atom("foo-1.2.3");
    assert_eq!(a.package().as_str(), "foo");
    assert_eq!(a.version().unwrap().0, Op::Equal);
    assert_eq!(a.version().unwrap().1.as_str(), "1.2.3");
    let a = atom("=app-misc/foo-1.2.3-r1");
    assert_eq!(a.version().unwrap().1.as_str(), "1.2.3-r1");
    assert_eq!(atom("=foo-1.2*").version().unwrap().0, Op::EqualGlob);
    assert_eq!(atom("~foo-1.2").version().unwrap().0, Op::Approx);
    assert_eq!(atom(">=foo-1").version().unwrap().0, Op::GreaterOrEqual);
    assert_eq!(atom("<foo-1").version().unwrap().0, Op::Less);
    let slot = |s: &str| atom(s).slot().map(|s| s.as_str().to_string());
    assert_eq!(slot("x11-libs/gtk+:3").as_deref(), Some("3"));
    assert_eq!(slot("gtk+:3/3.24").as_deref(), Some("3/3.24"));
    let a = atom("=x11-libs/gtk+-3.24.38-r1:3::gentoo");
    assert_eq!(
        (a.slot().map(Slot::as_str), a.repo().map(RepoName::as_str)),
        (Some("3"), Some("gentoo"))
    );
    assert_eq!(a.version().unwrap().1.as_str(), "3.24.38-r1");
    assert_eq!(
        atom("foo::my-overlay").repo().map(RepoName::as_str),
        Some("my-overlay")
    );
    assert_eq!(atom("  foo  ").as_str(), "foo");
}

#[test]
fn parse_errors_say_why() {
    for (s, why) in [
        ("", "empty"),
        ("=foo", "an operator needs a version"),
        (">=app-misc/foo", "an operator needs a version"),
        ("foo-1.2*", "needs the = operator"),
        (">=foo-1.2*", "needs the = operator"),
        ("~foo-1.2-r1", "drop the -rN"),
        ("!foo", "blockers"),
        ("foo[ssl]", "USE dependencies"),
        ("foo::", "bad repository name"),
        ("foo::-x", "bad repository name"),
        ("foo::a:b", "bad repository name"),
        ("a/b/c", "more than one '/'"),
        ("-cat/foo", "not a valid category"),
        ("foo-1a-2", "neither a package name nor NAME-VERSION"),
        (
            "foo-1.2B",
            "NAME-VERSION: '1.2B' is not a version: unexpected 'B'",
        ),
        ("foo.bar", "NAME-VERSION: '.' is not allowed"),
        ("foo:3/", "bad slot '3/': the sub-slot is empty"),
        ("+foo", "neither"),
        ("foo:", "bad slot"),
        ("foo:/x", "bad slot"),
        ("foo bar", "whitespace"),
        ("app-misc/", "neither"),
    ] {
        let e = s.parse::<Atom>().unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("invalid atom '{s}': ")) && msg.contains(why),
            "{s:?}: {msg}"
        );
    }
}

#[test]
fn resolves_names_versions_and_operators() {
    assert_eq!(
        cpvs(&["foo"]).unwrap(),
        ["app-misc/foo-1.0", "app-misc/foo-2.0-r1"],
        "a bare name selects every installed version"
    );
    assert_eq!(cpvs(&["app-misc/foo-bar"]).unwrap(), ["app-misc/foo-bar-3"]);
    assert_eq!(cpvs(&["foo-1.0"]).unwrap(), ["app-misc/foo-1.0"]);
    assert_eq!(cpvs(&["foo-1.0-r0"]).unwrap(), ["app-misc/foo-1.0"]);
    assert_eq!(
        cpvs(&["=app-misc/foo-2.0-r1"]).unwrap(),
        ["app-misc/foo-2.0-r1"]
    );
    assert_eq!(cpvs(&["~foo-2.0"]).unwrap(), ["app-misc/foo-2.0-r1"]);
    assert_eq!(cpvs(&[">=foo-1.5"]).unwrap(), ["app-misc/foo-2.0-r1"]);
    assert_eq!(cpvs(&["<=foo-2.0-r1"]).unwrap().len(), 2);
    assert_eq!(cpvs(&["<foo-2"]).unwrap(), ["app-misc/foo-1.0"]);
    assert_eq!(cpvs(&["=gtk+-3*"]).unwrap(), ["x11-libs/gtk+-3.24.38-r1"]);
    assert_eq!(cpvs(&["perl"]).unwrap(), ["dev-lang/perl-5.38.2-r3"]);
    assert_eq!(cpvs(&["vim"]).unwrap(), ["app-editors/vim-9.1.0-r1"]);
    // Order of the atoms, no duplicates.
    assert_eq!(
        cpvs(&["perl", "foo-2.0-r1", "foo", "perl"]).unwrap(),
        [
            "dev-lang/perl-5.38.2-r3",
            "app-misc/foo-2.0-r1",
            "app-misc/foo-1.0"
        ]
    );
    // A category disambiguates.
    assert_eq!(cpvs(&["sys-apps/common"]).unwrap(), ["sys-apps/common-2"]);
    // So does a version only one of them has.
    assert_eq!(cpvs(&["common-2"]).unwrap(), ["sys-apps/common-2"]);
}

#[test]
fn ambiguous_and_unknown() {
    assert_eq!(
        cpvs(&["common"]).unwrap_err(),
        AtomError::Ambiguous {
            atom: "common".into(),
            candidates: vec!["dev-libs/common".into(), "sys-apps/common".into()]
        }
    );
    let e = cpvs(&["common"]).unwrap_err().to_string();
    assert_eq!(
        e,
        "'common' is ambiguous: installed as dev-libs/common, sys-apps/common; \
         write the category too"
    );
    // A typo suggests the close name.
    match cpvs(&["perll"]).unwrap_err() {
        AtomError::Unknown { suggestions, .. } => {
            assert_eq!(suggestions, ["dev-lang/perl"])
        }
        e => panic!("{e}"),
    }
    // A missing version suggests the installed ones.
    let e = cpvs(&["foo-3"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "no installed package matches 'foo-3'; did you mean one of \
         =app-misc/foo-1.0, =app-misc/foo-2.0-r1?"
    );
    // Nothing close at all.
    assert_eq!(
        cpvs(&["zzzzzz"]).unwrap_err().to_string(),
        "no installed package matches 'zzzzzz' (is it installed in this ROOT?)"
    );
    // Substring: "gtk" finds gtk+.
    match cpvs(&["gtk"]).unwrap_err() {
        AtomError::Unknown { suggestions, .. } => {
            assert_eq!(suggestions, ["x11-libs/gtk+"])
        }
        e => panic!("{e}"),
    }
    // Wrong category for an existing name.
    match cpvs(&["dev-lang/foo"]).unwrap_err() {
        AtomError::Unknown { suggestions, .. } => {
            assert!(
                suggestions.contains(&"app-misc/foo".to_string()),
                "{suggestions:?}"
            )
        }
        e => panic!("{e}"),
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

    #[test]
    fn any_text_never_panics(s in "\\PC{0,30}", t in "[=<>~!]{0,2}[a-z0-9+_./:*-]{0,20}") {
        for x in [&s, &t] {
            if let Ok(a) = x.parse::<Atom>() {
                let _ = resolve(&[a], &world());
            }
        }
    }
}

#[test]
fn edit_distance() {
    assert_eq!(levenshtein("", "abc"), 3);
    assert_eq!(levenshtein("kitten", "sitting"), 3);
    assert_eq!(levenshtein("perl", "perl"), 0);
}
