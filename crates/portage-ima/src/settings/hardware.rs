//! `[hardware]` in ima.toml: reaching a key held by a TPM or a PKCS#11
//! token, and where its PIN comes from (never an ebuild's environment).

use std::path::PathBuf;

use anyhow::{bail, Result};
use serde::Deserialize;

use super::ebuild_phase;

/// `[hardware]` in ima.toml: how to reach a key held by a TPM or a PKCS#11
/// token (`key = "pkcs11:..."`, `"handle:0x81000001"` or a TSS2 key file).
/// The PIN comes from a file or the environment, never from the command line.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareConfig {
    /// OpenSSL 3 provider (default for TPM keys: `tpm2`).
    pub provider: Option<String>,
    /// OpenSSL engine (default for `pkcs11:` URIs: `pkcs11`).
    pub engine: Option<String>,
    /// The PKCS#11 module the engine loads.
    pub module: Option<PathBuf>,
    /// A file (mode 0400) whose first line is the PIN.
    pub pin_file: Option<PathBuf>,
    /// An environment variable holding the PIN, for interactive commands
    /// only: refused inside an ebuild phase ([`HardwareConfig::options`]).
    pub pin_env: Option<String>,
}

/// The variable the README once suggested for the PIN; the snippet keeps it
/// out of every package's saved environment whatever `pin_env` says.
pub const DEFAULT_PIN_ENV: &str = "IMA_TOKEN_PIN";

impl HardwareConfig {
    /// The options for [`ima_core::HardwareKey::open`], with the PIN read.
    ///
    /// Inside an ebuild phase (`EBUILD_PHASE` set: the hook, or a command an
    /// ebuild runs) `pin_env` is refused: a variable exported where emerge
    /// runs is part of the ebuild environment, which Portage saves at the end
    /// of each phase into `${T}/environment`, and from there into every
    /// package's world-readable `/var/db/pkg/CAT/PF/environment.bz2` and into
    /// binary packages.
    pub fn options(&self) -> Result<ima_core::HardwareOptions> {
        if let (Some(var), Some(phase)) = (&self.pin_env, ebuild_phase()) {
            bail!(
                "[hardware]: pin_env = \"{var}\" is refused inside an emerge (ebuild phase \
                 {phase}): Portage saves the ebuild environment, and so the PIN, into every \
                 package's /var/db/pkg/CAT/PF/environment.bz2 (readable by all) and into \
                 binary packages. Write the PIN to a file readable by root only and set \
                 pin_file = \"/etc/portage/ima-token.pin\" instead of pin_env, remove {var} \
                 from emerge's environment, then run `portage-ima doctor` to find the packages \
                 that already carry it"
            );
        }
        let pin = match (&self.pin_file, &self.pin_env) {
            (Some(_), Some(_)) => {
                bail!("[hardware]: set pin_file or pin_env, not both")
            }
            (Some(file), None) => Some(ima_core::read_pin_file(file)?),
            (None, Some(var)) => Some(ima_core::Pin::new(std::env::var(var).map_err(|_| {
                anyhow::anyhow!(
                    "[hardware]: pin_env names the environment variable {var}, which is not \
                     set (or not UTF-8); export it where portage-ima runs, or use pin_file"
                )
            })?)),
            (None, None) => None,
        };
        Ok(ima_core::HardwareOptions {
            provider: self.provider.clone(),
            engine: self.engine.clone(),
            module: self.module.clone(),
            pin,
        })
    }
}
