//! Package versions (PMS 3.2) and their order (PMS 3.3).
//!
//! A version is `NUMBERS[LETTER][_SUFFIX[N]]...[-rN]`: `1.2.3`, `1.2b`,
//! `1.2_rc3_p4`, `1.0-r1`, `9999`. The parts are typed ([`Number`],
//! [`Suffix`], [`Revision`]) the way pkgcraft shapes them, but a
//! [`Number`] keeps its digits as written instead of a `u64`: PMS (and
//! Portage's `vercmp`) compares numbers of any length (dates such as
//! `20240101123000` and longer), and a later component with a leading zero
//! (`1.01`) compares as a string, which needs the zeros that were written.
//! `tests/gentoo_versions.rs` checks this order against Portage's own
//! `vercmp` on thousands of pairs.

use std::cmp::Ordering;
use std::fmt;

/// A run of ASCII digits, as written (`"007"` stays `"007"`).
///
/// Ordered as an unsigned integer of any length, so `01 == 1` and
/// `10 > 9`. The PMS rule that makes a *later* version component with a
/// leading zero compare as a string lives in [`Version`]'s ordering, which
/// is the only place it applies.
#[derive(Clone, Debug)]
pub struct Number(String);

impl Number {
    /// The digits as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when written with a leading `0` (`0` itself included).
    pub fn has_leading_zero(&self) -> bool {
        self.0.starts_with('0')
    }

    /// The digits without leading zeros (`""` for zero).
    fn significant(&self) -> &str {
        self.0.trim_start_matches('0')
    }
}

/// An absent number (`_p`, no `-r`) counts as zero.
fn cmp_or_zero(a: Option<&Number>, b: Option<&Number>) -> Ordering {
    fn digits(n: Option<&Number>) -> &str {
        n.map_or("", Number::significant)
    }
    let (a, b) = (digits(a), digits(b));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

impl Ord for Number {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_or_zero(Some(self), Some(other))
    }
}

eq_from_ord!(Number);

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kind of a version suffix, in PMS order:
/// `_alpha < _beta < _pre < _rc < (none) < _p`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SuffixKind {
    /// `_alpha`: the earliest pre-release.
    Alpha,
    /// `_beta`.
    Beta,
    /// `_pre`: pre-release.
    Pre,
    /// `_rc`: release candidate.
    Rc,
    /// `_p`: a patch level, later than the release itself.
    P,
}

impl SuffixKind {
    /// Longest first, so that `_pre` is not read as `_p` followed by `re`.
    const BY_LENGTH: [SuffixKind; 5] = [
        SuffixKind::Alpha,
        SuffixKind::Beta,
        SuffixKind::Pre,
        SuffixKind::Rc,
        SuffixKind::P,
    ];

    /// The name after the `_`.
    pub fn as_str(self) -> &'static str {
        match self {
            SuffixKind::Alpha => "alpha",
            SuffixKind::Beta => "beta",
            SuffixKind::Pre => "pre",
            SuffixKind::Rc => "rc",
            SuffixKind::P => "p",
        }
    }
}

/// One `_KIND[N]` suffix; a missing `N` equals `0`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suffix {
    /// Which suffix (`alpha`, ..., `p`).
    pub kind: SuffixKind,
    /// The digits after the kind, as written; `None` when there are none.
    pub number: Option<Number>,
}

impl Suffix {
    fn cmp(&self, other: &Suffix) -> Ordering {
        self.kind
            .cmp(&other.kind)
            .then_with(|| cmp_or_zero(self.number.as_ref(), other.number.as_ref()))
    }
}

/// The `-rN` revision; none equals `-r0`.
#[derive(Clone, Debug, Default)]
pub struct Revision(Option<Number>);

impl Revision {
    /// The number as written, `""` when the version has no `-r`.
    pub fn as_str(&self) -> &str {
        self.0.as_ref().map_or("", Number::as_str)
    }

    /// True when the version has no `-r` (not when it has `-r0`).
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

impl Ord for Revision {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_or_zero(self.0.as_ref(), other.0.as_ref())
    }
}

eq_from_ord!(Revision);

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a text is not a version.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid version '{version}': {reason}")]
pub struct VersionError {
    /// The text as given.
    pub version: String,
    /// What is wrong with it, in words.
    pub reason: String,
}

/// A package version (PMS 3.2), with its revision.
///
/// Equality is PMS equality (`1.0 == 1.00`, `1 == 1-r0`), not string
/// equality; [`Version::as_str`] gives the text as written.
#[derive(Clone, Debug)]
pub struct Version {
    raw: String,
    numbers: Vec<Number>,
    letter: Option<char>,
    suffixes: Vec<Suffix>,
    revision: Revision,
}

/// Reads a version left to right, remembering how far it got for the
/// error message.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl Cursor<'_> {
    fn rest(&self) -> &str {
        &self.text[self.at..]
    }

    fn eat(&mut self, prefix: &str) -> bool {
        let found = self.rest().starts_with(prefix);
        if found {
            self.at += prefix.len();
        }
        found
    }

    fn number(&mut self) -> Option<Number> {
        let len = self.rest().bytes().take_while(u8::is_ascii_digit).count();
        let digits = self.rest()[..len].to_string();
        self.at += len;
        (len > 0).then_some(Number(digits))
    }
}

impl Version {
    /// Parses `PV` or `PVR` (an optional `-rN` revision); the error says
    /// which part is wrong.
    pub fn parse(s: &str) -> Result<Version, VersionError> {
        let fail = |reason: String| VersionError {
            version: s.to_string(),
            reason,
        };
        let mut c = Cursor { text: s, at: 0 };
        let Some(first) = c.number() else {
            return Err(fail(if s.is_empty() {
                "empty (expected a number such as 1.2.3)".into()
            } else {
                "must start with a number (as in 1.2.3)".into()
            }));
        };
        let mut numbers = vec![first];
        while c.eat(".") {
            numbers.push(
                c.number()
                    .ok_or_else(|| fail("a '.' must be followed by a number".into()))?,
            );
        }
        let letter = c.rest().chars().next().filter(char::is_ascii_lowercase);
        c.at += letter.map_or(0, char::len_utf8);
        let mut suffixes = Vec::new();
        while c.eat("_") {
            let kind = SuffixKind::BY_LENGTH
                .into_iter()
                .find(|k| c.rest().starts_with(k.as_str()))
                .ok_or_else(|| {
                    let name = c.rest().split(['_', '-']).next().unwrap_or_default();
                    fail(format!(
                        "unknown suffix '_{name}' (expected _alpha, _beta, _pre, _rc or _p)"
                    ))
                })?;
            c.at += kind.as_str().len();
            let number = c.number();
            suffixes.push(Suffix { kind, number });
        }
        let mut revision = Revision::default();
        if c.eat("-r") {
            revision = Revision(Some(c.number().ok_or_else(|| {
                fail("'-r' must be followed by the revision number".into())
            })?));
            if !c.rest().is_empty() {
                return Err(fail(format!(
                    "nothing may follow the revision, found '{}'",
                    c.rest()
                )));
            }
        }
        if !c.rest().is_empty() {
            return Err(fail(format!(
                "unexpected '{}' after '{}' (expected .N, one lowercase letter, _SUFFIX or -rN)",
                c.rest(),
                &s[..c.at]
            )));
        }
        Ok(Version {
            raw: s.to_string(),
            numbers,
            letter,
            suffixes,
            revision,
        })
    }

    /// The version as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The numeric components (`1`, `2`, `3` of `1.2.3b`).
    pub fn numbers(&self) -> &[Number] {
        &self.numbers
    }

    /// The letter after the numbers (`b` of `1.2.3b`).
    pub fn letter(&self) -> Option<char> {
        self.letter
    }

    /// The suffixes, in order.
    pub fn suffixes(&self) -> &[Suffix] {
        &self.suffixes
    }

    /// The revision (empty when there is none, which equals `-r0`).
    pub fn revision(&self) -> &Revision {
        &self.revision
    }

    /// The version without its revision (`PV`).
    pub fn pv(&self) -> &str {
        match self.raw.rfind("-r") {
            Some(i) if !self.revision.is_empty() => &self.raw[..i],
            _ => &self.raw,
        }
    }

    /// Compares everything but the revision (the `~` operator).
    pub fn cmp_ignoring_revision(&self, other: &Version) -> Ordering {
        for (i, (a, b)) in self.numbers.iter().zip(&other.numbers).enumerate() {
            match cmp_component(i, a, b) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        self.numbers
            .len()
            .cmp(&other.numbers.len())
            .then_with(|| self.letter.cmp(&other.letter))
            .then_with(|| cmp_suffixes(&self.suffixes, &other.suffixes))
    }

    /// Matches `=PKG-VER*`: every component written in `self` (the pattern)
    /// equals the corresponding one of `other`; components `self` does not
    /// write are wildcards. So `1.2*` matches `1.2`, `1.2.3`, `1.2_rc1`, but
    /// not `1.20` (PMS 8.3.1).
    pub fn glob_matches(&self, other: &Version) -> bool {
        if other.numbers.len() < self.numbers.len() {
            return false;
        }
        let numbers_eq = self
            .numbers
            .iter()
            .zip(&other.numbers)
            .enumerate()
            .all(|(i, (a, b))| cmp_component(i, a, b) == Ordering::Equal);
        if !numbers_eq {
            return false;
        }
        if self.letter.is_some() && self.letter != other.letter {
            return false;
        }
        if other.suffixes.len() < self.suffixes.len()
            || self
                .suffixes
                .iter()
                .zip(&other.suffixes)
                .any(|(a, b)| a.cmp(b) != Ordering::Equal)
        {
            return false;
        }
        self.revision.is_empty() || self.revision == other.revision
    }
}

/// PMS 3.3: the first number is an integer; a later one with a leading zero
/// in either version compares as a string with trailing zeros stripped.
fn cmp_component(i: usize, a: &Number, b: &Number) -> Ordering {
    if i > 0 && (a.has_leading_zero() || b.has_leading_zero()) {
        a.as_str()
            .trim_end_matches('0')
            .cmp(b.as_str().trim_end_matches('0'))
    } else {
        a.cmp(b)
    }
}

/// Suffix lists pairwise; then the longer list wins if its next suffix is
/// `_p`, else loses (`1_rc1 < 1 < 1_p1`).
fn cmp_suffixes(a: &[Suffix], b: &[Suffix]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        match x.cmp(y) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    let n = a.len().min(b.len());
    match (a.get(n), b.get(n)) {
        (Some(s), None) if s.kind == SuffixKind::P => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (None, Some(s)) if s.kind == SuffixKind::P => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.cmp_ignoring_revision(other)
            .then_with(|| self.revision.cmp(&other.revision))
    }
}

eq_from_ord!(Version);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl std::str::FromStr for Version {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Version, VersionError> {
        Version::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn version_syntax() {
        for ok in [
            "1",
            "1.2.3",
            "1.2b",
            "1.2_rc3_p4",
            "1.0-r1",
            "9999",
            "0.0.0_alpha_beta2_pre_rc_p1-r10",
            "20240101",
            "1.2.3_p20231201",
            "1_pre",
            "5.38.2-r3",
        ] {
            assert_eq!(v(ok).as_str(), ok);
        }
        for bad in [
            "", "a", "1.", ".1", "1..2", "1.2B", "1.2ab", "1_foo", "1_", "1-r", "1-r1a", "1-1",
            "1_p-r", "1.2-", "v1", "1 ", "1_rc1.2", "１",
        ] {
            assert!(Version::parse(bad).is_err(), "{bad:?} should not parse");
        }
        assert_eq!(v("1.0-r1").pv(), "1.0");
        assert_eq!(v("1.0-r1").revision().as_str(), "1");
        assert_eq!(v("1.0").pv(), "1.0");
        assert!(v("1.0").revision().is_empty());
        assert!(!v("1.0-r0").revision().is_empty());
        let parts = v("1.02b_rc3_p-r4");
        let numbers: Vec<&str> = parts.numbers().iter().map(Number::as_str).collect();
        assert_eq!(numbers, ["1", "02"]);
        assert_eq!(parts.letter(), Some('b'));
        let kinds: Vec<SuffixKind> = parts.suffixes().iter().map(|s| s.kind).collect();
        assert_eq!(kinds, [SuffixKind::Rc, SuffixKind::P]);
        assert_eq!(parts.suffixes()[1].number, None);
    }

    #[test]
    fn parse_errors_say_why() {
        for (bad, why) in [
            ("", "empty"),
            ("v1", "must start with a number"),
            ("1.", "'.' must be followed by a number"),
            ("1..2", "'.' must be followed by a number"),
            ("1_foo", "unknown suffix '_foo'"),
            ("1_rc_x-r1", "unknown suffix '_x'"),
            ("1-r", "'-r' must be followed by the revision number"),
            ("1-r1a", "nothing may follow the revision, found 'a'"),
            ("1.2B", "unexpected 'B' after '1.2'"),
            ("1.2ab", "unexpected 'b' after '1.2a'"),
            ("1-1", "unexpected '-1' after '1'"),
        ] {
            let e = Version::parse(bad).unwrap_err();
            assert_eq!(e.version, bad);
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("invalid version '{bad}': ")) && msg.contains(why),
                "{bad:?}: {msg}"
            );
        }
    }

    #[test]
    fn version_order() {
        // Each strictly less than the next (PMS 3.3 examples and corners).
        let chain = [
            "0.9",
            "1_alpha",
            "1_alpha1",
            "1_beta",
            "1_pre",
            "1_rc",
            "1_rc1_alpha",
            "1_rc1",
            "1_rc1_p1",
            "1",
            "1-r1",
            "1-r2",
            "1-r10",
            "1_p1",
            "1a",
            "1b_p1",
            "1.01",
            "1.1",
            "1.1.0",
            "1.2",
            "1.10",
            "2",
            "9999",
            "20240101",
            "123456789012345678901234567890",
        ];
        for w in chain.windows(2) {
            assert!(v(w[0]) < v(w[1]), "{} < {}", w[0], w[1]);
            assert!(v(w[1]) > v(w[0]), "{} > {}", w[1], w[0]);
        }
        // PMS equalities that are not string equalities.
        for (a, b) in [
            ("1.0", "1.00"),
            ("1", "1-r0"),
            ("1_p", "1_p0"),
            ("01", "1"),
            ("1.010", "1.01"),
        ] {
            assert_eq!(v(a), v(b), "{a} == {b}");
        }
        // A leading zero makes it a string comparison.
        assert!(v("1.001") < v("1.01"));
        assert!(v("1.09") < v("1.1"));
        assert_eq!(
            v("1.2-r3").cmp_ignoring_revision(&v("1.2")),
            Ordering::Equal
        );
    }

    #[test]
    fn glob_match() {
        let pat = v("1.2");
        for yes in ["1.2", "1.2.3", "1.2_rc1", "1.2b", "1.2-r3"] {
            assert!(pat.glob_matches(&v(yes)), "1.2* ~ {yes}");
        }
        for no in ["1.20", "1.02", "1", "1.3", "2.2"] {
            assert!(!pat.glob_matches(&v(no)), "1.2* !~ {no}");
        }
        assert!(v("1.2_rc").glob_matches(&v("1.2_rc0_p1")));
        assert!(!v("1.2-r1").glob_matches(&v("1.2-r2")));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

        #[test]
        fn any_text_never_panics(s in "\\PC{0,24}", t in "[0-9a-z._+-]{0,16}") {
            for x in [&s, &t] {
                if let Ok(v) = Version::parse(x) {
                    proptest::prop_assert_eq!(v.as_str(), x.as_str());
                    let _ = v.pv();
                }
            }
        }
    }
}
