//! The runtime policy the hook keeps current, one package at a time.
//!
//! Portage's order when a version replaces another: the new files are
//! merged, the old version's prerm and postrm run (its vdb entry still
//! there), its entry is deleted, then the new version's postinst runs with
//! a complete CONTENTS. An unmerge (`emerge -C`, `--depclean`) runs prerm
//! and postrm, then deletes the entry. So the hook takes a package's
//! digests out in postrm and puts the new ones in at postinst.
//!
//! To do that without reading every CONTENTS again, the state beside the
//! policy (one small file per package in `<policy>.state`, and
//! `<policy>.index`; see [`crate::keylime::store`]) records which package
//! gave which digest, and an update splices the entries it changes into
//! the policy it wrote last, so that it costs what the package costs (the
//! policy's bytes aside), not what the system holds.
//!
//! Every update also lists the vdb (directories only, no CONTENTS): a
//! package in the vdb that the state lacks (merged while the hook was
//! down, or killed) is digested, one the state has that the vdb lacks is
//! dropped. So any later update catches up, and the first one builds the
//! whole policy (what `keylime sync` does on purpose).
//!
//! One update at a time holds `<policy>.lock` (flock), so parallel merges
//! (`emerge --jobs`) never lose one another's change. Every file is written
//! to a temporary file, synced, and renamed over the old one: a crash
//! leaves the old file or the new one, never a torn one. The index is
//! removed before a package file changes and written after the policy: an
//! update that finds none (a crash or a kill in between) rebuilds the
//! policy from the package files.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ima_core::{CryptoProvider, HashAlgo};

use crate::escape::escape_text;
use crate::fs::atomic::{parent, replace, sync_directory, Durability};
use crate::fs::rootfs::RootDir;
use crate::gentoo::vdb::{InstalledPackage, Vdb};
use crate::keylime::policy::{digest_object, verification_keys, LeftOut, RuntimePolicy};
use crate::keylime::state::State;
use crate::keylime::store::{self, Digests, Index};
use crate::plan::Location;
use crate::settings::{KeylimeConfig, KeylimeMode, Settings};

/// The files beside the policy.
#[derive(Debug, Clone)]
pub struct PolicyFiles {
    /// The runtime policy Keylime's verifier is given (`[keylime] policy`,
    /// under EROOT).
    pub policy: PathBuf,
    /// The one-file state of earlier versions (`<policy>.packages`),
    /// replaced by `state_dir` and `index` (see [`crate::keylime::store`]).
    pub state: PathBuf,
    /// `<policy>.state`: one file per package.
    pub state_dir: PathBuf,
    /// `<policy>.index`.
    pub index: PathBuf,
    /// `<policy>.lock`: flocked for the length of one update.
    pub lock: PathBuf,
    /// The SHA-256 of the policy the verifier last accepted.
    pub pushed: PathBuf,
}

impl PolicyFiles {
    /// The files beside `policy`, named by appending a suffix to its name.
    pub fn new(policy: PathBuf) -> PolicyFiles {
        let beside = |suffix: &str| {
            let mut name = policy.clone().into_os_string();
            name.push(suffix);
            PathBuf::from(name)
        };
        PolicyFiles {
            state: beside(".packages"),
            state_dir: beside(".state"),
            index: beside(".index"),
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
    /// The policy and its state files.
    pub files: PolicyFiles,
    /// The vdb of the system the policy describes (`${EROOT}/var/db/pkg`).
    pub vdb: Vdb,
    /// ROOT, where the installed files are opened.
    pub root: RootDir,
    /// ROOT, canonical (for the symlink-resolved names).
    pub root_path: PathBuf,
    /// The crypto backend files are digested with.
    pub provider: &'static dyn CryptoProvider,
    /// The digest algorithm; must be the kernel's `ima_hash` for the
    /// measurements to match.
    pub algo: HashAlgo,
    /// What the policy holds: digests, keys or both (`[keylime] mode`).
    pub mode: KeylimeMode,
    /// `[keylime] exclude`: the policy's `excludes` regular expressions.
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
    /// Packages digested in this update, `CATEGORY/PF`.
    pub added: Vec<String>,
    /// Packages taken out (uninstalled, or the `remove` of the change),
    /// `CATEGORY/PF`; a package digested again is not listed here.
    pub removed: Vec<String>,
    /// Files the digested packages' CONTENTS list, left out ones included.
    pub files: usize,
    /// Paths with digests after the update (counted in `keys` mode too,
    /// where the policy's `digests` is written empty).
    pub paths: usize,
    /// Files of the digested packages that are not in the policy, and why.
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
        let dir = &self.files.state_dir;
        let installed: HashMap<String, InstalledPackage> = self
            .vdb
            .packages()
            .with_context(|| format!("cannot list {}", self.vdb.path().display()))?
            .into_iter()
            .map(|p| (p.cpv().to_string(), p))
            .collect();
        step("vdb listed");
        let on_disk = store::list_packages(dir)?;
        let known: BTreeSet<String> = if change.rebuild {
            BTreeSet::new()
        } else {
            on_disk.iter().cloned().collect()
        };
        step("state listed");
        let removing = |cpv: &str| change.remove.as_deref() == Some(cpv);
        let mut updated = Updated::default();
        let mut drop: BTreeSet<String> = known
            .iter()
            .filter(|cpv| !installed.contains_key(*cpv) || removing(cpv))
            .cloned()
            .collect();
        updated.removed = drop.iter().cloned().collect();
        let mut wanted: BTreeSet<String> = installed
            .keys()
            .filter(|cpv| !known.contains(*cpv) && !removing(cpv))
            .cloned()
            .collect();
        if let Some(cpv) = &change.refresh {
            if installed.contains_key(cpv) && !removing(cpv) {
                wanted.insert(cpv.clone());
                if known.contains(cpv) {
                    drop.insert(cpv.clone());
                }
            }
        }

        // The policy written last is the base to splice, if the index
        // says it is whole and agrees with the package files.
        let index = match (change.rebuild, self.mode) {
            (true, _) | (false, KeylimeMode::Keys) => None,
            (false, _) => Index::read(&self.files.index)
                .filter(|i| i.digests.is_some() && i.packages == on_disk.len()),
        };
        let old_policy = match &index {
            Some(_) => std::fs::read(&self.files.policy).ok(),
            None => None,
        };
        let mut base = old_policy
            .as_deref()
            .and_then(|p| Digests::find(p).ok())
            .filter(|d| {
                index.as_ref().and_then(|i| i.digests) == Some((d.object.len(), d.paths()))
            });
        let mut removed = Vec::new();
        if base.is_some() {
            for cpv in &drop {
                match store::read_package(&dir.join(store::package_file_name(cpv))) {
                    Ok(Some(pairs)) => removed.extend(pairs),
                    _ => {
                        base = None;
                        break;
                    }
                }
            }
        }
        let mut added = Vec::new();
        let (base, mut shared) = match base {
            Some(base) => (
                base,
                index.as_ref().map(|i| i.shared.clone()).unwrap_or_default(),
            ),
            None => {
                // Rebuilt from the package files: nothing is digested again
                // but the packages whose file is missing or damaged.
                removed.clear();
                for cpv in known.iter().filter(|c| !drop.contains(*c)) {
                    match store::read_package(&dir.join(store::package_file_name(cpv))) {
                        Ok(Some(pairs)) => added.extend(pairs),
                        _ => {
                            if installed.contains_key(cpv) && !removing(cpv) {
                                wanted.insert(cpv.clone());
                            }
                        }
                    }
                }
                (Digests::empty(), HashMap::new())
            }
        };
        step("state read");

        let mut new = Vec::new();
        for cpv in &wanted {
            let (mut pairs, files, left_out) = self.digest_package(&installed[cpv]);
            updated.files += files;
            updated.left_out.extend(left_out);
            pairs.sort_unstable();
            pairs.dedup();
            updated.added.push(cpv.clone());
            new.push((cpv, pairs));
        }
        step("digested");

        // From here until the index is written again, the package files and
        // the policy may disagree: no index says so to the next update.
        if index.is_some() || self.files.index.exists() {
            remove_file(&self.files.index)?;
            sync_directory(parent(&self.files.index))?;
        }
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let bulk = new.len() > 16;
        for (cpv, pairs) in &new {
            let path = dir.join(store::package_file_name(cpv));
            let durability = if bulk {
                Durability::Deferred
            } else {
                Durability::FileOnly
            };
            replace(&path, &[&store::package_bytes(pairs)], durability, no_hook)?;
            added.extend(pairs.iter().cloned());
        }
        let stale = if change.rebuild {
            &on_disk
        } else {
            &updated.removed
        };
        let mut files_now: BTreeSet<&String> = on_disk.iter().chain(&wanted).collect();
        for cpv in stale.iter().filter(|c| !wanted.contains(*c)) {
            remove_file(&dir.join(store::package_file_name(cpv)))?;
            files_now.remove(cpv);
        }
        if bulk {
            sync_filesystem(dir)?;
        }
        sync_directory(dir)?;
        step("state written");

        let touched = store::apply(&base, &mut shared, removed, added);
        let (digests, paths) = store::splice(&base, &touched);
        let (before, after) = self.policy_shell()?;
        updated.paths = paths;
        let digests_field = match self.mode {
            KeylimeMode::Keys => b"{}".as_slice(),
            KeylimeMode::Digests | KeylimeMode::Both => &digests,
        };
        replace(
            &self.files.policy,
            &[&before, digests_field, &after],
            Durability::Full,
            no_hook,
        )?;
        step("policy written");
        // Only once the package files and the policy are on disk. Its own
        // rename is not synced: lost in a crash, the next update rebuilds.
        let index = Index {
            packages: files_now.len(),
            digests: (self.mode != KeylimeMode::Keys).then_some((digests.len(), paths)),
            shared,
        };
        replace(
            &self.files.index,
            &[&index.to_bytes()],
            Durability::FileOnly,
            no_hook,
        )?;
        // The one-file state of earlier versions, rebuilt from by now.
        let _ = std::fs::remove_file(&self.files.state);
        step("index written");
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

    /// The policy in this mode, as JSON, before and after its `digests`
    /// object (written as it is: a map of every file would cost more than
    /// the rest of the update).
    fn policy_shell(&self) -> Result<(Vec<u8>, Vec<u8>)> {
        let keys = match self.mode {
            KeylimeMode::Digests => String::new(),
            KeylimeMode::Keys | KeylimeMode::Both => self.verification_keys.clone(),
        };
        let shell = RuntimePolicy::new(BTreeMap::new(), self.excludes.clone(), keys);
        let shell = serde_json::to_vec(&shell)?;
        // `"digests":{}` occurs once: every string value around it is
        // escaped JSON, so its quotes are `\"`.
        const EMPTY: &[u8] = b"\"digests\":{}";
        let at = memchr::memmem::find(&shell, EMPTY).context("the policy has no digests field")?;
        Ok((
            shell[..at + EMPTY.len() - 2].to_vec(),
            shell[at + EMPTY.len()..].to_vec(),
        ))
    }
}

/// How far the policy is behind the vdb.
#[derive(Debug, Default)]
pub struct Staleness {
    /// Installed packages the policy does not cover yet.
    pub missing: Vec<String>,
    /// Packages the policy covers that are no longer installed.
    pub gone: Vec<String>,
    /// Packages installed now (in the vdb).
    pub packages: usize,
}

impl PolicyFiles {
    /// Compares the packages the state records with the vdb's (no CONTENTS
    /// read). An error when there is no policy or state yet.
    pub fn staleness(&self, vdb: &Vdb) -> Result<Staleness> {
        if !self.policy.exists() {
            bail!("{} does not exist", self.policy.display());
        }
        let state: BTreeSet<String> = if self.state_dir.exists() || !self.state.exists() {
            store::list_packages(&self.state_dir)?.into_iter().collect()
        } else {
            // The one-file state of earlier versions, until the next update.
            State::read(&self.state)?
                .packages()
                .into_iter()
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect()
        };
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

/// Removes a file; one already gone is fine.
fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Nothing to do between writing a file and renaming it.
fn no_hook(_: &File, _: &Path) -> Result<()> {
    Ok(())
}

/// Syncs the file system holding `dir`: after many files written unsynced,
/// one call instead of one per file.
fn sync_filesystem(dir: &Path) -> Result<()> {
    let d = File::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
    rustix::fs::syncfs(&d).with_context(|| format!("cannot sync {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn install(root: &Path, cpv: &str, files: &[(&str, &str)]) {
        let vdb = root.join("var/db/pkg").join(cpv);
        std::fs::create_dir_all(&vdb).unwrap();
        let mut contents = String::new();
        for (path, content) in files {
            let on_disk = root.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(on_disk.parent().unwrap()).unwrap();
            std::fs::write(&on_disk, content).unwrap();
            let file = File::open(&on_disk).unwrap();
            let md5 =
                ima_core::digest_file(ima_core::default_provider(), &file, HashAlgo::Md5, false)
                    .unwrap();
            contents.push_str(&format!("obj {path} {} 1\n", hex::encode(md5.digest)));
        }
        std::fs::write(vdb.join("CONTENTS"), contents).unwrap();
    }

    fn uninstall(root: &Path, cpv: &str) {
        std::fs::remove_dir_all(root.join("var/db/pkg").join(cpv)).unwrap();
    }

    fn keeper(root: &Path) -> Keeper {
        Keeper {
            files: PolicyFiles::new(root.join("var/lib/portage-ima/keylime-policy.json")),
            vdb: Vdb::open(root).unwrap(),
            root: RootDir::open(root).unwrap(),
            root_path: std::fs::canonicalize(root).unwrap(),
            provider: ima_core::default_provider(),
            algo: HashAlgo::Sha256,
            mode: KeylimeMode::Digests,
            excludes: Vec::new(),
            verification_keys: String::new(),
        }
    }

    fn digests(k: &Keeper) -> serde_json::Value {
        let policy: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&k.files.policy).unwrap()).unwrap();
        policy["digests"].clone()
    }

    /// After `change`, the policy and the index are what a rebuild from
    /// the vdb gives.
    fn update_and_compare(k: &Keeper, change: Change) -> serde_json::Value {
        k.update(&change).unwrap();
        let incremental = digests(k);
        let index = std::fs::read(&k.files.index).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let fresh = PolicyFiles::new(tmp.path().join("p.json"));
        let other = Keeper {
            files: fresh,
            ..keeper(&k.root_path)
        };
        other
            .update(&Change {
                rebuild: true,
                remove: change.remove.clone(),
                ..Change::default()
            })
            .unwrap();
        assert_eq!(incremental, digests(&other));
        assert_eq!(index, std::fs::read(&other.files.index).unwrap());
        incremental
    }

    #[test]
    fn incremental_updates_equal_rebuilds() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        install(
            root,
            "app/a-1",
            &[("/usr/bin/a", "a1"), ("/usr/share/s", "same")],
        );
        install(
            root,
            "app/b-1",
            &[("/usr/bin/b", "b1"), ("/usr/share/s", "same")],
        );
        install(root, "app/empty-1", &[]);
        let k = keeper(root);
        let d = update_and_compare(&k, Change::default());
        assert_eq!(d.as_object().unwrap().len(), 3);
        // An upgrade: a-1's postrm (a-2 already merged), then a-2's postinst.
        install(
            root,
            "app/a-2",
            &[("/usr/bin/a", "a2"), ("/usr/share/s", "same")],
        );
        update_and_compare(
            &k,
            Change {
                remove: Some("app/a-1".into()),
                ..Change::default()
            },
        );
        uninstall(root, "app/a-1");
        let d = update_and_compare(
            &k,
            Change {
                refresh: Some("app/a-2".into()),
                ..Change::default()
            },
        );
        assert_eq!(d["/usr/bin/a"].as_array().unwrap().len(), 1);
        // b unmerged: the shared file stays, a-2 still gives it.
        uninstall(root, "app/b-1");
        let d = update_and_compare(&k, Change::default());
        assert!(d.get("/usr/bin/b").is_none() && d.get("/usr/share/s").is_some());
        // A kill between the package files and the index: rebuilt.
        install(root, "app/c-1", &[("/usr/bin/c", "c")]);
        std::fs::remove_file(&k.files.index).unwrap();
        let d = update_and_compare(&k, Change::default());
        assert!(d.get("/usr/bin/c").is_some());
        // A package file removed by hand: digested again.
        std::fs::remove_file(k.files.state_dir.join("app:c-1")).unwrap();
        update_and_compare(&k, Change::default());
        // The one-file state of earlier versions: replaced.
        std::fs::write(&k.files.state, "portage-ima keylime state 2\n").unwrap();
        std::fs::remove_dir_all(&k.files.state_dir).unwrap();
        std::fs::remove_file(&k.files.index).unwrap();
        update_and_compare(&k, Change::default());
        assert!(!k.files.state.exists());
    }
}
