//! Binary packages: the trusted certificates of a client (`mode = "verify"`
//! or `"sign-missing"`), and what each binary package format carries of the
//! signatures (see [`crate::binpkg`] for Portage's behaviour).

use ima_core::{Certificate, KeyId};

use super::{CheckId, Report};
use crate::binpkg::manifest::MANIFEST;
use crate::gentoo::env::XattrCopy;
use crate::gentoo::make_conf::Features;
use crate::settings::{Mode, Settings};

/// `trusted_certs`: every one loads; says which key id is whose. Returns
/// the key ids (a keyless client checks the kernel's keyring for the first).
pub(super) fn check_trusted_certs(r: &mut Report, s: &Settings) -> Vec<KeyId> {
    let mut ids = Vec::new();
    let mut shown = Vec::new();
    let mut broken = Vec::new();
    for path in &s.trusted_certs {
        match Certificate::load(path) {
            Ok(cert) => {
                ids.push(cert.key_id());
                shown.push(format!(
                    "key id {} = {} ({})",
                    cert.key_id(),
                    cert.subject(),
                    path.display()
                ));
            }
            Err(e) => broken.push(format!("{}: {e}", path.display())),
        }
    }
    let fix = "give DER or PEM X.509 certificates of the binary host's signing keys in \
               trusted_certs = [...] in ima.toml";
    if !broken.is_empty() {
        r.fail(CheckId::TrustedCerts, broken.join("; "), fix);
    } else if shown.is_empty() && s.mode == Mode::Verify && s.cert().is_none() {
        r.fail(
            CheckId::TrustedCerts,
            "mode = \"verify\" and no certificate: no signature can be kept, every file is \
             reported",
            fix,
        );
    } else if shown.is_empty() {
        r.ok(
            CheckId::TrustedCerts,
            format!(
                "none (mode = \"{}\"): only this host's own certificate counts",
                s.mode.as_str()
            ),
        );
    } else {
        r.ok(
            CheckId::TrustedCerts,
            format!("mode = \"{}\": {}", s.mode.as_str(), shown.join("; ")),
        );
    }
    ids
}

/// Binary packages built or installed here: what carries the signatures.
pub(super) fn check_binpkg(
    r: &mut Report,
    s: Option<&Settings>,
    features: &Features,
    copy: &XattrCopy,
) {
    let mode = s.map(|s| s.mode).unwrap_or_default();
    let xpak_xattrs = if copy.keeps_ima() {
        "an xpak's own security.ima xattrs are restored too (FEATURES=xattr, \
         PORTAGE_XATTR_EXCLUDE keeps security.ima)"
    } else {
        "an xpak's own security.ima xattrs are dropped at extraction (they survive only with \
         FEATURES=xattr and security.ima out of PORTAGE_XATTR_EXCLUDE)"
    };
    if mode != Mode::Sign {
        r.ok(
            CheckId::Binpkg,
            format!(
                "mode = \"{}\": emerge -K keeps each file's signature that verifies against a \
                 trusted certificate, applied from the package's {MANIFEST} (gpkg and xpak); \
                 {xpak_xattrs}",
                mode.as_str()
            ),
        );
        return;
    }
    if !features.contains("buildpkg") {
        r.ok(
            CheckId::Binpkg,
            format!(
                "no FEATURES=buildpkg: no binary packages are built here (when they are, the \
                 hook signs them in the package phase and lists the signatures in {MANIFEST})"
            ),
        );
    } else if features.contains("xattr") {
        r.ok(
            CheckId::Binpkg,
            format!(
                "FEATURES=buildpkg: the hook signs ${{D}} in the package phase; every package \
                 lists the signatures in its metadata ({MANIFEST}); xpak also stores the xattrs \
                 (FEATURES=xattr), gpkg cannot store xattrs"
            ),
        );
    } else {
        r.ok(
            CheckId::Binpkg,
            format!(
                "FEATURES=buildpkg: the hook signs ${{D}} in the package phase; every package \
                 lists the signatures in its metadata ({MANIFEST}); xpak stores the xattrs \
                 themselves only with FEATURES=xattr, gpkg never"
            ),
        );
    }
}
