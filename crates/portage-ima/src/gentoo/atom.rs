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

use crate::gentoo::cpv::{split_pf, version_meant, Cpv};
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
    Invalid {
        /// The text given.
        atom: String,
        /// What about it is not an atom.
        reason: String,
    },
    /// Nothing installed matches.
    #[error("no installed package matches '{atom}'{}", did_you_mean(suggestions))]
    Unknown {
        /// The atom given.
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
        /// The bare name given.
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

    /// Does `cpv` satisfy the name and version parts (an atom without slot
    /// or repository, e.g. ima.toml's `skip`, needs nothing else)?
    pub fn matches_cpv(&self, cpv: &Cpv) -> bool {
        *cpv.package() == self.package
            && self.category.as_ref().is_none_or(|c| c == cpv.category())
            && self.matches_version_of(cpv)
    }

    fn matches_version(&self, pkg: &InstalledPackage) -> bool {
        self.matches_version_of(pkg.cpv())
    }

    fn matches_version_of(&self, cpv: &Cpv) -> bool {
        let Some((op, want)) = &self.version else {
            return true;
        };
        let have = cpv.version();
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
mod tests;
