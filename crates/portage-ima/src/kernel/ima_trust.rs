//! Whether the running kernel accepts a certificate on its IMA keyring, and
//! why not: the kernel's own rules, read from its source, applied to a
//! certificate, the kernel's configuration and the keys on its trusted
//! keyrings. Used by `doctor` (each configured certificate) and `setup`
//! (whether the machine keyring path is open). Nothing here prints.
//!
//! The rules (Linux 6.x):
//!
//! - Without `CONFIG_INTEGRITY_TRUSTED_KEYRING` IMA's keyring is `_ima`
//!   (security/integrity/digsig.c, `keyring_name`), a keyring userspace
//!   makes with no restriction: any certificate the kernel can parse goes
//!   on. Parsing an ECDSA key needs `CONFIG_CRYPTO_ECDSA`.
//! - With it, the kernel makes `.ima` restricted by `restrict_link_to_ima`
//!   (digsig.c, `integrity_init_keyring`): that is
//!   `restrict_link_by_digsig_builtin_and_secondary` with
//!   `CONFIG_IMA_KEYRINGS_PERMIT_SIGNED_BY_BUILTIN_OR_SECONDARY`, else
//!   `restrict_link_by_digsig_builtin` (certs/system_keyring.c). Both call
//!   `restrict_link_by_digsig` (crypto/asymmetric_keys/restrict.c), which
//!   refuses (ENOKEY) a certificate without keyUsage digitalSignature, a CA
//!   (basicConstraints cA) and one with keyUsage keyCertSign, then
//!   `restrict_link_by_signature`: the key named by the certificate's
//!   Authority Key Identifier must be on the trust keyring (ENOKEY if not,
//!   so a self-signed certificate is refused), and its signature must verify
//!   (EKEYREJECTED; ENOPKG for an algorithm the kernel lacks, such as an
//!   ECDSA signature without `CONFIG_CRYPTO_ECDSA`).
//! - The trust keyring is `.builtin_trusted_keys` (`CONFIG_SYSTEM_TRUSTED_KEYS`
//!   and the module signing key), or with the option above
//!   `.secondary_trusted_keys`, which links the builtin keyring and, with
//!   `CONFIG_INTEGRITY_MACHINE_KEYRING`, `.machine` (`set_machine_trusted_keys`,
//!   only when `imputed_trust_enabled()`: on UEFI, when shim exposes
//!   `MokListTrustedRT`, security/integrity/platform_certs/machine_keyring.c).
//! - `.machine` holds the Machine Owner Keys; with
//!   `CONFIG_INTEGRITY_CA_MACHINE_KEYRING` only CAs go on
//!   (`restrict_link_by_ca`: cA and keyCertSign, and with
//!   `CONFIG_INTEGRITY_CA_MACHINE_KEYRING_MAX` not digitalSignature); a MOK
//!   refused there lands on `.platform`, which `.ima` does not trust
//!   (`add_to_machine_keyring`).
//!
//! Loading through `CONFIG_IMA_LOAD_X509` goes through the same restriction
//! (`integrity_add_key` adds without KEY_ALLOC_BYPASS_RESTRICTION).
//!
//! The signer is looked up here the way the kernel does when the
//! certificate has an Authority Key Identifier: by that identifier, against
//! the Subject Key Identifier each trusted key's description carries
//! (`x509_key_preparse`: "SUBJECT: SKID-hex"). Whether the signature itself
//! verifies is left to the kernel: a found signer is reported as such.

use std::fmt;

use ima_core::{Certificate, KeyAlgorithm};

use super::config::KernelConfig;
use super::keyring::{keyring_members, ProcKey};

/// What of the kernel's build configuration decides which certificates its
/// IMA keyring takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TrustConfig {
    /// `CONFIG_INTEGRITY_TRUSTED_KEYRING`: the keyring is `.ima`, restricted.
    pub(crate) trusted_keyring: bool,
    /// `CONFIG_IMA_KEYRINGS_PERMIT_SIGNED_BY_BUILTIN_OR_SECONDARY`: signers
    /// on the secondary (and so the machine) keyring count too.
    pub(crate) permit_secondary: bool,
    /// `CONFIG_INTEGRITY_MACHINE_KEYRING`: MOKs on `.machine`.
    pub(crate) machine_keyring: bool,
    /// `CONFIG_INTEGRITY_CA_MACHINE_KEYRING`: only CAs on `.machine`.
    pub(crate) ca_machine_keyring: bool,
    /// `CONFIG_INTEGRITY_CA_MACHINE_KEYRING_MAX`: and without digitalSignature.
    pub(crate) ca_machine_keyring_max: bool,
    /// `CONFIG_CRYPTO_ECDSA` (y or m): ECDSA keys and signatures.
    pub(crate) ecdsa: bool,
}

impl TrustConfig {
    /// Reads the options from a kernel configuration (`=y` or `=m`).
    pub(crate) fn from_config(config: &KernelConfig) -> Self {
        let set = |o: &str| config.set(o);
        TrustConfig {
            trusted_keyring: set("CONFIG_INTEGRITY_TRUSTED_KEYRING"),
            permit_secondary: set("CONFIG_IMA_KEYRINGS_PERMIT_SIGNED_BY_BUILTIN_OR_SECONDARY"),
            machine_keyring: set("CONFIG_INTEGRITY_MACHINE_KEYRING"),
            ca_machine_keyring: set("CONFIG_INTEGRITY_CA_MACHINE_KEYRING"),
            ca_machine_keyring_max: set("CONFIG_INTEGRITY_CA_MACHINE_KEYRING_MAX"),
            ecdsa: set("CONFIG_CRYPTO_ECDSA"),
        }
    }

    /// The keyrings `.ima`'s restriction searches for a signer.
    pub(crate) fn searched(&self) -> &'static [TrustedKeyring] {
        match (self.permit_secondary, self.machine_keyring) {
            (false, _) => &[TrustedKeyring::Builtin],
            (true, false) => &[TrustedKeyring::Builtin, TrustedKeyring::Secondary],
            (true, true) => &[
                TrustedKeyring::Builtin,
                TrustedKeyring::Secondary,
                TrustedKeyring::Machine,
            ],
        }
    }
}

/// A kernel keyring that can vouch for a key on `.ima`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TrustedKeyring {
    /// `.builtin_trusted_keys`: compiled in.
    Builtin,
    /// `.secondary_trusted_keys`: added at run time, vouched for.
    Secondary,
    /// `.machine`: Machine Owner Keys from shim.
    Machine,
    /// `.platform`: firmware and refused MOKs; never trusted for `.ima`.
    Platform,
}

impl TrustedKeyring {
    /// Every keyring a signer may be found on, by its kernel name.
    pub(crate) const ALL: [TrustedKeyring; 4] = [
        TrustedKeyring::Builtin,
        TrustedKeyring::Secondary,
        TrustedKeyring::Machine,
        TrustedKeyring::Platform,
    ];

    /// The keyring's name in /proc/keys.
    pub(crate) fn name(self) -> &'static str {
        match self {
            TrustedKeyring::Builtin => ".builtin_trusted_keys",
            TrustedKeyring::Secondary => ".secondary_trusted_keys",
            TrustedKeyring::Machine => ".machine",
            TrustedKeyring::Platform => ".platform",
        }
    }
}

/// A key on one of the kernel's trusted keyrings, as /proc/keys shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TrustedKey {
    /// The keyring it is on.
    pub(crate) keyring: TrustedKeyring,
    /// Its description: "SUBJECT: SKID-hex".
    pub(crate) description: String,
}

impl TrustedKey {
    /// The Subject Key Identifier in its description (`x509_key_preparse`
    /// names the key "SUBJECT: hex", the hex being the SKID, else the
    /// serial number).
    pub(crate) fn skid_hex(&self) -> Option<&str> {
        let (_, hex) = self.description.rsplit_once(": ")?;
        Some(hex.trim()).filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
    }
}

/// The asymmetric keys on the kernel's trusted keyrings, found in
/// /proc/keys and listed with keyctl (each keyring's own members: the
/// secondary keyring's link to the builtin one is not followed).
pub(crate) fn trusted_keys(keys: &[ProcKey]) -> Vec<TrustedKey> {
    let mut found = Vec::new();
    for ring in TrustedKeyring::ALL {
        let Some(serial) = keys
            .iter()
            .find(|k| k.keyring_name() == Some(ring.name()))
            .map(|k| k.serial)
        else {
            continue;
        };
        found.extend(keys_on(keys, serial, ring));
    }
    found
}

/// The asymmetric keys linked into the keyring `serial`, as keys of `ring`.
pub(crate) fn keys_on(keys: &[ProcKey], serial: i32, ring: TrustedKeyring) -> Vec<TrustedKey> {
    let members = keyring_members(serial).unwrap_or_default();
    keys.iter()
        .filter(|k| k.kind == "asymmetri" && members.contains(&k.serial))
        .map(|k| TrustedKey {
            keyring: ring,
            description: proc_key_name(&k.description),
        })
        .collect()
}

/// An asymmetric key's description without what /proc/keys appends
/// ("SUBJECT: SKID: X509.rsa 1a2b3c4d []" -> "SUBJECT: SKID").
fn proc_key_name(description: &str) -> String {
    match description.rfind(": X509.") {
        Some(end) => description[..end].to_string(),
        None => description.trim_end().to_string(),
    }
}

/// Why the kernel refuses a certificate on `.ima`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// An ECDSA key or signature on a kernel without `CONFIG_CRYPTO_ECDSA`.
    NoEcdsa {
        /// What needs ECDSA: "its P-256 key" or "its ECDSA signature".
        what: &'static str,
    },
    /// keyUsage lacks digitalSignature (or there is no keyUsage).
    NoDigitalSignature,
    /// basicConstraints says cA.
    Ca,
    /// keyUsage has keyCertSign.
    KeyCertSign,
    /// Signed by itself: no trusted key vouches for it.
    SelfSigned,
    /// No Authority Key Identifier to find the signer by.
    NoAuthorityKeyId,
    /// No key with the Authority Key Identifier is on a searched keyring.
    SignerNotTrusted {
        /// The Authority Key Identifier, hex.
        akid: String,
        /// Where the signer was found instead, if anywhere.
        elsewhere: Option<TrustedKeyring>,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoEcdsa { what } => write!(
                f,
                "{what} needs ECDSA, and the kernel has no CONFIG_CRYPTO_ECDSA"
            ),
            Refusal::NoDigitalSignature => write!(
                f,
                "keyUsage lacks digitalSignature (restrict_link_by_digsig requires it)"
            ),
            Refusal::Ca => write!(f, "it is a CA (basicConstraints cA): .ima takes no CA"),
            Refusal::KeyCertSign => write!(f, "keyUsage has keyCertSign: .ima takes no CA key"),
            Refusal::SelfSigned => write!(
                f,
                "it is self-signed: .ima takes only certificates signed by a key on the kernel's \
                 trusted keyrings"
            ),
            Refusal::NoAuthorityKeyId => write!(
                f,
                "it has no authorityKeyIdentifier, and no trusted key's subject matches its issuer"
            ),
            Refusal::SignerNotTrusted {
                akid,
                elsewhere: None,
            } => write!(
                f,
                "its signer (authorityKeyIdentifier {akid}) is on no keyring .ima trusts"
            ),
            Refusal::SignerNotTrusted {
                akid,
                elsewhere: Some(ring),
            } => {
                write!(
                    f,
                    "its signer (authorityKeyIdentifier {akid}) is on {}, ",
                    ring.name()
                )?;
                match ring {
                    TrustedKeyring::Platform => write!(
                        f,
                        "which .ima never trusts (a MOK the machine keyring refused: with \
                         CONFIG_INTEGRITY_CA_MACHINE_KEYRING only a CA with keyCertSign goes on \
                         .machine)"
                    ),
                    _ => write!(
                        f,
                        "which .ima searches only with \
                         CONFIG_IMA_KEYRINGS_PERMIT_SIGNED_BY_BUILTIN_OR_SECONDARY"
                    ),
                }
            }
        }
    }
}

/// What the kernel does with a certificate on its IMA keyring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No `.ima`: the userspace `_ima` keyring takes it unchecked.
    Userspace,
    /// `.ima` takes it: a key on a searched keyring signed it (the kernel
    /// still checks that signature).
    Accepted {
        /// The signer.
        signer: TrustedKey,
    },
    /// `.ima` refuses it, for these reasons (the first is the kernel's).
    Refused(Vec<Refusal>),
}

/// Whether the kernel configured as `config`, with `keys` on its trusted
/// keyrings, takes `cert` on its IMA keyring.
pub(crate) fn ima_verdict(
    cert: &Certificate,
    config: &TrustConfig,
    keys: &[TrustedKey],
) -> Verdict {
    let mut refusals = Vec::new();
    let ec_key = cert
        .public_key()
        .is_ok_and(|k| matches!(k.algorithm(), KeyAlgorithm::Ecdsa(_)));
    if ec_key && !config.ecdsa {
        refusals.push(Refusal::NoEcdsa {
            what: "its ECDSA key",
        });
    }
    if !config.trusted_keyring {
        return if refusals.is_empty() {
            Verdict::Userspace
        } else {
            Verdict::Refused(refusals)
        };
    }
    // restrict_link_by_digsig, in its order.
    let usage = cert.key_usage().unwrap_or_default();
    if !usage.digital_signature {
        refusals.push(Refusal::NoDigitalSignature);
    }
    if cert.is_ca() {
        refusals.push(Refusal::Ca);
    }
    if usage.key_cert_sign {
        refusals.push(Refusal::KeyCertSign);
    }
    // restrict_link_by_signature.
    let akid = cert.authority_key_identifier();
    let own = cert.subject_key_identifier();
    let self_signed = match (&akid, own) {
        (Some(a), Some(s)) => a.as_slice() == s,
        _ => cert.issuer() == cert.subject(),
    };
    let searched = config.searched();
    if self_signed {
        refusals.push(Refusal::SelfSigned);
    } else if let Some(akid) = akid {
        let akid = hex::encode(akid);
        let signers: Vec<&TrustedKey> = keys
            .iter()
            .filter(|k| k.skid_hex().is_some_and(|h| h.eq_ignore_ascii_case(&akid)))
            .collect();
        match signers.iter().find(|k| searched.contains(&k.keyring)) {
            Some(signer) if refusals.is_empty() => {
                if cert
                    .signature_algorithm_oid()
                    .starts_with("1.2.840.10045.4.")
                    && !config.ecdsa
                {
                    refusals.push(Refusal::NoEcdsa {
                        what: "its ECDSA signature",
                    });
                } else {
                    return Verdict::Accepted {
                        signer: (*signer).clone(),
                    };
                }
            }
            Some(_) => {}
            None => refusals.push(Refusal::SignerNotTrusted {
                akid,
                elsewhere: signers.first().map(|k| k.keyring),
            }),
        }
    } else {
        // No AKID: the kernel matches the issuer name against the signer's
        // subject (auth_ids[2]); /proc/keys shows the subject's CN.
        let cn = common_name(&cert.issuer());
        let signer = keys.iter().find(|k| {
            searched.contains(&k.keyring)
                && cn.as_deref().is_some_and(|cn| {
                    let subject = k.description.rsplit_once(": ").map_or("", |(s, _)| s);
                    subject == cn || subject.ends_with(&format!(": {cn}"))
                })
        });
        match signer {
            Some(signer) if refusals.is_empty() => {
                return Verdict::Accepted {
                    signer: signer.clone(),
                }
            }
            Some(_) => {}
            None => refusals.push(Refusal::NoAuthorityKeyId),
        }
    }
    Verdict::Refused(refusals)
}

/// The CN of an RFC 4514 name ("CN=test CA,O=Example" -> "test CA").
fn common_name(name: &str) -> Option<String> {
    name.split(',')
        .find_map(|part| part.trim().strip_prefix("CN="))
        .map(str::to_string)
}

/// Why shim's MOK list would not put `ca` on `.machine` as a key `.ima`
/// trusts, or `None` when it would (the machine keyring path; on UEFI the
/// kernel also needs shim's `MokListTrustedRT`, which this cannot see).
#[allow(
    dead_code,
    reason = "the machine keyring path of `portage-ima setup` (issue 21) checks its CA with it"
)]
pub(crate) fn mok_refusal(ca: &Certificate, config: &TrustConfig) -> Option<String> {
    if !config.trusted_keyring {
        return Some(
            "the kernel has no CONFIG_INTEGRITY_TRUSTED_KEYRING: no .ima to sign for".into(),
        );
    }
    if !config.machine_keyring {
        return Some(
            "the kernel has no CONFIG_INTEGRITY_MACHINE_KEYRING: MOKs go to .platform".into(),
        );
    }
    if !config.permit_secondary {
        return Some(
            "without CONFIG_IMA_KEYRINGS_PERMIT_SIGNED_BY_BUILTIN_OR_SECONDARY .ima trusts only \
             the builtin keyring, not .machine"
                .into(),
        );
    }
    if config.ca_machine_keyring {
        let usage = ca.key_usage().unwrap_or_default();
        if !ca.is_ca() || !usage.key_cert_sign {
            return Some(
                "CONFIG_INTEGRITY_CA_MACHINE_KEYRING takes only a CA with keyCertSign on \
                 .machine (restrict_link_by_ca); this one would land on .platform"
                    .into(),
            );
        }
        if config.ca_machine_keyring_max && usage.digital_signature {
            return Some(
                "CONFIG_INTEGRITY_CA_MACHINE_KEYRING_MAX refuses a CA with digitalSignature on \
                 .machine"
                    .into(),
            );
        }
    }
    None
}

#[cfg(test)]
mod tests;
