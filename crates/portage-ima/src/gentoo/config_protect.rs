//! CONFIG_PROTECT and CONFIG_PROTECT_MASK: which merged files Portage
//! protects as config files, by its own rule (the longest matching entry
//! wins), read from the environment or from `portageq envvar`.

use std::path::{Path, PathBuf};

use super::vars::Vars;

/// CONFIG_PROTECT and CONFIG_PROTECT_MASK, for the `config_files` setting.
#[derive(Debug, Default, Clone)]
pub struct ConfigProtect {
    protect: Vec<PathBuf>,
    mask: Vec<PathBuf>,
}

impl ConfigProtect {
    /// From the environment, else from `portageq envvar` (Portage does not
    /// pass these into the ebuild environment), else `/etc`.
    pub fn discover(eprefix: &Path, vars: &Vars) -> ConfigProtect {
        let (protect, mask) = match (vars.get("CONFIG_PROTECT"), vars.get("CONFIG_PROTECT_MASK")) {
            (Some(p), m) => (p, m.unwrap_or_default()),
            (None, _) => {
                portageq_config_protect(vars).unwrap_or_else(|| ("/etc".into(), String::new()))
            }
        };
        ConfigProtect::new(eprefix, &protect, &mask)
    }

    /// Lists are space-separated paths relative to EPREFIX, as Portage writes them.
    pub fn new(eprefix: &Path, protect: &str, mask: &str) -> ConfigProtect {
        let list = |s: &str| -> Vec<PathBuf> {
            s.split_whitespace()
                .map(|p| {
                    let rel = p.trim_start_matches('/');
                    let mut full = PathBuf::from("/");
                    full.push(eprefix.strip_prefix("/").unwrap_or(eprefix));
                    full.push(rel);
                    full
                })
                .collect()
        };
        ConfigProtect {
            protect: list(protect),
            mask: list(mask),
        }
    }

    /// Portage's rule: protected when the longest matching CONFIG_PROTECT
    /// entry is longer than the longest matching mask entry.
    pub fn is_protected(&self, path: &Path) -> bool {
        let longest = |list: &[PathBuf]| {
            list.iter()
                .filter(|dir| path.starts_with(dir))
                .map(|dir| dir.as_os_str().len())
                .max()
        };
        match (longest(&self.protect), longest(&self.mask)) {
            (Some(p), Some(m)) => p > m,
            (Some(_), None) => true,
            _ => false,
        }
    }
}

/// `portageq envvar`, never found through `PATH` inside Portage
/// (see [`crate::gentoo::portageq::portageq_command`]).
fn portageq_config_protect(vars: &Vars) -> Option<(String, String)> {
    let out = super::portageq::portageq_command(vars)?
        .args(["envvar", "CONFIG_PROTECT", "CONFIG_PROTECT_MASK"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    Some((
        lines.next()?.to_string(),
        lines.next().unwrap_or("").to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_protect_follows_portage_rule() {
        let cp = ConfigProtect::new(
            Path::new(""),
            "/etc /usr/share/config",
            "/etc/env.d /etc/gconf",
        );
        assert!(cp.is_protected(Path::new("/etc/foo.conf")));
        assert!(!cp.is_protected(Path::new("/etc/env.d/99foo")));
        assert!(cp.is_protected(Path::new("/usr/share/config/x")));
        assert!(!cp.is_protected(Path::new("/usr/bin/foo")));
        assert!(!cp.is_protected(Path::new("/etcetera/x")));
    }

    #[test]
    fn config_protect_is_relative_to_eprefix() {
        let cp = ConfigProtect::new(Path::new("/opt/gentoo"), "/etc", "");
        assert!(cp.is_protected(Path::new("/opt/gentoo/etc/foo")));
        assert!(!cp.is_protected(Path::new("/etc/foo")));
    }
}
