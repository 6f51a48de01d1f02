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
//! policy (`<policy>.packages`) records which package gave which digest:
//!
//! ```text
//! portage-ima keylime state 1
//! app-misc/foo-1.0<TAB><sha256 hex><TAB>/usr/bin/foo
//! app-misc/empty-1                  (a package with no file in the policy)
//! ```
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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ima_core::{CryptoProvider, HashAlgo};

use crate::escape::escape_text;
use crate::fs::rootfs::RootDir;
use crate::gentoo::vdb::{InstalledPackage, Vdb};
use crate::keylime::policy::{
    add_digest, digest_object, verification_keys, LeftOut, RuntimePolicy,
};
use crate::plan::Location;
use crate::settings::{KeylimeConfig, KeylimeMode, Settings};

const STATE_HEADER: &str = "portage-ima keylime state 1";

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

/// Per package, the (name, digest) pairs it puts in the policy.
type State = BTreeMap<String, Vec<(String, String)>>;

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
        step("locked");
        let mut state = if change.rebuild {
            State::new()
        } else {
            read_state(&self.files.state)?
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
        let mut updated = Updated::default();
        let gone: Vec<String> = state
            .keys()
            .filter(|cpv| !installed.contains_key(*cpv) || change.remove.as_ref() == Some(*cpv))
            .cloned()
            .collect();
        for cpv in gone {
            state.remove(&cpv);
            updated.removed.push(cpv);
        }
        let mut wanted: BTreeSet<&String> = installed
            .keys()
            .filter(|cpv| !state.contains_key(*cpv) && change.remove.as_ref() != Some(*cpv))
            .collect();
        if let Some(cpv) = &change.refresh {
            if installed.contains_key(cpv) && change.remove.as_ref() != Some(cpv) {
                wanted.insert(cpv);
            }
        }
        for cpv in wanted {
            let (pairs, files, left_out) = self.digest_package(&installed[cpv]);
            updated.files += files;
            updated.left_out.extend(left_out);
            state.insert(cpv.clone(), pairs);
            updated.added.push(cpv.clone());
        }
        step("digested");
        write_atomically(&self.files.state, &state_bytes(&state))?;
        step("state written");
        let policy = self.policy(&state);
        updated.paths = policy.digests.len();
        let json = serde_json::to_vec(&policy)?;
        step("policy built");
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

    /// The policy the state gives in this mode.
    pub fn policy(&self, state: &State) -> RuntimePolicy {
        let mut digests = BTreeMap::new();
        if self.mode != KeylimeMode::Keys {
            for pairs in state.values() {
                for (name, digest) in pairs {
                    add_digest(&mut digests, name.clone(), digest);
                }
            }
        }
        let keys = match self.mode {
            KeylimeMode::Digests => String::new(),
            KeylimeMode::Keys | KeylimeMode::Both => self.verification_keys.clone(),
        };
        RuntimePolicy::new(digests, self.excludes.clone(), keys)
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
        let state = read_state(&self.state)?;
        let installed: BTreeSet<String> = vdb
            .packages()
            .with_context(|| format!("cannot list {}", vdb.path().display()))?
            .iter()
            .map(|p| p.cpv().to_string())
            .collect();
        Ok(Staleness {
            missing: installed
                .iter()
                .filter(|c| !state.contains_key(*c))
                .cloned()
                .collect(),
            gone: state
                .keys()
                .filter(|c| !installed.contains(*c))
                .cloned()
                .collect(),
            packages: installed.len(),
        })
    }
}

/// Reads the state file; a missing one is empty (the update then digests
/// every package).
fn read_state(path: &Path) -> Result<State> {
    let data = match std::fs::read_to_string(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    parse_state(&data).with_context(|| {
        format!(
            "{} is damaged; run `portage-ima keylime sync` to rebuild it",
            path.display()
        )
    })
}

fn parse_state(data: &str) -> Result<State> {
    let mut lines = data.lines();
    if lines.next() != Some(STATE_HEADER) {
        bail!("the first line is not `{STATE_HEADER}`");
    }
    let mut state = State::new();
    for (n, line) in lines.enumerate() {
        let mut fields = line.splitn(3, '\t');
        let cpv = fields.next().unwrap_or_default();
        let pairs = state.entry(cpv.to_string()).or_default();
        match (fields.next(), fields.next()) {
            (None, None) => {}
            (Some(digest), Some(name)) if !name.is_empty() => {
                pairs.push((name.to_string(), digest.to_string()));
            }
            _ => bail!("line {}: not `CPV<TAB>DIGEST<TAB>PATH`", n + 2),
        }
    }
    Ok(state)
}

fn state_bytes(state: &State) -> Vec<u8> {
    let mut out = String::with_capacity(state.len() * 128);
    out.push_str(STATE_HEADER);
    out.push('\n');
    for (cpv, pairs) in state {
        if pairs.is_empty() {
            out.push_str(cpv);
            out.push('\n');
        }
        for (name, digest) in pairs {
            out.push_str(cpv);
            out.push('\t');
            out.push_str(digest);
            out.push('\t');
            out.push_str(name);
            out.push('\n');
        }
    }
    out.into_bytes()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trip() {
        let mut state = State::new();
        state.insert(
            "app-misc/foo-1.0".into(),
            vec![("/usr/bin/foo bar".into(), "ab".repeat(32))],
        );
        state.insert("app-misc/empty-1".into(), Vec::new());
        let bytes = state_bytes(&state);
        assert_eq!(
            parse_state(std::str::from_utf8(&bytes).unwrap()).unwrap(),
            state
        );
    }

    #[test]
    fn damaged_state_is_refused() {
        assert!(parse_state("something else\n").is_err());
        assert!(parse_state(&format!("{STATE_HEADER}\napp-misc/foo-1\tab\n")).is_err());
    }
}
