//! The per-file rules of verification: an `obj` of CONTENTS checked against
//! its signature, the MD5 CONTENTS records and, for a config file, what its
//! `config_files` mode writes (the plan's [`Decision`]).

use std::io;
use std::path::{Path, PathBuf};

use ima_core::{KeySet, VerifyStatus};

use super::{cfg_candidates, open_failure, sign_failure};
use crate::fs::rootfs::RootDir;
use crate::plan::treatment::is_executable;
use crate::plan::{ConfigFiles, Decision, Job, JobFile, Treatment};
use crate::report::{FileStatus, Verdict};

/// Checks one job's file: an `obj` of CONTENTS (see [`verify_object`]) or
/// a found file (its signature only).
pub fn verify_job(keys: &KeySet, job: &Job) -> Vec<FileStatus> {
    match &job.file {
        JobFile::Object {
            root,
            path,
            expected_md5,
        } => verify_object(keys, root, path, expected_md5, job.decision.config()),
        JobFile::Found(file) => {
            vec![
                match file.open().and_then(|f| keys.verify_file(&f, false)) {
                    Ok(report) => FileStatus::from_report(&file.path, &report),
                    Err(e) => FileStatus::error(&file.path, e.to_string()),
                },
            ]
        }
    }
}

/// The verdict on a file whose content is what CONTENTS records: the
/// signature's, except that a config file is judged by what its
/// `config_files` mode writes: a matching digest on one the mode hashes
/// (or on any non-executable one) is `hashed`, no value on one the mode
/// leaves alone is `config-unsigned`.
fn object_status(
    shown: &Path,
    report: &ima_core::VerifyReport,
    config: Option<ConfigFiles>,
    executable: bool,
) -> FileStatus {
    let mut status = FileStatus::from_report(shown, report);
    let Some(mode) = config else {
        return status;
    };
    match (
        report.status.clone(),
        Decision::new(Some(mode)).for_executable(executable),
    ) {
        (VerifyStatus::Hashed, _) if !executable => status.status = Verdict::Hashed,
        (VerifyStatus::Unsigned, Treatment::Leave(reason)) => {
            status.status = Verdict::ConfigUnsigned;
            status.detail = Some(format!("no security.ima: {reason}"));
        }
        _ => {}
    }
    status
}

/// Checks the file CONTENTS lists at `path`: its signature, and its content
/// against the MD5 CONTENTS records (`modified`, `missing`); a config file
/// (`config`: its `config_files` mode) by what that mode writes
/// ([`object_status`]).
///
/// A config file whose live copy differs from CONTENTS (the admin edited it;
/// a `._cfgNNNN_` sibling may hold the package's update) gives two results:
/// the sibling that matches CONTENTS, checked as the package's file, and the
/// live file, the one that is used until the update is merged, with its own
/// state. The live file is `modified` (a failure) when IMA
/// appraisal would refuse to run it: executable and its signature does not
/// verify. Otherwise it is `config-changed`: reported, not a
/// failure, since admins edit config files (and the kernel itself updates
/// a hashed one when it is written). A file counts as a config file when
/// Portage wrote a `._cfg` sibling for it, or when CONFIG_PROTECT covers it.
pub fn verify_object(
    keys: &KeySet,
    root: &RootDir,
    path: &Path,
    md5: &[u8; 16],
    config: Option<ConfigFiles>,
) -> Vec<FileStatus> {
    let shown = root.display_path(path);
    let file = match root.open_file(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let detail = "listed in CONTENTS but not on disk".to_string();
            return vec![FileStatus::with_status(&shown, Verdict::Missing, detail)];
        }
        Err(e) => return vec![FileStatus::error(&shown, open_failure(&e).to_string())],
    };
    let report = match keys.verify_file(&file, true) {
        Ok(r) => r,
        Err(e) => return vec![FileStatus::error(&shown, sign_failure(&e).to_string())],
    };
    let executable = is_executable(&file);
    if report.md5.as_ref() == Some(md5) {
        return vec![object_status(&shown, &report, config, executable)];
    }
    let differs = format!(
        "content differs from CONTENTS (MD5 {} expected, {} found); signature: {}",
        hex::encode(md5),
        report.md5.map(hex::encode).unwrap_or_default(),
        report.status.as_str()
    );
    let update = verify_cfg_sibling(keys, root, path, md5, config);
    let mut live = FileStatus::from_report(&shown, &report);
    live.status = Verdict::Modified;
    live.detail = Some(differs);
    if update.is_none() && config.is_none() {
        return vec![live];
    }
    // A config file: is the changed live copy one the kernel would refuse?
    let runs = matches!(report.status, VerifyStatus::Ok | VerifyStatus::OtherKey);
    let denied = executable && !runs;
    let mut detail = live.detail.take().unwrap_or_default();
    detail.insert_str(0, "config file changed since the merge: ");
    detail.push_str(if denied {
        "; executable: IMA appraisal would refuse to run it"
    } else if executable {
        "; executable, runs with this signature"
    } else {
        "; not executable: reported, not a failure"
    });
    if let Some((sibling, _)) = &update {
        let name = sibling.file_name().unwrap_or_default();
        detail.push_str(&format!(
            "; update pending: {} (merge it with dispatch-conf or etc-update)",
            Path::new(name).display()
        ));
    }
    live.detail = Some(detail);
    if !denied {
        live.status = Verdict::ConfigChanged;
    }
    match update {
        Some((_, status)) => vec![status, live],
        None => vec![live],
    }
}

/// The `._cfg` sibling of `path` whose content is what CONTENTS records:
/// its path and its status.
fn verify_cfg_sibling(
    keys: &KeySet,
    root: &RootDir,
    path: &Path,
    md5: &[u8; 16],
    config: Option<ConfigFiles>,
) -> Option<(PathBuf, FileStatus)> {
    cfg_candidates(root, path)
        .into_iter()
        .find_map(|(shown, file)| {
            let report = keys.verify_file(&file, true).ok()?;
            (report.md5.as_ref() == Some(md5)).then(|| {
                let status = object_status(&shown, &report, config, is_executable(&file));
                (shown, status)
            })
        })
}
