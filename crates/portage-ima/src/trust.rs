//! The keys a verification trusts, from the settings: the certificates
//! given, else the configured certificate and a binary host's
//! `trusted_certs`, else the configured key's public half; and the key id
//! `sign` writes, which `verify` expects. Used by `verify`, `audit` and
//! `policy --check`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use ima_core::KeySet;

use crate::settings::Settings;

/// The keys `verify` checks against: the certificates given, else the
/// configured certificate and `trusted_certs` (a binary host's), else the
/// public half of the configured key; the configured key's id is the one
/// expected (see [`configured_key_id`]).
pub(crate) fn key_set(settings: &Settings, certs: &[PathBuf]) -> Result<KeySet> {
    let mut keys = KeySet::new(settings.backend);
    let certs: Vec<_> = if certs.is_empty() {
        settings
            .cert()
            .into_iter()
            .chain(settings.trusted_certs.iter().cloned())
            .collect()
    } else {
        certs.to_vec()
    };
    for path in &certs {
        let cert = ima_core::Certificate::load(path)?;
        keys.add_certificate(&cert)?;
    }
    if keys.is_empty() && settings.mode == crate::settings::Mode::Verify {
        bail!(
            "no certificate to verify with: give --cert FILE, or set trusted_certs = [...] \
             in ima.toml (mode = \"verify\" never reads the private key)"
        );
    }
    if keys.is_empty() {
        match ima_core::KeyMaterial::load(&settings.key, None) {
            Ok(key) => {
                keys.add_key(&key)?;
            }
            Err(e) => bail!(
                "no certificate to verify with: give --cert FILE, set `cert` in ima.toml, \
                 or install {} (the key {} did not load either: {e})",
                crate::settings::DEFAULT_CERT,
                settings.key_shown()
            ),
        }
    }
    if let Some(id) = configured_key_id(settings) {
        keys.expect_key(id);
    }
    Ok(keys)
}

/// The key id `sign` writes: the `keyid` setting, else the configured
/// certificate's, else the configured key's. A valid signature by another
/// key of the set is `other-key`. None when neither loads (then every
/// valid signature is `ok`).
fn configured_key_id(settings: &Settings) -> Option<ima_core::KeyId> {
    if let Some(id) = settings.keyid {
        return Some(id);
    }
    // A verify-only client signs nothing: every trusted key is as good.
    if settings.mode == crate::settings::Mode::Verify {
        return None;
    }
    if let Some(cert) = settings.cert() {
        if let Ok(cert) = ima_core::Certificate::load(&cert) {
            return Some(cert.key_id());
        }
    }
    ima_core::KeyMaterial::load(&settings.key, None)
        .ok()
        .map(|key| key.key_id())
}
