//! Package atoms as users type them on the command line, resolved against
//! the installed packages.
//!
//! Accepted forms (a subset of PMS 8.3 package dependency specifications,
//! plus the unprefixed versions `equery` users are used to):
//!
//! | typed                   | selects                                           |
//! |-------------------------|---------------------------------------------------|
//! | `foo`                   | every installed version of `*/foo` (one category) |
//! | `app-misc/foo`          | every installed version of `app-misc/foo`         |
//! | `foo-1.2`, `app-misc/foo-1.2` | version 1.2 (same as `=`; `1.2` == `1.2-r0`) |
//! | `=app-misc/foo-1.2-r1`  | exactly that version                              |
//! | `=app-misc/foo-1.2*`    | 1.2, 1.2.3, 1.2_rc1 ... (not 1.20)                |
//! | `~app-misc/foo-1.2`     | 1.2 with any revision                             |
//! | `>=`, `>`, `<=`, `<`    | the usual version comparisons                     |
//! | `...:SLOT`, `...:SLOT/SUB` | only versions installed in that slot           |
//! | `...::REPO`             | only packages installed from that repository      |
//!
//! A name without a version never means a package *named* `foo-1.2`: PMS
//! forbids names ending in `-VERSION`, so `foo-1.2` is always `foo` at 1.2.
//!
//! A name that matches several installed versions (slots) selects all of
//! them: "sign foo" means every `foo` on the system. The same name in two
//! categories is ambiguous and an error listing them. USE dependencies
//! and blockers are refused with an error saying so.

use std::fmt;
use std::str::FromStr;

use crate::gentoo::cpv::{split_pf, version_meant};
use crate::gentoo::names::{Category, PackageName, RepoName, Slot};
use crate::gentoo::vdb::InstalledPackage;
use crate::gentoo::version::Version;

/// A version operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Less,
    /// `<=`
    LessOrEqual,
    /// `=` (also an unprefixed version)
    Equal,
    /// `=...*`
    EqualGlob,
    /// `~`: equal ignoring the revision
    Approx,
    /// `>=`
    GreaterOrEqual,
    /// `>`
    Greater,
}

/// A parsed atom; see the module documentation for the forms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Atom {
    raw: String,
    category: Option<Category>,
    package: PackageName,
    version: Option<(Op, Version)>,
    slot: Option<Slot>,
    repo: Option<RepoName>,
}

/// Why atoms could not be parsed or resolved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AtomError {
    /// Not an atom at all.
    #[error("invalid atom '{atom}': {reason}")]
    Invalid { atom: String, reason: String },
    /// Nothing installed matches.
    #[error("no installed package matches '{atom}'{}", did_you_mean(suggestions))]
    Unknown {
        atom: String,
        /// Close installed names, or the installed versions when only the
        /// version did not match; best first.
        suggestions: Vec<String>,
    },
    /// A bare name installed in several categories.
    #[error(
        "'{atom}' is ambiguous: installed as {}; write the category too",
        candidates.join(", ")
    )]
    Ambiguous {
        atom: String,
        /// The `category/pn` that match, sorted.
        candidates: Vec<String>,
    },
}

fn did_you_mean(s: &[String]) -> String {
    match s {
        [] => " (is it installed in this ROOT?)".to_string(),
        [one] => format!("; did you mean {one}?"),
        more => format!("; did you mean one of {}?", more.join(", ")),
    }
}

impl Atom {
    /// The atom as typed.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The category, when given.
    pub fn category(&self) -> Option<&Category> {
        self.category.as_ref()
    }

    /// The package name.
    pub fn package(&self) -> &PackageName {
        &self.package
    }

    /// The version restriction, when given.
    pub fn version(&self) -> Option<(Op, &Version)> {
        self.version.as_ref().map(|(op, v)| (*op, v))
    }

    /// The slot restriction (`SLOT` or `SLOT/SUBSLOT`), when given.
    pub fn slot(&self) -> Option<&Slot> {
        self.slot.as_ref()
    }

    /// The repository restriction (`::REPO`), when given.
    pub fn repo(&self) -> Option<&RepoName> {
        self.repo.as_ref()
    }

    /// Does the installed package satisfy the atom? Reads the package's
    /// `SLOT` and `repository` files when the atom restricts them.
    pub fn matches(&self, pkg: &InstalledPackage) -> bool {
        self.matches_name(pkg)
            && self.matches_version(pkg)
            && self.matches_slot(pkg)
            && self
                .repo
                .as_ref()
                .is_none_or(|r| pkg.repository().as_ref() == Some(r))
    }

    fn matches_name(&self, pkg: &InstalledPackage) -> bool {
        let cpv = pkg.cpv();
        *cpv.package() == self.package && self.category.as_ref().is_none_or(|c| c == cpv.category())
    }

    fn matches_version(&self, pkg: &InstalledPackage) -> bool {
        let Some((op, want)) = &self.version else {
            return true;
        };
        let have = pkg.cpv().version();
        match op {
            Op::Less => have < want,
            Op::LessOrEqual => have <= want,
            Op::Equal => have == want,
            Op::EqualGlob => want.glob_matches(have),
            Op::Approx => have.cmp_ignoring_revision(want).is_eq(),
            Op::GreaterOrEqual => have >= want,
            Op::Greater => have > want,
        }
    }

    fn matches_slot(&self, pkg: &InstalledPackage) -> bool {
        self.slot
            .as_ref()
            .is_none_or(|want| pkg.slot().is_some_and(|have| want.matches(&have)))
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl FromStr for Atom {
    type Err = AtomError;

    fn from_str(s: &str) -> Result<Atom, AtomError> {
        let bad = |reason: &str| AtomError::Invalid {
            atom: s.to_string(),
            reason: reason.to_string(),
        };
        let t = s.trim();
        if t.is_empty() {
            return Err(bad("empty"));
        }
        if t.starts_with('!') {
            return Err(bad("blockers (!) select nothing to sign"));
        }
        if t.contains('[') {
            return Err(bad("USE dependencies ([...]) are not supported here"));
        }
        if t.chars().any(char::is_whitespace) {
            return Err(bad("contains whitespace (one atom per argument)"));
        }
        // `::repo` comes last (after any `:slot`).
        let (t_norepo, repo) = match t.split_once("::") {
            Some((r, repo)) => {
                let repo = RepoName::parse(repo).map_err(|e| {
                    bad(&format!(
                        "bad repository name '{repo}' in ::REPO: {}",
                        e.reason
                    ))
                })?;
                (r, Some(repo))
            }
            None => (t, None),
        };

        let (op, rest) = [
            (">=", Op::GreaterOrEqual),
            ("<=", Op::LessOrEqual),
            (">", Op::Greater),
            ("<", Op::Less),
            ("=", Op::Equal),
            ("~", Op::Approx),
        ]
        .into_iter()
        .find_map(|(p, op)| t_norepo.strip_prefix(p).map(|r| (Some(op), r)))
        .unwrap_or((None, t_norepo));

        let (rest, slot) = match rest.split_once(':') {
            Some((r, slot)) => {
                let slot = Slot::parse(slot).map_err(|e| {
                    bad(&format!(
                        "bad slot '{slot}': {} (expected :SLOT or :SLOT/SUBSLOT)",
                        e.reason
                    ))
                })?;
                (r, Some(slot))
            }
            None => (rest, None),
        };

        let (rest, glob) = match rest.strip_suffix('*') {
            Some(r) if op == Some(Op::Equal) => (r, true),
            Some(_) => return Err(bad("a trailing * needs the = operator (=cat/pkg-1.2*)")),
            None => (rest, false),
        };

        let (category, name) = match rest.split_once('/') {
            Some((c, n)) => {
                let category = Category::parse(c).map_err(|e| bad(&e.to_string()))?;
                if n.contains('/') {
                    return Err(bad("more than one '/'"));
                }
                (Some(category), n)
            }
            None => (None, rest),
        };

        let (package, version) = match split_pf(name) {
            Ok((package, v)) => {
                let op = match op {
                    Some(Op::Equal) if glob => Op::EqualGlob,
                    Some(Op::Approx) if !v.revision().is_empty() => {
                        return Err(bad("~ matches any revision: drop the -rN"))
                    }
                    Some(op) => op,
                    None => Op::Equal,
                };
                (package, Some((op, v)))
            }
            Err(not_versioned) => {
                // Explain the version when one was meant (`foo-1.2B`),
                // else the name (`foo.bar`).
                let package = PackageName::parse(name).map_err(|e| {
                    let reason = if version_meant(name).is_some() {
                        not_versioned.reason
                    } else {
                        e.reason
                    };
                    bad(&format!(
                        "'{name}' is neither a package name nor NAME-VERSION: {reason}"
                    ))
                })?;
                if op.is_some() {
                    return Err(bad(&format!(
                        "an operator needs a version, as in ={}-1.0",
                        rest
                    )));
                }
                (package, None)
            }
        };

        Ok(Atom {
            raw: t.to_string(),
            category,
            package,
            version,
            slot,
            repo,
        })
    }
}

/// Resolves atoms to installed packages, in the order the atoms were
/// given, without duplicates (a package selected by two atoms appears
/// once, where it was first selected).
///
/// Every atom must select at least one package: nothing matching is
/// [`AtomError::Unknown`] with close suggestions, a bare name found in
/// several categories is [`AtomError::Ambiguous`]. A name that matches
/// several installed versions (slots) of one package selects all of them.
pub fn resolve(
    atoms: &[Atom],
    installed: &[InstalledPackage],
) -> Result<Vec<InstalledPackage>, AtomError> {
    let mut out: Vec<InstalledPackage> = Vec::new();
    for atom in atoms {
        let mut hits: Vec<&InstalledPackage> =
            installed.iter().filter(|p| atom.matches(p)).collect();
        if hits.is_empty() {
            return Err(AtomError::Unknown {
                atom: atom.raw.clone(),
                suggestions: suggest(atom, installed),
            });
        }
        let mut cats: Vec<String> = hits.iter().map(|p| p.cpv().cpn()).collect();
        cats.sort();
        cats.dedup();
        if cats.len() > 1 {
            return Err(AtomError::Ambiguous {
                atom: atom.raw.clone(),
                candidates: cats,
            });
        }
        hits.sort();
        for p in hits {
            if !out.iter().any(|q| q.dir() == p.dir()) {
                out.push(p.clone());
            }
        }
    }
    Ok(out)
}

/// Up to five suggestions: the installed versions when the name exists,
/// else installed names close to the one typed (edit distance, or one
/// containing the other).
fn suggest(atom: &Atom, installed: &[InstalledPackage]) -> Vec<String> {
    let same_name: Vec<&InstalledPackage> =
        installed.iter().filter(|p| atom.matches_name(p)).collect();
    if !same_name.is_empty() {
        let mut v: Vec<&InstalledPackage> = same_name;
        v.sort();
        return v.iter().take(5).map(|p| format!("={}", p.cpv())).collect();
    }
    let want = atom.package.as_str().to_ascii_lowercase();
    let limit = (want.chars().count() / 3).max(1);
    let mut scored: Vec<(usize, String)> = Vec::new();
    for p in installed {
        let have = p.cpv().package().as_str().to_ascii_lowercase();
        let d = levenshtein(&want, &have);
        let contains = want.len() >= 3 && (have.contains(&want) || want.contains(&have));
        if d <= limit || contains {
            let cp = p.cpv().cpn();
            if !scored.iter().any(|(_, s)| *s == cp) {
                scored.push((if d <= limit { d } else { limit + 1 }, cp));
            }
        }
    }
    scored.sort();
    scored.into_iter().take(5).map(|(_, s)| s).collect()
}

/// Edit distance between two short strings.
fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
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
}
