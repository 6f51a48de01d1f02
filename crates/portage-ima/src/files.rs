//! `sign --files` and `verify --files`: paths given on the command line.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use ima_core::{ImaSigner, KeySet, SignOptions, SignOutcome};

use crate::engine::{FileReport, Outcome, Runner};
use crate::progress::Progress;
use crate::verify::FileStatus;

/// A regular file found on the command line or in a walked directory.
#[derive(Debug, Clone)]
pub struct FoundFile {
    pub path: PathBuf,
    pub size: u64,
}

/// Expands the command-line paths: a directory is walked recursively
/// without following symlinks; inside a walk only regular files are taken.
/// A path given explicitly that is not a regular file or directory, and a
/// directory reached twice (a bind-mount loop), is reported.
pub fn collect(paths: &[PathBuf]) -> (Vec<FoundFile>, Vec<FileReport>) {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    let mut seen_dirs = HashSet::new();
    for path in paths {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) => {
                problems.push(FileReport::new(path, Outcome::Failed(io_reason(&e))));
                continue;
            }
        };
        let kind = meta.file_type();
        if kind.is_file() {
            found.push(FoundFile {
                path: path.clone(),
                size: meta.len(),
            });
        } else if kind.is_dir() {
            walk(path, &mut seen_dirs, &mut found, &mut problems);
        } else {
            let reason = format!(
                "is a {}, not a regular file; not signed{}",
                kind_name(&meta),
                if kind.is_symlink() {
                    " (symlinks are never followed: name its target instead)"
                } else {
                    ""
                }
            );
            problems.push(FileReport::new(path, Outcome::Failed(reason)));
        }
    }
    (found, problems)
}

fn walk(
    dir: &Path,
    seen_dirs: &mut HashSet<(u64, u64)>,
    found: &mut Vec<FoundFile>,
    problems: &mut Vec<FileReport>,
) {
    let mut loops = Vec::new();
    let walker = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .filter_entry(|entry| {
            if !entry.file_type().is_dir() {
                return true;
            }
            match entry.metadata() {
                Ok(meta) if !seen_dirs.insert((meta.dev(), meta.ino())) => {
                    loops.push(entry.path().to_path_buf());
                    false
                }
                _ => true,
            }
        });
    for entry in walker {
        match entry {
            Ok(entry) if entry.file_type().is_file() => {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                found.push(FoundFile {
                    path: entry.into_path(),
                    size,
                });
            }
            Ok(_) => {}
            Err(e) => {
                let path = e.path().unwrap_or(dir).to_path_buf();
                let reason = match e.io_error() {
                    Some(io) => io_reason(io),
                    None => e.to_string(),
                };
                problems.push(FileReport::new(path, Outcome::Failed(reason)));
            }
        }
    }
    for path in loops {
        problems.push(FileReport::new(
            path,
            Outcome::Failed(
                "directory reached twice (a bind-mount loop, or named twice); not walked again"
                    .into(),
            ),
        ));
    }
}

/// Signs every found file in parallel.
pub fn sign(
    signer: &ImaSigner,
    files: &[FoundFile],
    runner: &Runner,
    progress: &Progress,
    dry_run: bool,
) -> Vec<Option<FileReport>> {
    let opts = SignOptions {
        expect_md5: None,
        keep_valid: true,
        dry_run,
    };
    runner.run(
        files,
        progress,
        |file| file.size,
        |file| {
            let outcome = match signer.sign_path(&file.path, &opts) {
                Ok(SignOutcome::Signed) => Outcome::Signed,
                Ok(SignOutcome::AlreadyValid) => Outcome::AlreadyValid,
                Ok(SignOutcome::WouldSign) => Outcome::WouldSign,
                Err(e) => Outcome::Failed(e.to_string()),
            };
            FileReport::new(&file.path, outcome)
        },
    )
}

/// Verifies every found file in parallel.
pub fn verify(keys: &KeySet, files: &[FoundFile], runner: &Runner) -> Vec<FileStatus> {
    runner
        .run(
            files,
            &Progress::hidden(),
            |file| file.size,
            |file| match ima_core::open_regular(&file.path)
                .and_then(|f| keys.verify_file(&f, false))
            {
                Ok(report) => FileStatus::from_report(&file.path, &report),
                Err(e) => FileStatus::error(&file.path, e.to_string()),
            },
        )
        .into_iter()
        .flatten()
        .collect()
}

/// A short, specific reason for an I/O error on a path.
pub fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory (removed meanwhile?)".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

fn kind_name(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_symlink() {
        "symbolic link"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collect_walks_dirs_and_reports_specials() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/a"), b"a").unwrap();
        std::fs::write(d.join("b"), b"bb").unwrap();
        std::os::unix::fs::symlink("b", d.join("link")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            d.join("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        // Inside a walk, the symlink and the fifo are passed over.
        let (found, problems) = collect(&[d.to_path_buf()]);
        let mut names: Vec<_> = found.iter().map(|f| f.path.clone()).collect();
        names.sort();
        assert_eq!(names, vec![d.join("b"), d.join("sub/a")]);
        assert!(problems.is_empty(), "{problems:?}");
        // Named explicitly, they are errors.
        let (found, problems) = collect(&[d.join("link"), d.join("fifo"), d.join("gone")]);
        assert!(found.is_empty());
        let reasons: Vec<_> = problems
            .iter()
            .map(|p| match &p.outcome {
                Outcome::Failed(r) => r.clone(),
                o => panic!("{o:?}"),
            })
            .collect();
        assert!(reasons[0].contains("symbolic link"), "{reasons:?}");
        assert!(reasons[1].contains("fifo"), "{reasons:?}");
        assert!(reasons[2].contains("no such file"), "{reasons:?}");
    }

    #[test]
    fn a_directory_named_twice_is_walked_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"a").unwrap();
        let (found, problems) = collect(&[dir.path().to_path_buf(), dir.path().to_path_buf()]);
        assert_eq!(found.len(), 1);
        assert_eq!(problems.len(), 1);
    }
}
