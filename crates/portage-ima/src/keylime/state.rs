//! The state beside the policy (`<policy>.packages`): which package gave
//! which digest. One line per (path, package), sorted by path, so that an
//! update is a merge of two sorted streams and the policy's `digests` are
//! written in one pass, without a map of every file on the system (a
//! 100,000-file system has a 13 MB state):
//!
//! ```text
//! portage-ima keylime state 2
//! /usr/bin/foo\0app-misc/foo-1.0\0<hex digest>
//! \0app-misc/empty-1\0                 (a package with no file in the policy)
//! ```
//!
//! NUL separates the fields: no path holds one (nor a newline: CONTENTS is
//! line-based).

use std::collections::HashSet;
use std::path::Path;

use anyhow::{bail, Context, Result};

const HEADER: &[u8] = b"portage-ima keylime state 2\n";

/// The state's lines, without the header.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct State {
    body: Vec<u8>,
}

/// One line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// The path the digest is listed under.
    pub path: &'a [u8],
    /// The package that gave it, `CATEGORY/PF`.
    pub cpv: &'a [u8],
    /// The hex digest; with `path`, empty for a package with no file in the policy.
    pub digest: &'a [u8],
}

/// A new line: (path, cpv, digest).
pub type NewLine = (String, String, String);

impl State {
    /// Reads the state; a missing file is an empty state (the update then
    /// digests every package).
    pub fn read(path: &Path) -> Result<State> {
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        State::parse(data).with_context(|| {
            format!(
                "{} is damaged; run `portage-ima keylime sync` to rebuild it",
                path.display()
            )
        })
    }

    fn parse(mut data: Vec<u8>) -> Result<State> {
        if !data.starts_with(HEADER) {
            bail!(
                "the first line is not `{}`",
                String::from_utf8_lossy(&HEADER[..HEADER.len() - 1])
            );
        }
        data.drain(..HEADER.len());
        for (n, line) in data.split(|&b| b == b'\n').enumerate() {
            let nuls = line.iter().filter(|&&b| b == 0).count();
            if !line.is_empty() && nuls != 2 {
                bail!("line {}: not PATH\\0CPV\\0DIGEST", n + 2);
            }
        }
        if !data.is_empty() && !data.ends_with(b"\n") {
            bail!("the last line is cut short");
        }
        Ok(State { body: data })
    }

    /// The lines in file order (sorted by path, then package).
    pub fn lines(&self) -> impl Iterator<Item = Line<'_>> {
        self.body
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|l| {
                let mut f = l.splitn(3, |&b| b == 0);
                Some(Line {
                    path: f.next()?,
                    cpv: f.next()?,
                    digest: f.next()?,
                })
            })
    }

    /// The packages the state records.
    pub fn packages(&self) -> HashSet<&[u8]> {
        self.lines().map(|l| l.cpv).collect()
    }

    /// The state without the lines of the packages in `drop`, with `new`
    /// merged in (in order).
    pub fn rewrite(&self, drop: &HashSet<&[u8]>, mut new: Vec<NewLine>) -> State {
        new.sort_unstable();
        let mut body = Vec::with_capacity(self.body.len() + new.len() * 128);
        let mut new = new.into_iter().peekable();
        let push = |body: &mut Vec<u8>, path: &[u8], cpv: &[u8], digest: &[u8]| {
            body.extend_from_slice(path);
            body.push(0);
            body.extend_from_slice(cpv);
            body.push(0);
            body.extend_from_slice(digest);
            body.push(b'\n');
        };
        for old in self.lines().filter(|l| !drop.contains(l.cpv)) {
            while let Some((p, c, d)) =
                new.next_if(|(p, c, _)| (p.as_bytes(), c.as_bytes()) < (old.path, old.cpv))
            {
                push(&mut body, p.as_bytes(), c.as_bytes(), d.as_bytes());
            }
            push(&mut body, old.path, old.cpv, old.digest);
        }
        for (p, c, d) in new {
            push(&mut body, p.as_bytes(), c.as_bytes(), d.as_bytes());
        }
        State { body }
    }

    /// The file's bytes, header included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER.len() + self.body.len());
        out.extend_from_slice(HEADER);
        out.extend_from_slice(&self.body);
        out
    }

    /// The policy's `digests` object as JSON (`{"path": ["hex", ...]}`,
    /// paths sorted, each digest once), and how many paths it names.
    pub fn digests_json(&self) -> (Vec<u8>, usize) {
        let mut out = Vec::with_capacity(self.body.len());
        out.push(b'{');
        let mut paths = 0;
        let mut current: Option<&[u8]> = None;
        let mut seen: Vec<&[u8]> = Vec::new();
        for line in self.lines().filter(|l| !l.path.is_empty()) {
            if current != Some(line.path) {
                if current.is_some() {
                    out.extend_from_slice(b"],");
                }
                let path = String::from_utf8_lossy(line.path);
                serde_json::to_writer(&mut out, path.as_ref()).expect("writing to memory");
                out.extend_from_slice(b":[");
                current = Some(line.path);
                seen.clear();
                paths += 1;
            }
            if !seen.contains(&line.digest) {
                if !seen.is_empty() {
                    out.push(b',');
                }
                out.push(b'"');
                out.extend_from_slice(line.digest);
                out.push(b'"');
                seen.push(line.digest);
            }
        }
        if current.is_some() {
            out.push(b']');
        }
        out.push(b'}');
        (out, paths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(path: &str, cpv: &str, digest: &str) -> NewLine {
        (path.into(), cpv.into(), digest.into())
    }

    #[test]
    fn merge_drop_and_render() {
        let s = State::default().rewrite(
            &HashSet::new(),
            vec![
                new("/usr/bin/b", "a/b-1", "bb"),
                new("/usr/bin/a \"q\"", "a/a-1", "aa"),
                new("", "a/empty-1", ""),
            ],
        );
        let s = State::parse(s.to_bytes()).unwrap();
        assert_eq!(s.packages().len(), 3);
        let drop: HashSet<&[u8]> = [b"a/b-1".as_slice()].into();
        let s2 = s.rewrite(
            &drop,
            vec![
                new("/usr/bin/b", "a/b-2", "b2"),
                new("/usr/bin/a \"q\"", "a/z-1", "aa"),
            ],
        );
        let (json, paths) = s2.digests_json();
        assert_eq!(paths, 2);
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"/usr/bin/a \"q\"": ["aa"], "/usr/bin/b": ["b2"]})
        );
        let lines: Vec<_> = s2.lines().map(|l| l.path).collect();
        let mut sorted = lines.clone();
        sorted.sort();
        assert_eq!(lines, sorted);
    }

    #[test]
    fn damaged_state_is_refused() {
        assert!(State::parse(b"something else\n".to_vec()).is_err());
        let mut cut = HEADER.to_vec();
        cut.extend_from_slice(b"/a\0x/y-1\0ab\n/b\0x/y-1");
        assert!(State::parse(cut).is_err());
        let mut bad = HEADER.to_vec();
        bad.extend_from_slice(b"/a x/y-1 ab\n");
        assert!(State::parse(bad).is_err());
    }
}
