//! The vdb `CONTENTS` file: what a package installed, one entry per line.
//!
//! Portage writes it in `dblink.mergeme` as plain text with single spaces and
//! no escaping at all:
//!
//! ```text
//! dir /usr/share/foo
//! obj /usr/share/foo/file with space.txt ec4821ad3db39e619b360ee097ff8f99 1795842074
//! sym /usr/bin/foo-link -> foo 1795842074
//! dev /dev/foo
//! fif /var/lib/foo/fifo
//! ```
//!
//! Paths may hold spaces and arbitrary non-UTF-8 bytes, so this module parses
//! bytes and builds paths with [`OsStr::from_bytes`]. Only a newline cannot
//! appear in a path (Portage could not write it either).
//!
//! The mtime is `st_mtime_ns // 10**9`, so a file dated before 1970 gets a
//! negative one (`-1`); it is accepted. Portage's own reader
//! (`dblink.getcontents`) skips a line it does not recognise, reports it
//! with its number ("Unrecognized CONTENTS entry") and keeps the rest of the
//! package. So does this parser: every line is checked strictly (a CONTENTS
//! file decides which files get signed, so anything Portage would never write
//! is not guessed at), and a line that fails is left out and listed in
//! [`Contents::skipped`] with its number and the reason. A skipped line never
//! makes a file signed; callers report it as a failure. Paths Portage would
//! normalise (`//`, `/./`, `..`) are skipped too rather than resolved.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One line of CONTENTS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContentsEntry {
    /// `dir PATH`
    Dir {
        /// The directory, absolute as CONTENTS has it.
        path: PathBuf,
    },
    /// `obj PATH MD5 MTIME`: a regular file with the MD5 of the content
    /// Portage merged and its mtime in seconds.
    Obj {
        /// The file, absolute as CONTENTS has it.
        path: PathBuf,
        /// The MD5 of the content merged.
        md5: [u8; 16],
        /// The mtime merged, in seconds.
        mtime: i64,
    },
    /// `sym PATH -> TARGET MTIME`
    Sym {
        /// The link, absolute as CONTENTS has it.
        path: PathBuf,
        /// Where it points, as written in the link.
        target: PathBuf,
        /// The link's mtime merged, in seconds.
        mtime: i64,
    },
    /// `dev PATH`: a device node.
    Dev {
        /// The node, absolute as CONTENTS has it.
        path: PathBuf,
    },
    /// `fif PATH`: a named pipe.
    Fif {
        /// The pipe, absolute as CONTENTS has it.
        path: PathBuf,
    },
}

impl ContentsEntry {
    /// The absolute path the entry describes (relative to ROOT, EPREFIX included).
    pub fn path(&self) -> &Path {
        match self {
            ContentsEntry::Dir { path }
            | ContentsEntry::Obj { path, .. }
            | ContentsEntry::Sym { path, .. }
            | ContentsEntry::Dev { path }
            | ContentsEntry::Fif { path } => path,
        }
    }

    /// The entry type as CONTENTS spells it: `dir`, `obj`, `sym`, `dev` or `fif`.
    pub fn kind(&self) -> &'static str {
        match self {
            ContentsEntry::Dir { .. } => "dir",
            ContentsEntry::Obj { .. } => "obj",
            ContentsEntry::Sym { .. } => "sym",
            ContentsEntry::Dev { .. } => "dev",
            ContentsEntry::Fif { .. } => "fif",
        }
    }

    /// Appends the line Portage would write for this entry (with its newline).
    /// `Contents::parse` reads it back to an equal entry, with one caveat for
    /// `sym` targets documented on [`Contents::parse`].
    pub fn write_line(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.kind().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.path().as_os_str().as_bytes());
        match self {
            ContentsEntry::Obj { md5, mtime, .. } => {
                out.push(b' ');
                out.extend_from_slice(hex::encode(md5).as_bytes());
                out.push(b' ');
                out.extend_from_slice(mtime.to_string().as_bytes());
            }
            ContentsEntry::Sym { target, mtime, .. } => {
                out.extend_from_slice(b" -> ");
                out.extend_from_slice(target.as_os_str().as_bytes());
                out.push(b' ');
                out.extend_from_slice(mtime.to_string().as_bytes());
            }
            _ => {}
        }
        out.push(b'\n');
    }
}

/// A parsed CONTENTS file, entries in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contents {
    /// The lines understood, in file order.
    pub entries: Vec<ContentsEntry>,
    /// Lines left out because they are not what Portage writes, in file order.
    pub skipped: Vec<SkippedLine>,
}

/// A CONTENTS line that was not understood and left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedLine {
    /// 1-based line number.
    pub line: usize,
    /// Why, in words (the line's own text is not repeated).
    pub reason: String,
}

impl fmt::Display for SkippedLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}: {}; line skipped (Portage skips it too), its file is not handled",
            self.line, self.reason
        )
    }
}

/// Why a CONTENTS file could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum ContentsError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The CONTENTS file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: io::Error,
    },
    /// A line is not what Portage writes.
    #[error("{}line {line}: {reason}", path_prefix(path))]
    Syntax {
        /// The file, when the data came from one.
        path: Option<PathBuf>,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it, in words.
        reason: String,
    },
}

fn path_prefix(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!("{} ", p.display()),
        None => String::new(),
    }
}

impl ContentsError {
    /// True when the CONTENTS file does not exist (a package without one, or a
    /// merge that has not reached the vdb yet). Portage treats a missing
    /// CONTENTS as empty; callers decide.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ContentsError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// The 1-based line of a syntax error.
    pub fn line(&self) -> Option<usize> {
        match self {
            ContentsError::Syntax { line, .. } => Some(*line),
            ContentsError::Io { .. } => None,
        }
    }
}

impl Contents {
    /// Parses CONTENTS data. Lines that are not what Portage writes are
    /// left out and listed in [`Contents::skipped`] (see the module docs).
    ///
    /// An empty input and a final newline are fine; an empty line elsewhere
    /// is skipped (Portage never writes one).
    ///
    /// `obj` lines are split from the right: the last two space-separated
    /// fields are the MD5 and the mtime, everything between `obj ` and them
    /// is the path, spaces included.
    ///
    /// `sym` lines: the mtime is split off at the last space, then the rest is
    /// split at the **last** ` -> `. A link name containing ` -> ` is thus
    /// read correctly; a target containing ` -> ` is not (its head ends up in
    /// the path). The format cannot tell the two apart, and this is the split
    /// Portage's own reader makes (`dblink.getcontents`, a greedy regex), so
    /// both agree on what the package owns. `sym` entries are never signed,
    /// so the ambiguity cannot make this tool sign a wrong file.
    pub fn parse(data: &[u8]) -> Contents {
        let mut contents = Contents::default();
        let body = data.strip_suffix(b"\n").unwrap_or(data);
        if body.is_empty() {
            return contents;
        }
        for (i, line) in body.split(|&b| b == b'\n').enumerate() {
            match parse_line(line) {
                Ok(entry) => contents.entries.push(entry),
                Err(reason) => contents.skipped.push(SkippedLine {
                    line: i + 1,
                    reason,
                }),
            }
        }
        contents
    }

    /// Parses CONTENTS data and fails on the first line that is not what
    /// Portage writes, naming it.
    pub fn parse_strict(data: &[u8]) -> Result<Contents, ContentsError> {
        let contents = Contents::parse(data);
        match contents.skipped.first() {
            Some(bad) => Err(ContentsError::Syntax {
                path: None,
                line: bad.line,
                reason: bad.reason.clone(),
            }),
            None => Ok(contents),
        }
    }

    /// Reads and parses a CONTENTS file (unrecognised lines are skipped,
    /// see [`Contents::parse`]); a read error names the file.
    pub fn read(path: &Path) -> Result<Contents, ContentsError> {
        let data = std::fs::read(path).map_err(|source| ContentsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Contents::parse(&data))
    }

    /// The skipped lines as `FILE line N: reason; ...` messages.
    pub fn skipped_messages<'a>(&'a self, file: &'a Path) -> impl Iterator<Item = String> + 'a {
        self.skipped
            .iter()
            .map(move |s| format!("{} {s}", file.display()))
    }

    /// The regular files (`obj` entries): path and the MD5 Portage recorded.
    pub fn objects(&self) -> impl Iterator<Item = (&Path, &[u8; 16])> {
        self.entries.iter().filter_map(|e| match e {
            ContentsEntry::Obj { path, md5, .. } => Some((path.as_path(), md5)),
            _ => None,
        })
    }

    /// Serializes the entries the way Portage writes them.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for e in &self.entries {
            e.write_line(&mut out);
        }
        out
    }
}

impl fmt::Display for ContentsEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = Vec::new();
        self.write_line(&mut line);
        line.pop();
        f.write_str(&String::from_utf8_lossy(&line))
    }
}

/// Parses one line (without its newline); the error is the reason only.
fn parse_line(line: &[u8]) -> Result<ContentsEntry, String> {
    if line.is_empty() {
        return Err("empty line (expected `TYPE PATH ...`)".into());
    }
    if line.contains(&0) {
        return Err("NUL byte in line".into());
    }
    let Some(sp) = line.iter().position(|&b| b == b' ') else {
        return Err(format!(
            "`{}` has no path (expected `TYPE PATH ...`)",
            String::from_utf8_lossy(line)
        ));
    };
    let (kind, rest) = (&line[..sp], &line[sp + 1..]);
    match kind {
        b"dir" => Ok(ContentsEntry::Dir {
            path: entry_path(rest, "dir")?,
        }),
        b"dev" => Ok(ContentsEntry::Dev {
            path: entry_path(rest, "dev")?,
        }),
        b"fif" => Ok(ContentsEntry::Fif {
            path: entry_path(rest, "fif")?,
        }),
        b"obj" => parse_obj(rest),
        b"sym" => parse_sym(rest),
        _ => Err(format!(
            "unknown entry type `{}` (expected dir, obj, sym, dev or fif)",
            String::from_utf8_lossy(kind)
        )),
    }
}

const OBJ_SYNTAX: &str = "expected `obj PATH MD5 MTIME`";
const SYM_SYNTAX: &str = "expected `sym PATH -> TARGET MTIME`";

fn parse_obj(rest: &[u8]) -> Result<ContentsEntry, String> {
    let (head, mtime) = rsplit_space(rest)
        .ok_or_else(|| format!("obj entry has no MD5 and no mtime ({OBJ_SYNTAX})"))?;
    let looks_md5 = |f: &[u8]| f.len() == 32 && f.iter().all(u8::is_ascii_hexdigit);
    // Say which field is missing when the line ends in an MD5.
    let no_mtime = || format!("obj entry has no mtime ({OBJ_SYNTAX})");
    let Some((path, md5)) = rsplit_space(head) else {
        return Err(if looks_md5(mtime) {
            no_mtime()
        } else {
            format!("obj entry has no MD5 ({OBJ_SYNTAX})")
        });
    };
    if looks_md5(mtime) && !looks_md5(md5) {
        return Err(no_mtime());
    }
    let md5 = parse_md5(md5)?;
    let mtime = parse_mtime(mtime, OBJ_SYNTAX)?;
    Ok(ContentsEntry::Obj {
        path: entry_path(path, "obj")?,
        md5,
        mtime,
    })
}

fn parse_sym(rest: &[u8]) -> Result<ContentsEntry, String> {
    let (head, mtime) = match old_sym_mtime(rest) {
        Some(old) => old,
        None => {
            let (head, mtime) = rsplit_space(rest)
                .ok_or_else(|| format!("sym entry has no mtime ({SYM_SYNTAX})"))?;
            (head, parse_mtime(mtime, SYM_SYNTAX)?)
        }
    };
    let arrow =
        rfind(head, b" -> ").ok_or_else(|| format!("sym entry has no ` -> ` ({SYM_SYNTAX})"))?;
    let path = entry_path(&head[..arrow], "sym")?;
    let target = &head[arrow + 4..];
    if target.is_empty() {
        return Err(format!("sym entry has an empty target ({SYM_SYNTAX})"));
    }
    Ok(ContentsEntry::Sym {
        path,
        target: PathBuf::from(OsStr::from_bytes(target)),
        mtime,
    })
}

/// Portage before 2.0.51 (2005) wrote a symlink's whole `os.stat` tuple
/// instead of its mtime: `sym A -> B (mode, ino, dev, nlink, uid, gid,
/// size, atime, mtime, ctime)` with Python 2 `L` suffixes. Portage still
/// reads it (bug 351814), so old systems may have such lines. Returns the
/// part before the tuple and the mtime (the ninth field).
fn old_sym_mtime(rest: &[u8]) -> Option<(&[u8], i64)> {
    let inner = rest.strip_suffix(b")")?;
    let open = rfind(inner, b" (")?;
    let fields: Vec<&[u8]> = inner[open + 2..].split(|&b| b == b',').collect();
    if fields.len() != 10 {
        return None;
    }
    let mut nums = fields.iter().map(|f| {
        let f = f.strip_prefix(b" ").unwrap_or(f);
        let f = f.strip_suffix(b"L").unwrap_or(f);
        parse_mtime(f, SYM_SYNTAX).ok()
    });
    let mtime = nums.clone().nth(8)??;
    nums.all(|n| n.is_some()).then_some((&inner[..open], mtime))
}

/// Splits at the last space: (before, after).
fn rsplit_space(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = s.iter().rposition(|&b| b == b' ')?;
    Some((&s[..i], &s[i + 1..]))
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

fn parse_md5(s: &[u8]) -> Result<[u8; 16], String> {
    let mut md5 = [0u8; 16];
    if s.len() != 32 || hex::decode_to_slice(s, &mut md5).is_err() {
        return Err(format!(
            "obj entry has a bad MD5 `{}` (expected 32 hex digits; {OBJ_SYNTAX})",
            String::from_utf8_lossy(s)
        ));
    }
    Ok(md5)
}

/// Seconds since the epoch as Portage writes them: `st_mtime_ns // 10**9`,
/// so digits with a `-` for files dated before 1970.
fn parse_mtime(s: &[u8], syntax: &str) -> Result<i64, String> {
    // Digits only: i64::from_str would also take a leading `+`.
    let digits = s.strip_prefix(b"-").unwrap_or(s);
    let ok = !digits.is_empty() && digits.len() <= 19 && digits.iter().all(u8::is_ascii_digit);
    ok.then(|| std::str::from_utf8(s).ok()?.parse::<i64>().ok())
        .flatten()
        .ok_or_else(|| {
            format!(
                "bad mtime `{}` (expected seconds since the epoch; {syntax})",
                String::from_utf8_lossy(s)
            )
        })
}

/// Checks a CONTENTS path: absolute, not empty, no `.`, `..` or empty
/// components (Portage writes normalized paths), no NUL.
fn entry_path(p: &[u8], kind: &str) -> Result<PathBuf, String> {
    let show = || String::from_utf8_lossy(p).into_owned();
    if p.is_empty() {
        return Err(format!("{kind} entry has an empty path"));
    }
    if p[0] != b'/' {
        return Err(format!("{kind} path `{}` is not absolute", show()));
    }
    if p.contains(&0) {
        return Err(format!("{kind} path contains a NUL byte"));
    }
    if p.len() > 1 {
        for comp in p[1..].split(|&b| b == b'/') {
            match comp {
                b"." | b".." => {
                    return Err(format!(
                        "{kind} path `{}` has a `{}` component",
                        show(),
                        String::from_utf8_lossy(comp)
                    ))
                }
                b"" => {
                    return Err(format!(
                        "{kind} path `{}` has an empty component (`//` or a trailing `/`)",
                        show()
                    ))
                }
                _ => {}
            }
        }
    }
    Ok(PathBuf::from(OsStr::from_bytes(p)))
}

#[cfg(test)]
mod tests;
