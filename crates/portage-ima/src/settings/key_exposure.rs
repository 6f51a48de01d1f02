//! Whether the private key file is safe to sign with: who can read it, who
//! can replace it.

use std::path::Path;

/// What makes the private key file unsafe to sign with, each with the
/// command that fixes it: whoever can read the key can sign anything the
/// kernel will then run, and whoever can replace it (or write its directory)
/// chooses what gets signed. Refused:
/// - any group or other permission bit on the key (`chmod 0400`);
/// - a key owned by someone else than root or the user running this;
/// - its directory writable by others (sticky or not), or by a group other
///   than root's (gid 0), or owned by someone else than root or this user.
///
/// A key that cannot be stat'ed gives no problem here: loading it reports why.
pub fn key_exposure(path: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    // A directory is not a key: loading it says so.
    let meta = match std::fs::metadata(path) {
        Ok(meta) if !meta.is_dir() => meta,
        _ => return Vec::new(),
    };
    let me = rustix::process::geteuid().as_raw();
    let mut problems = Vec::new();
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        problems.push(format!(
            "the private key is readable by group or others (mode {mode:04o}); run: chmod 0400 {}",
            path.display()
        ));
    }
    if meta.uid() != 0 && meta.uid() != me {
        problems.push(format!(
            "the private key is owned by uid {}, not root; run: chown root:root {}",
            meta.uid(),
            path.display()
        ));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(d) = std::fs::metadata(dir) {
        let dmode = d.mode() & 0o7777;
        if dmode & 0o002 != 0 {
            problems.push(format!(
                "its directory {} is writable by others (mode {dmode:04o}): anyone can replace \
                 the key; move it, or run: chmod o-w {}",
                dir.display(),
                dir.display()
            ));
        }
        if dmode & 0o020 != 0 && d.gid() != 0 {
            problems.push(format!(
                "its directory {} is writable by group {} (mode {dmode:04o}); run: chmod g-w {}",
                dir.display(),
                d.gid(),
                dir.display()
            ));
        }
        if d.uid() != 0 && d.uid() != me {
            problems.push(format!(
                "its directory {} is owned by uid {}, who can replace the key; run: chown root:root {}",
                dir.display(),
                d.uid(),
                dir.display()
            ));
        }
    }
    problems
}
