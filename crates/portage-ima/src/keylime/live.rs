//! The runtime policy the hook keeps current, one package at a time.
//!
//! Portage's order when a version replaces another: the new files are
//! merged, the old version's prerm and postrm run (its vdb entry still
//! there), its entry is deleted, then the new version's postinst runs with
//! a complete CONTENTS. An unmerge (`emerge -C`, `--depclean`) runs prerm
//! and postrm, then deletes the entry. So the hook takes a package's
//! digests out in postrm and puts the new ones in at postinst.
//!
//! To do that without reading every CONTENTS again, a state file beside the
//! policy (`<policy>.packages`, see [`crate::keylime::state`]) records
//! which package gave which digest.
//!
//! Every update also lists the vdb (directories only, no CONTENTS): a
//! package in the vdb that the state lacks (merged while the hook was
//! down, or killed) is digested, one the state has that the vdb lacks is
//! dropped. So any later update catches up, and the first one builds the
//! whole policy (what `keylime sync` does on purpose).
//!
//! One update at a time holds `<policy>.lock` (flock), so parallel merges
//! (`emerge --jobs`) never lose one another's change. The state and the
//! policy are each written to a temporary file, synced, and renamed over
//! the old one: a crash leaves the old file or the new one, never a torn
//! one. The policy is written last, from the state; a crash between the
//! two leaves a policy the next update rewrites.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ima_core::{CryptoProvider, HashAlgo};

use crate::escape::escape_text;
use crate::fs::rootfs::RootDir;
use crate::gentoo::vdb::{InstalledPackage, Vdb};
use crate::keylime::policy::{digest_object, verification_keys, LeftOut, RuntimePolicy};
use crate::keylime::state::State;
use crate::plan::Location;
use crate::settings::{KeylimeConfig, KeylimeMode, Settings};

/// The files beside the policy.
#[derive(Debug, Clone)]
pub struct PolicyFiles {
    pub policy: PathBuf,
    pub state: PathBuf,
    pub lock: PathBuf,
    /// The SHA-256 of the policy the verifier last accepted.
    pub pushed: PathBuf,
}

impl PolicyFiles {
    pub fn new(policy: PathBuf) -> PolicyFiles {
        let beside = |suffix: &str| {
            let mut name = policy.clone().into_os_string();
            name.push(suffix);
            PathBuf::from(name)
        };
        PolicyFiles {
            state: beside(".packages"),
            lock: beside(".lock"),
            pushed: beside(".pushed"),
            policy,
        }
    }

    /// Takes the update lock (waiting for another update to finish); held
    /// until the returned file is dropped.
    pub fn lock(&self) -> Result<File> {
        if let Some(dir) = self.policy.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
            .with_context(|| format!("cannot open the lock file {}", self.lock.display()))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .with_context(|| format!("cannot lock {}", self.lock.display()))?;
        Ok(file)
    }
}

/// Everything an update needs to know about the machine.
pub struct Keeper {
    pub files: PolicyFiles,
    pub vdb: Vdb,
    pub root: RootDir,
    /// ROOT, canonical (for the symlink-resolved names).
    pub root_path: PathBuf,
    pub provider: &'static dyn CryptoProvider,
    pub algo: HashAlgo,
    pub mode: KeylimeMode,
    pub excludes: Vec<String>,
    /// Keylime's `verification-keys` string (empty for none).
    pub verification_keys: String,
}

/// What one update changes.
#[derive(Debug, Default, Clone)]
pub struct Change {
    /// `CATEGORY/PF` to digest again (postinst).
    pub refresh: Option<String>,
    /// `CATEGORY/PF` to take out (postrm), even though its vdb entry is
    /// still there.
    pub remove: Option<String>,
    /// Forget the state and digest every package (`keylime sync`).
    pub rebuild: bool,
}

/// What an update did.
#[derive(Debug, Default)]
pub struct Updated {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub files: usize,
    pub paths: usize,
    pub left_out: Vec<LeftOut>,
}

impl Updated {
    /// One line per file left out, for stderr.
    pub fn left_out_lines(&self) -> Vec<String> {
        self.left_out
            .iter()
            .map(|l| {
                format!(
                    "keylime: left out {} ({}): {}",
                    escape_text(&l.path),
                    l.package,
                    escape_text(&l.reason)
                )
            })
            .collect()
    }

    /// What changed, in one line.
    pub fn summary(&self, files: &PolicyFiles) -> String {
        format!(
            "keylime policy {}: {} paths; {} packages digested ({} files), {} taken out, {} files left out",
            files.policy.display(),
            self.paths,
            self.added.len(),
            self.files,
            self.removed.len(),
            self.left_out.len()
        )
    }
}

impl Keeper {
    /// The keeper `[keylime]` describes for the system at `location`.
    pub fn open(
        settings: &Settings,
        config: &KeylimeConfig,
        location: &Location,
    ) -> Result<Keeper> {
        let certs = match config.mode {
            KeylimeMode::Digests => Vec::new(),
            KeylimeMode::Keys | KeylimeMode::Both => {
                let cert = settings.cert().with_context(|| {
                    format!(
                        "[keylime] mode = \"{}\" needs the certificate whose key Keylime checks \
                         signatures with: set cert in ima.toml",
                        config.mode.name()
                    )
                })?;
                vec![ima_core::Certificate::load(&cert)?]
            }
        };
        Ok(Keeper {
            files: PolicyFiles::new(config.policy_path(&location.eroot)),
            vdb: Vdb::open(&location.eroot)?,
            root: RootDir::open(&location.root)?,
            root_path: std::fs::canonicalize(&location.root)
                .unwrap_or_else(|_| location.root.clone()),
            provider: settings.backend,
            algo: settings.hash,
            mode: config.mode,
            excludes: config.exclude.clone(),
            verification_keys: verification_keys(&certs),
        })
    }

    /// Applies `change` under the lock and rewrites the state and the policy.
    pub fn update(&self, change: &Change) -> Result<Updated> {
        let started = std::time::Instant::now();
        let step = |what: &str| log::debug!("keylime update: {what} at {:?}", started.elapsed());
        let _lock = self.files.lock()?;
        let state = if change.rebuild {
            State::default()
        } else {
            State::read(&self.files.state)?
        };
        step("state read");
        let installed: HashMap<String, InstalledPackage> = self
            .vdb
            .packages()
            .with_context(|| format!("cannot list {}", self.vdb.path().display()))?
            .into_iter()
            .map(|p| (p.cpv().to_string(), p))
            .collect();
        step("vdb listed");
        let known = state.packages();
        let removing = |cpv: &str| change.remove.as_deref() == Some(cpv);
        let mut updated = Updated::default();
        let mut drop: HashSet<&[u8]> = HashSet::new();
        for cpv in &known {
            let text = String::from_utf8_lossy(cpv);
            if !installed.contains_key(text.as_ref()) || removing(&text) {
                drop.insert(cpv);
                updated.removed.push(text.into_owned());
            }
        }
        let mut wanted: BTreeSet<&String> = installed
            .keys()
            .filter(|cpv| !known.contains(cpv.as_bytes()) && !removing(cpv))
            .collect();
        if let Some(cpv) = &change.refresh {
            if let Some((name, _)) = installed.get_key_value(cpv).filter(|_| !removing(cpv)) {
                wanted.insert(name);
                drop.insert(name.as_bytes());
            }
        }
        let mut new = Vec::new();
        for cpv in wanted {
            let (pairs, files, left_out) = self.digest_package(&installed[cpv]);
            updated.files += files;
            updated.left_out.extend(left_out);
            if pairs.is_empty() {
                // Recorded, so that it is not digested again next time.
                new.push((String::new(), cpv.clone(), String::new()));
            }
            new.extend(pairs.into_iter().map(|(n, d)| (n, cpv.clone(), d)));
            updated.added.push(cpv.clone());
        }
        step("digested");
        let state = state.rewrite(&drop, new);
        write_atomically(&self.files.state, &state.to_bytes())?;
        step("state written");
        let (json, paths) = self.policy_json(&state)?;
        updated.paths = paths;
        write_atomically(&self.files.policy, &json)?;
        step("policy written");
        Ok(updated)
    }

    /// The (name, digest) pairs of one package, how many files it lists,
    /// and what was left out.
    fn digest_package(
        &self,
        package: &InstalledPackage,
    ) -> (Vec<(String, String)>, usize, Vec<LeftOut>) {
        use rayon::prelude::*;
        let cpv = package.cpv().to_string();
        let contents = match package.contents() {
            Ok(c) => c,
            Err(e) => {
                let left_out = LeftOut {
                    path: package.contents_path().display().to_string(),
                    package: cpv,
                    reason: e.to_string(),
                };
                return (Vec::new(), 0, vec![left_out]);
            }
        };
        let objects: Vec<_> = contents.objects().collect();
        let results: Vec<_> = objects
            .par_iter()
            .map(|(path, md5)| {
                let real = crate::gentoo::owners::real_path(&self.root_path, path);
                digest_object(&self.root, self.provider, self.algo, path, md5, real).map_err(
                    |reason| LeftOut {
                        path: path.to_string_lossy().into_owned(),
                        package: cpv.clone(),
                        reason,
                    },
                )
            })
            .collect();
        let mut pairs = Vec::new();
        let mut left_out = Vec::new();
        for result in results {
            match result {
                Ok(d) => pairs.extend(d.names.into_iter().map(|n| (n, d.digest.clone()))),
                Err(l) => left_out.push(l),
            }
        }
        (pairs, objects.len(), left_out)
    }

    /// The policy the state gives in this mode, as JSON, and how many
    /// paths it names. The `digests` object is written straight from the
    /// sorted state into the serialized policy (a map of every file would
    /// cost more than the rest of the update).
    fn policy_json(&self, state: &State) -> Result<(Vec<u8>, usize)> {
        let keys = match self.mode {
            KeylimeMode::Digests => String::new(),
            KeylimeMode::Keys | KeylimeMode::Both => self.verification_keys.clone(),
        };
        let shell = RuntimePolicy::new(BTreeMap::new(), self.excludes.clone(), keys);
        let shell = serde_json::to_vec(&shell)?;
        let (digests, paths) = match self.mode {
            KeylimeMode::Keys => (b"{}".to_vec(), 0),
            KeylimeMode::Digests | KeylimeMode::Both => state.digests_json(),
        };
        // `"digests":{}` occurs once: every string value around it is
        // escaped JSON, so its quotes are `\"`.
        const EMPTY: &[u8] = b"\"digests\":{}";
        let at = shell
            .windows(EMPTY.len())
            .position(|w| w == EMPTY)
            .context("the policy has no digests field")?;
        let mut json = Vec::with_capacity(shell.len() + digests.len());
        json.extend_from_slice(&shell[..at + EMPTY.len() - 2]);
        json.extend_from_slice(&digests);
        json.extend_from_slice(&shell[at + EMPTY.len()..]);
        Ok((json, paths))
    }
}

/// How far the policy is behind the vdb.
#[derive(Debug, Default)]
pub struct Staleness {
    /// Installed packages the policy does not cover yet.
    pub missing: Vec<String>,
    /// Packages the policy covers that are no longer installed.
    pub gone: Vec<String>,
    pub packages: usize,
}

impl PolicyFiles {
    /// Compares the packages the state records with the vdb's (no CONTENTS
    /// read). An error when there is no policy or state yet.
    pub fn staleness(&self, vdb: &Vdb) -> Result<Staleness> {
        if !self.policy.exists() {
            bail!("{} does not exist", self.policy.display());
        }
        let state = State::read(&self.state)?;
        let state: BTreeSet<String> = state
            .packages()
            .into_iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        let installed: BTreeSet<String> = vdb
            .packages()
            .with_context(|| format!("cannot list {}", vdb.path().display()))?
            .iter()
            .map(|p| p.cpv().to_string())
            .collect();
        Ok(Staleness {
            missing: installed
                .iter()
                .filter(|c| !state.contains(*c))
                .cloned()
                .collect(),
            gone: state
                .iter()
                .filter(|c| !installed.contains(*c))
                .cloned()
                .collect(),
            packages: installed.len(),
        })
    }
}

/// Writes `data` to a new file beside `path`, syncs it, renames it over
/// `path` and syncs the directory: a reader (or a crash) sees the old file
/// or the new one, never half of one.
pub fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    // A policy is no secret: readable like any file (the temporary file is 0600).
    let readable = std::os::unix::fs::PermissionsExt::from_mode(0o644);
    tmp.write_all(data)
        .and_then(|()| tmp.as_file().set_permissions(readable))
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", tmp.path().display()))?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
