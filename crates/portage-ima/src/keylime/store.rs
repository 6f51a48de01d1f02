//! The state beside the policy, kept so that one package's update costs
//! what that package costs, not what the system holds:
//!
//! - `<policy>.state/CATEGORY:PF`, one small file per package: the
//!   (path, digest) pairs it gave the policy, sorted, each once
//!   (`portage-ima keylime package 1`, then `PATH\0DIGEST` lines). A
//!   package with no file in the policy has the header only. `:` is in no
//!   category or package name; names starting with `.` (temporary files)
//!   are not packages.
//! - `<policy>.index`: how many package files there are, what the policy's
//!   `digests` object is (its length and how many paths it names), and how
//!   many packages give each pair that more than one package gives
//!   (`COUNT\0PATH\0DIGEST` lines).
//!
//! An update reads the policy it wrote last and splices the `digests`
//! object: the entries of the paths the update touches are rewritten, the
//! runs between them are copied as they are ([`splice`]). A pair leaves a
//! path only when no other package still gives it, which the index's
//! counts say.
//!
//! The index is also the mark that the state and the policy agree: an
//! update deletes it (synced) before it changes a package file and writes
//! it again once the package files and the policy are synced. An update
//! that finds no index (a crash or a kill before the end, a first run, the
//! earlier one-file state), or a policy or a package count that is not
//! what the index says, rebuilds the policy from the package files, which
//! digests nothing but the packages whose file is missing or damaged.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

const PACKAGE_HEADER: &[u8] = b"portage-ima keylime package 1\n";
const INDEX_HEADER: &[u8] = b"portage-ima keylime index 1\n";

/// One package's (path, digest) pairs, sorted, each once.
pub type Pairs = Vec<(String, String)>;

/// The file name of `cpv` in the state directory.
pub fn package_file_name(cpv: &str) -> String {
    cpv.replacen('/', ":", 1)
}

/// The `CATEGORY/PF` of a state file name (`None` for anything else).
pub fn package_of_file_name(name: &str) -> Option<String> {
    if name.starts_with('.') {
        return None;
    }
    let (cat, pf) = name.split_once(':')?;
    (!cat.is_empty() && !pf.is_empty() && !pf.contains(':')).then(|| format!("{cat}/{pf}"))
}

/// The packages the state directory holds (none when it does not exist).
pub fn list_packages(dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        if let Some(cpv) = entry.file_name().to_str().and_then(package_of_file_name) {
            out.push(cpv);
        }
    }
    Ok(out)
}

/// A package file's bytes.
pub fn package_bytes(pairs: &Pairs) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        PACKAGE_HEADER.len()
            + pairs
                .iter()
                .map(|(p, d)| p.len() + d.len() + 2)
                .sum::<usize>(),
    );
    out.extend_from_slice(PACKAGE_HEADER);
    for (path, digest) in pairs {
        out.extend_from_slice(path.as_bytes());
        out.push(0);
        out.extend_from_slice(digest.as_bytes());
        out.push(b'\n');
    }
    out
}

/// Reads a package file: `None` when it is missing, an error when it is
/// damaged.
pub fn read_package(path: &Path) -> Result<Option<Pairs>> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    parse_package(&data)
        .map(Some)
        .with_context(|| format!("{} is damaged", path.display()))
}

fn parse_package(data: &[u8]) -> Result<Pairs> {
    let Some(body) = data.strip_prefix(PACKAGE_HEADER) else {
        bail!("not a package state file");
    };
    if !body.is_empty() && !body.ends_with(b"\n") {
        bail!("the last line is cut short");
    }
    let mut pairs = Vec::new();
    for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let mut f = line.splitn(2, |&b| b == 0);
        let (Some(path), Some(digest)) = (f.next(), f.next()) else {
            bail!("a line is not PATH\\0DIGEST");
        };
        pairs.push((
            String::from_utf8(path.to_vec())?,
            String::from_utf8(digest.to_vec())?,
        ));
    }
    Ok(pairs)
}

/// `<policy>.index`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Index {
    /// How many package files there are (one removed by hand makes the
    /// next update rebuild).
    pub packages: usize,
    /// The length of the policy's `digests` object, and how many paths it
    /// names; `None`: the policy holds no digests (`mode = "keys"`), so it
    /// cannot be spliced.
    pub digests: Option<(usize, usize)>,
    /// How many packages give each pair more than one package gives.
    pub shared: HashMap<(String, String), u32>,
}

impl Index {
    /// `None` when it is missing or damaged (the update then rebuilds).
    pub fn read(path: &Path) -> Option<Index> {
        let data = std::fs::read(path).ok()?;
        Index::parse(&data)
    }

    fn parse(data: &[u8]) -> Option<Index> {
        let body = data.strip_prefix(INDEX_HEADER)?;
        let text = std::str::from_utf8(body).ok()?;
        if !text.ends_with('\n') {
            return None;
        }
        let mut lines = text.lines();
        let packages = lines.next()?.strip_prefix("packages ")?.parse().ok()?;
        let mut first = lines.next()?.split(' ');
        let digests = match (first.next()?, first.next(), first.next()) {
            ("digests", Some(len), Some(paths)) => Some((len.parse().ok()?, paths.parse().ok()?)),
            ("keys", None, None) => None,
            _ => return None,
        };
        let mut shared = HashMap::new();
        for line in lines {
            let mut f = line.splitn(3, '\0');
            let count = f.next()?.parse().ok()?;
            shared.insert((f.next()?.to_string(), f.next()?.to_string()), count);
        }
        Some(Index {
            packages,
            digests,
            shared,
        })
    }

    /// The index file's bytes, as [`Index::read`] parses them.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = INDEX_HEADER.to_vec();
        out.extend_from_slice(format!("packages {}\n", self.packages).as_bytes());
        match self.digests {
            Some((len, paths)) => {
                out.extend_from_slice(format!("digests {len} {paths}\n").as_bytes())
            }
            None => out.extend_from_slice(b"keys\n"),
        }
        let mut shared: Vec<_> = self.shared.iter().collect();
        shared.sort_unstable();
        for ((path, digest), count) in shared {
            out.extend_from_slice(format!("{count}\0{path}\0{digest}\n").as_bytes());
        }
        out
    }
}

/// The `digests` object of a policy this module wrote: where it is, and
/// where each entry is in it.
pub struct Digests<'a> {
    /// The object, `{` to `}`.
    pub object: &'a [u8],
    /// Each entry: the start of its key (its `"`), the end of its key
    /// (after the `"`), and its end (after the `]`), in `object`.
    entries: Vec<(usize, usize, usize)>,
}

impl<'a> Digests<'a> {
    /// The empty object (a first build, a rebuild).
    pub fn empty() -> Digests<'static> {
        Digests {
            object: b"{}",
            entries: Vec::new(),
        }
    }

    /// Finds the `digests` object in a serialized policy and its entries.
    /// An error for anything but what [`splice`] writes.
    pub fn find(policy: &'a [u8]) -> Result<Digests<'a>> {
        const FIELD: &[u8] = b"\"digests\":{";
        let start = memchr::memmem::find(policy, FIELD)
            .context("the policy has no digests field")?
            + FIELD.len()
            - 1;
        let text = &policy[start..];
        let mut entries = Vec::new();
        let mut at = 1;
        let byte = |at: usize| text.get(at).copied().context("the digests are cut short");
        if byte(at)? != b'}' {
            loop {
                if byte(at)? != b'"' {
                    bail!("a digests key does not start at {}", start + at);
                }
                let key = at;
                at += 1;
                loop {
                    at += memchr::memchr2(b'"', b'\\', &text[at..])
                        .context("the digests are cut short")?;
                    match text[at] {
                        b'\\' => at += 2,
                        _ => break,
                    }
                }
                at += 1;
                let key_end = at;
                if text.get(at..at + 2) != Some(b":[") {
                    bail!("a digests entry has no list at {}", start + at);
                }
                at += memchr::memchr(b']', &text[at..]).context("the digests are cut short")? + 1;
                entries.push((key, key_end, at));
                match byte(at)? {
                    b',' => at += 1,
                    b'}' => break,
                    _ => bail!("unexpected byte in the digests at {}", start + at),
                }
            }
        }
        Ok(Digests {
            object: &text[..=at],
            entries,
        })
    }

    /// How many paths the object names.
    pub fn paths(&self) -> usize {
        self.entries.len()
    }

    /// An entry's path (unescaped only when it holds an escape).
    fn key(&self, i: usize) -> Cow<'a, [u8]> {
        let (start, end, _) = self.entries[i];
        let raw = &self.object[start + 1..end - 1];
        if raw.contains(&b'\\') {
            let s: String = serde_json::from_slice(&self.object[start..end]).unwrap_or_default();
            Cow::Owned(s.into_bytes())
        } else {
            Cow::Borrowed(raw)
        }
    }

    /// The first entry at or after `from` whose path is not below `path`.
    fn seek(&self, from: usize, path: &[u8]) -> usize {
        let (mut lo, mut hi) = (from, self.entries.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.key(mid).as_ref() < path {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The digests listed for `path`.
    pub fn get(&self, path: &str) -> Vec<String> {
        let i = self.seek(0, path.as_bytes());
        if i == self.entries.len() || self.key(i).as_ref() != path.as_bytes() {
            return Vec::new();
        }
        let (_, key_end, end) = self.entries[i];
        let list = &self.object[key_end + 2..end - 1];
        list.split(|&b| b == b',')
            .filter(|d| d.len() >= 2)
            .map(|d| String::from_utf8_lossy(&d[1..d.len() - 1]).into_owned())
            .collect()
    }
}

/// The `digests` object `base` becomes with the entries of `touched`
/// replaced (an empty list takes the path out), and how many paths it
/// names. Entries `touched` does not name are copied as they are.
pub fn splice(base: &Digests, touched: &BTreeMap<String, Vec<String>>) -> (Vec<u8>, usize) {
    let extra: usize = touched
        .iter()
        .map(|(p, d)| p.len() + 8 + d.iter().map(|d| d.len() + 3).sum::<usize>())
        .sum();
    let mut out = Vec::with_capacity(base.object.len() + extra);
    out.push(b'{');
    let mut paths = 0;
    // The untouched entries `from..to`, copied in one piece.
    let copy = |out: &mut Vec<u8>, from: usize, to: usize| {
        if to > from {
            if out.len() > 1 {
                out.push(b',');
            }
            out.extend_from_slice(&base.object[base.entries[from].0..base.entries[to - 1].2]);
        }
        to.saturating_sub(from)
    };
    let mut at = 0;
    for (path, digests) in touched {
        let to = base.seek(at, path.as_bytes());
        paths += copy(&mut out, at, to);
        at = to;
        if at < base.entries.len() && base.key(at).as_ref() == path.as_bytes() {
            at += 1;
        }
        if digests.is_empty() {
            continue;
        }
        if out.len() > 1 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, path).expect("writing to memory");
        out.extend_from_slice(b":[");
        for (n, d) in digests.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(d.as_bytes());
            out.push(b'"');
        }
        out.push(b']');
        paths += 1;
    }
    paths += copy(&mut out, at, base.entries.len());
    out.push(b'}');
    (out, paths)
}

/// The pairs each package takes out and puts in, applied to `base`'s
/// lists with the index's counts: the entries to rewrite. A path's
/// digests are sorted.
pub fn apply(
    base: &Digests,
    shared: &mut HashMap<(String, String), u32>,
    removed: impl IntoIterator<Item = (String, String)>,
    added: impl IntoIterator<Item = (String, String)>,
) -> BTreeMap<String, Vec<String>> {
    let mut touched: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let list = |touched: &mut BTreeMap<String, Vec<String>>, path: &String| {
        if !touched.contains_key(path) {
            touched.insert(path.clone(), base.get(path));
        }
    };
    for (path, digest) in removed {
        list(&mut touched, &path);
        let digests = touched.get_mut(&path).expect("just inserted");
        let key = (path, digest);
        match shared.get_mut(&key) {
            Some(count) if *count > 2 => *count -= 1,
            Some(_) => {
                shared.remove(&key);
            }
            None => digests.retain(|d| *d != key.1),
        }
    }
    for (path, digest) in added {
        list(&mut touched, &path);
        let digests = touched.get_mut(&path).expect("just inserted");
        if digests.contains(&digest) {
            *shared.entry((path, digest)).or_insert(1) += 1;
        } else {
            digests.push(digest);
        }
    }
    for digests in touched.values_mut() {
        digests.sort_unstable();
    }
    touched
}

/// `<policy>.state`.
pub fn state_dir(policy: &Path) -> PathBuf {
    let mut name = policy.as_os_str().to_os_string();
    name.push(".state");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(p, d)| (p.to_string(), d.to_string()))
            .collect()
    }

    fn wrap(object: &[u8]) -> Vec<u8> {
        let mut policy = br#"{"meta":{"version":1},"release":0,"digests":"#.to_vec();
        policy.extend_from_slice(object);
        policy.extend_from_slice(br#","excludes":[],"verification-keys":""}"#);
        policy
    }

    /// The object a whole rebuild gives for `packages`.
    fn rebuilt(packages: &[Vec<(String, String)>]) -> (Vec<u8>, HashMap<(String, String), u32>) {
        let mut shared = HashMap::new();
        let touched = apply(
            &Digests::empty(),
            &mut shared,
            Vec::new(),
            packages.iter().flatten().cloned(),
        );
        (splice(&Digests::empty(), &touched).0, shared)
    }

    #[test]
    fn splicing_equals_rebuilding() {
        let a = pairs(&[
            ("/usr/bin/a", "aa"),
            ("/usr/bin/shared", "ss"),
            ("/bin/a", "aa"),
        ]);
        let b = pairs(&[("/usr/bin/b \"q\"", "bb"), ("/usr/bin/shared", "ss")]);
        let c = pairs(&[
            ("/usr/bin/shared", "s2"),
            ("/usr/lib/c", "cc"),
            ("/0", "00"),
        ]);
        let (object, mut shared) = rebuilt(&[a.clone(), b.clone()]);
        assert_eq!(shared.len(), 1);
        let v: serde_json::Value = serde_json::from_slice(&object).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"/bin/a": ["aa"], "/usr/bin/a": ["aa"],
                "/usr/bin/b \"q\"": ["bb"], "/usr/bin/shared": ["ss"]})
        );
        // a out, c in.
        let policy = wrap(&object);
        let base = Digests::find(&policy).unwrap();
        assert_eq!((base.object, base.paths()), (object.as_slice(), 4));
        let touched = apply(&base, &mut shared, a.clone(), c.clone());
        let (spliced, paths) = splice(&base, &touched);
        let (expected, expected_shared) = rebuilt(&[b.clone(), c.clone()]);
        assert_eq!(
            String::from_utf8_lossy(&spliced),
            String::from_utf8_lossy(&expected)
        );
        assert_eq!(shared, expected_shared);
        assert_eq!(paths, 4);
        // b and c out: nothing left.
        let policy = wrap(&spliced);
        let base = Digests::find(&policy).unwrap();
        let mut removed = b.clone();
        removed.extend(c.clone());
        let touched = apply(&base, &mut shared, removed, Vec::new());
        assert_eq!(splice(&base, &touched), (b"{}".to_vec(), 0));
        assert!(shared.is_empty());
    }

    #[test]
    fn files_round_trip() {
        let p = pairs(&[("/a", "aa"), ("/b c", "bb")]);
        assert_eq!(parse_package(&package_bytes(&p)).unwrap(), p);
        assert_eq!(parse_package(PACKAGE_HEADER).unwrap(), Vec::new());
        assert!(parse_package(b"portage-ima keylime state 2\n").is_err());
        let mut cut = package_bytes(&p);
        cut.pop();
        assert!(parse_package(&cut).is_err());
        let mut index = Index {
            packages: 2,
            digests: Some((10, 2)),
            ..Index::default()
        };
        index.shared.insert(("/a".into(), "aa".into()), 3);
        assert_eq!(Index::parse(&index.to_bytes()), Some(index));
        let keys = Index::parse(b"portage-ima keylime index 1\npackages 3\nkeys\n").unwrap();
        assert_eq!((keys.packages, keys.digests), (3, None));
        assert_eq!(Index::parse(b"portage-ima keylime index 1\nkeys\n"), None);
        assert_eq!(
            package_of_file_name("app-misc:foo-1.0"),
            Some("app-misc/foo-1.0".into())
        );
        assert_eq!(package_of_file_name(".tmpXYZ"), None);
        assert_eq!(package_file_name("app-misc/foo-1.0"), "app-misc:foo-1.0");
    }
}
