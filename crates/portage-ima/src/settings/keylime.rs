//! `[keylime]` in ima.toml: the Keylime runtime policy the hook keeps and
//! the verifier it is pushed to (docs/keylime.md).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What a kept Keylime runtime policy holds (`[keylime] mode`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeylimeMode {
    /// The digest of every installed file, no keys: only what is installed
    /// now is accepted, so an older signed file copied back is caught.
    #[default]
    Digests,
    /// Only the certificates' keys: any file signed by them is accepted,
    /// an older version too.
    Keys,
    /// Both: a valid signature or a listed digest is enough.
    Both,
}

impl KeylimeMode {
    /// The value as written in ima.toml.
    pub fn name(self) -> &'static str {
        match self {
            KeylimeMode::Digests => "digests",
            KeylimeMode::Keys => "keys",
            KeylimeMode::Both => "both",
        }
    }
}

/// `[keylime]` in ima.toml: a Keylime runtime policy the hook keeps current
/// (see docs/keylime.md), and the verifier it is pushed to.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeylimeConfig {
    /// The policy file, inside EROOT like the vdb
    /// [default: /var/lib/portage-ima/keylime-policy.json].
    pub policy: Option<PathBuf>,
    /// What the policy holds: digests, keys or both.
    #[serde(default)]
    pub mode: KeylimeMode,
    /// Python regular expressions of paths Keylime does not check.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// The verifier's base URL (`https://verifier:8881`); no push without it.
    pub verifier: Option<String>,
    /// The tenant's client certificate and key (PEM) for the verifier's mTLS.
    pub client_cert: Option<PathBuf>,
    /// The private key of `client_cert` (PEM).
    pub client_key: Option<PathBuf>,
    /// The CA that signed the verifier's server certificate (PEM).
    pub ca: Option<PathBuf>,
    /// The runtime policy's name on the verifier [default: the host name].
    pub policy_name: Option<String>,
    /// The verifier's REST API version [default: 2.5].
    pub api_version: Option<String>,
}

/// The default policy file, inside EROOT.
pub const DEFAULT_KEYLIME_POLICY: &str = "/var/lib/portage-ima/keylime-policy.json";

impl KeylimeConfig {
    /// The policy file for the system at `eroot` (empty or `/` for the host).
    pub fn policy_path(&self, eroot: &Path) -> PathBuf {
        let policy = self
            .policy
            .as_deref()
            .unwrap_or(Path::new(DEFAULT_KEYLIME_POLICY));
        let rel = policy.strip_prefix("/").unwrap_or(policy);
        if eroot.as_os_str().is_empty() {
            Path::new("/").join(rel)
        } else {
            eroot.join(rel)
        }
    }

    /// The name the policy has on the verifier.
    pub fn name(&self) -> String {
        self.policy_name.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "gentoo".into())
        })
    }
}
