//! The signatures installed files carry, read from `security.ima` only (no
//! hashing): every `obj` of the vdb's CONTENTS, through the owner index.
//!
//! - `signature-keys`: a signature whose key id is not on the keyring IMA
//!   checks with is refused under enforce, exactly as a missing one. That is
//!   what remains after a key rotation (`sign --all --rotate`) until every
//!   file carries the new key, or when the old certificate was retired too
//!   early. When the keyring cannot be read (not root, another session), the
//!   configured certificate stands in for it.
//! - `policy-coverage`: the installed files the policy doctor read (the
//!   kernel check) covers but that carry no signature (nothing, a bare
//!   digest, or a value that does not decode). With
//!   `scope = "policy"` these are the files the scope skipped under an
//!   earlier, narrower policy; with `scope = "all"` files merged before the
//!   hook was set up. Evaluated like `policy --check` and `scope`
//!   ([`crate::policy::check::Coverage`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ima_core::{ImaXattr, KeyId};
use rayon::prelude::*;

use super::kernel::Kernel;
use super::{CheckId, Report};
use crate::escape::escape_path;
use crate::gentoo::owners::OwnerIndex;
use crate::gentoo::vdb::Vdb;
use crate::kernel::keyring;
use crate::plan::Location;
use crate::policy::check::Coverage;
use crate::settings::{Settings, SigningScope};

/// The checks, in report order.
pub(super) const CHECKS: &[CheckId] = &[CheckId::SignatureKeys, CheckId::PolicyCoverage];

/// How many example paths a finding names.
const EXAMPLES: usize = 2;

/// What an installed file's `security.ima` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stored {
    /// A v2 signature by this key.
    Signature(KeyId),
    /// A bare digest.
    Digest,
    /// Nothing.
    Nothing,
    /// A value that does not decode.
    Malformed,
    /// The file is gone or cannot be read.
    Unreadable,
}

/// `security.ima` of `path`, read by path without following a symlink
/// (nothing is hashed, so no descriptor is needed).
pub(crate) fn stored_value(path: &Path) -> Stored {
    let mut buf = vec![0u8; 1024];
    loop {
        match rustix::fs::lgetxattr(path, "security.ima", &mut buf[..]) {
            Ok(n) => {
                return match ImaXattr::decode(&buf[..n]) {
                    Ok(ImaXattr::Signature { keyid, .. }) => Stored::Signature(keyid),
                    Ok(ImaXattr::Digest { .. }) => Stored::Digest,
                    Err(_) => Stored::Malformed,
                }
            }
            Err(rustix::io::Errno::NODATA | rustix::io::Errno::NOTSUP) => return Stored::Nothing,
            Err(rustix::io::Errno::RANGE) if buf.len() < 1 << 16 => buf.resize(buf.len() * 4, 0),
            Err(_) => return Stored::Unreadable,
        }
    }
}

/// Files grouped under one name (a key id), with a few examples.
#[derive(Debug, Default)]
struct Group {
    count: usize,
    examples: Vec<PathBuf>,
}

impl Group {
    fn add(&mut self, path: &Path) {
        self.count += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(path.to_path_buf());
        }
    }

    fn examples(&self) -> String {
        let shown: Vec<_> = self.examples.iter().map(|p| escape_path(p)).collect();
        shown.join(", ")
    }
}

/// What the walk found: each installed file (as CONTENTS names it, and on
/// the host) with its stored value, by path.
struct Installed {
    files: Vec<(PathBuf, PathBuf, Stored)>,
}

/// Reads `security.ima` of every `obj` of the vdb under `root`, in parallel.
fn read_installed(location: &Location) -> std::io::Result<Installed> {
    let packages = Vdb::open(&location.eroot)?.packages()?;
    let index = OwnerIndex::build(packages, &location.root);
    // Sorted, so that the examples are the first files by path.
    let mut paths: Vec<&Path> = index.objects().map(|(path, _)| path).collect();
    paths.par_sort_unstable();
    let files = paths
        .into_par_iter()
        .map(|path| {
            let host = location.root.join(path.strip_prefix("/").unwrap_or(path));
            let stored = stored_value(&host);
            (path.to_path_buf(), host, stored)
        })
        .collect();
    Ok(Installed { files })
}

pub(super) fn check_signatures(
    r: &mut Report,
    s: Option<&Settings>,
    location: &Location,
    kernel: &Kernel,
) {
    let installed = match read_installed(location) {
        Ok(i) => i,
        Err(e) => {
            for &c in CHECKS {
                r.skip(c, format!("no installed packages to look at: {e}"));
            }
            return;
        }
    };
    check_keys(r, s, &installed);
    check_coverage(r, s, kernel, &location.root, &installed);
}

/// Where the installed files and the vdb are, for doctor's root (the config
/// root, whose etc/portage is read). On a prefix system that root is EROOT
/// (`${ROOT}${EPREFIX}`, where etc/portage and var/db/pkg are) and CONTENTS
/// names files with EPREFIX; otherwise it is ROOT.
pub(super) fn installed_location(root: &Path, var: impl Fn(&str) -> Option<String>) -> Location {
    let eprefix = var("EPREFIX").filter(|p| !p.is_empty() && p != "/");
    if let Some(eprefix) = eprefix {
        let relative = Path::new(&eprefix)
            .strip_prefix("/")
            .unwrap_or(Path::new(&eprefix));
        let mut real_root = root.to_path_buf();
        if real_root.ends_with(relative) {
            for _ in relative.components() {
                real_root.pop();
            }
            return Location::resolve(Some(&real_root), var);
        }
    }
    Location::resolve(Some(root), var)
}

/// The key ids the kernel accepts, and where they were read; the configured
/// certificate when the keyring cannot be read.
fn accepted_keys(s: Option<&Settings>) -> Option<(String, Vec<KeyId>)> {
    if let Some((name, ids)) = keyring::ima_keyring_key_ids() {
        return Some((format!("the {name} keyring"), ids));
    }
    let cert = s?.cert()?;
    let id = ima_core::Certificate::load(&cert).ok()?.key_id();
    Some((
        format!(
            "the configured certificate {} (no .ima or _ima keyring could be read here)",
            cert.display()
        ),
        vec![id],
    ))
}

fn check_keys(r: &mut Report, s: Option<&Settings>, installed: &Installed) {
    let Some((source, accepted)) = accepted_keys(s) else {
        r.skip(
            CheckId::SignatureKeys,
            "neither the kernel's IMA keyring nor a certificate could be read to compare with",
        );
        return;
    };
    let mut signed = 0;
    let mut foreign: HashMap<KeyId, Group> = HashMap::new();
    for (path, _, stored) in &installed.files {
        if let Stored::Signature(id) = stored {
            signed += 1;
            if !accepted.contains(id) {
                foreign.entry(*id).or_default().add(path);
            }
        }
    }
    if foreign.is_empty() {
        r.ok(
            CheckId::SignatureKeys,
            format!(
                "{signed} of {} installed files are signed, all by keys on {source}",
                installed.files.len()
            ),
        );
        return;
    }
    let mut groups: Vec<(KeyId, Group)> = foreign.into_iter().collect();
    groups.sort_by_key(|(id, g)| (std::cmp::Reverse(g.count), id.to_string()));
    let total: usize = groups.iter().map(|(_, g)| g.count).sum();
    let listed: Vec<String> = groups
        .iter()
        .map(|(id, g)| {
            format!(
                "key {id}: {} (e.g. {})",
                crate::report::count(g.count, "file"),
                g.examples()
            )
        })
        .collect();
    r.warn(
        CheckId::SignatureKeys,
        format!(
            "{total} installed files are signed by keys not on {source}, which the kernel \
             refuses under enforce: {}",
            listed.join("; ")
        ),
        format!(
            "re-sign them with the configured key while the old certificate is still loaded: \
             {}; or load that key's certificate: keyctl padd asymmetric '' %keyring:_ima < CERT",
            r.command("sign --all --rotate")
        ),
    );
}

fn check_coverage(
    r: &mut Report,
    s: Option<&Settings>,
    kernel: &Kernel,
    root: &Path,
    installed: &Installed,
) {
    let Some(loaded) = &kernel.policy else {
        r.skip(
            CheckId::PolicyCoverage,
            "no policy to evaluate (see the policy check)",
        );
        return;
    };
    let source = loaded.path.display().to_string();
    let coverage = Coverage::new(loaded.policy.clone(), source.clone());
    let uncovered: Vec<&PathBuf> = installed
        .files
        .par_iter()
        .filter(|(_, _, stored)| {
            matches!(stored, Stored::Nothing | Stored::Digest | Stored::Malformed)
        })
        .filter(|(_, host, _)| coverage.covers(root, host))
        .map(|(path, _, _)| path)
        .collect();
    let scope_policy = s.is_some_and(|s| s.scope == SigningScope::Policy);
    if uncovered.is_empty() {
        r.ok(
            CheckId::PolicyCoverage,
            format!(
                "every installed file {source} covers carries a signature{}",
                if scope_policy {
                    " (scope = \"policy\" skipped none of them)"
                } else {
                    ""
                }
            ),
        );
        return;
    }
    let examples: Vec<_> = uncovered
        .iter()
        .take(EXAMPLES)
        .map(|p| escape_path(p))
        .collect();
    let n = uncovered.len();
    let examples = examples.join(", ");
    if scope_policy {
        r.warn(
            CheckId::PolicyCoverage,
            format!(
                "{source}: covers {n} installed files that scope = \"policy\" skipped (no \
                 signature; e.g. {examples}): the kernel refuses them under enforce"
            ),
            format!(
                "sign them under this policy: {} (with this policy loaded, or scope = \"all\" \
                 in ima.toml, which signs every file whatever policy comes next)",
                r.command("sign --all")
            ),
        );
    } else {
        r.warn(
            CheckId::PolicyCoverage,
            format!(
                "{source}: covers {n} installed files without a signature (e.g. {examples}): \
                 the kernel refuses them under enforce"
            ),
            format!("sign them: {}", r.command("sign --all")),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_location_of_a_prefix_config_root() {
        let env = |eprefix: &'static str| move |n: &str| (n == "EPREFIX").then(|| eprefix.into());
        let prefix = installed_location(Path::new("/home/u/gentoo"), env("/home/u/gentoo"));
        assert_eq!(prefix.root, Path::new("/"));
        assert_eq!(prefix.eroot, Path::new("/home/u/gentoo"));
        let chroot = installed_location(Path::new("/mnt/gentoo"), env(""));
        assert_eq!(chroot.root, Path::new("/mnt/gentoo"));
        assert_eq!(chroot.eroot, Path::new("/mnt/gentoo"));
        let both = installed_location(
            Path::new("/mnt/gentoo/home/u/gentoo"),
            env("/home/u/gentoo"),
        );
        assert_eq!(both.root, Path::new("/mnt/gentoo"));
        assert_eq!(both.eroot, Path::new("/mnt/gentoo/home/u/gentoo"));
        // A root that is not the prefix: the prefix is under it.
        let other = installed_location(Path::new("/"), env("/home/u/gentoo"));
        assert_eq!(other.eroot, Path::new("/home/u/gentoo"));
    }

    #[test]
    fn stored_value_of_missing_and_plain_files() {
        let tmp = tempfile::tempdir().unwrap();
        let plain = tmp.path().join("plain");
        std::fs::write(&plain, b"x").unwrap();
        assert_eq!(stored_value(&plain), Stored::Nothing);
        assert_eq!(stored_value(&tmp.path().join("gone")), Stored::Unreadable);
    }

    #[test]
    fn stored_value_decodes_what_is_there() {
        // Writing security.* needs CAP_SYS_ADMIN.
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED stored_value_decodes_what_is_there: needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let set = |value: &[u8]| {
            rustix::fs::lsetxattr(
                &file,
                "security.ima",
                value,
                rustix::fs::XattrFlags::empty(),
            )
            .unwrap()
        };
        let keyid = KeyId([1, 2, 3, 4]);
        set(&ImaXattr::Signature {
            algo: ima_core::HashAlgo::Sha256,
            keyid,
            signature: vec![7; 256],
        }
        .encode());
        assert_eq!(stored_value(&file), Stored::Signature(keyid));
        set(&ImaXattr::Digest {
            algo: ima_core::HashAlgo::Sha256,
            digest: vec![0; 32],
        }
        .encode());
        assert_eq!(stored_value(&file), Stored::Digest);
        set(&[0x03, 0x02]);
        assert_eq!(stored_value(&file), Stored::Malformed);
    }
}
