//! Keys held by hardware, reached through OpenSSL 3: a TPM 2.0 key through a
//! provider's store (`tpm2-openssl`: TSS2 key files, `handle:0x81...`), a
//! PKCS#11 key through an engine (libp11's `pkcs11`, the one Debian bookworm
//! ships) or through a provider's store where a PKCS#11 provider is installed.
//!
//! The private key never enters this process: OpenSSL hands back an
//! `EVP_PKEY` whose operations run in the device, and signing goes through
//! the OpenSSL backend's signer as for a key file.
//!
//! A device signs one request at a time (a TPM has one command queue, a
//! token one session here), and slowly: hashing stays parallel, the
//! signatures pass one at a time through a lock, and the time spent in the
//! device is counted ([`crate::DeviceStats`]) so callers can report the rate.
//!
//! Once a device has failed (unplugged, the TPM daemon gone), every later
//! request fails at once with the first error rather than waiting on the
//! device again; nothing is written for those files (a signature is only ever
//! written whole, after signing succeeded).
//!
//! # The PIN in memory
//!
//! Before a device is opened with a PIN, the process is made not dumpable
//! (`prctl(PR_SET_DUMPABLE, 0)`: no core dump, no `ptrace` attach by the same
//! user, `/proc/PID/mem` root's only) and its core size limit is set to 0
//! (`RLIMIT_CORE`), since the PIN's copies inside the PKCS#11 library and
//! the token's module cannot be wiped from here. Both stay for the rest of
//! the process's life: those copies outlive the key. This process's own copy
//! ([`crate::Pin`]) is wiped when dropped.
//!
//! # Unsafe code
//!
//! The rust `openssl` crate has no safe API for `OSSL_STORE`, engines or UI
//! methods, so the submodule `ffi` declares those functions itself and alone
//! in the crate carries `#[allow(unsafe_code)]`; it hands this module safe
//! functions and owning types. Every pointer it gets from OpenSSL is owned
//! by exactly one Rust value that frees it on drop.

#[allow(unsafe_code)]
mod ffi;

use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use der::zeroize::Zeroizing;
use openssl::pkey::{PKey, Private};
use openssl::pkey_ctx::PkeyCtx;
use openssl::provider::Provider;

use self::ffi::{Engine, LoadedEngine, PinUi};
use crate::provider::openssl::sign_with;
use crate::{
    Certificate, DeviceStats, Error, HardwareOptions, HashAlgo, KeyAlgorithm, KeySource, PublicKey,
    Result, Signer,
};

/// What keeps the device reachable while its key is in use: the provider
/// stays loaded, the engine initialised.
enum Device {
    /// The provider, and `provider=NAME` to fetch its signature code with.
    Provider(#[allow(dead_code)] Provider, CString),
    Engine(#[allow(dead_code)] Engine),
}

/// A private key held by hardware, opened and ready to sign.
pub struct HardwareKey {
    // Field order is drop order: the key before the device that made it.
    pkey: PKey<Private>,
    public: PublicKey,
    cert: Option<Certificate>,
    source: KeySource,
    device: Device,
}

impl std::fmt::Debug for HardwareKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HardwareKey")
            .field("source", &self.source)
            .field("public_key", &self.public)
            .field("certificate", &self.cert)
            .finish_non_exhaustive()
    }
}

impl HardwareKey {
    /// Opens the key `source` names. A TPM key goes through the provider
    /// `options.provider` (default `tpm2`); a `pkcs11:` URI through the
    /// engine `options.engine` (default `pkcs11`, with `options.module`)
    /// unless a provider is given. `cert` is the key's certificate; without
    /// one, a certificate the device holds for the key is used when there
    /// is one (a PKCS#11 token through the engine), else the key id is the
    /// public key's hash. A certificate that does not match the key is
    /// [`Error::CertificateMismatch`].
    pub fn open(
        source: &KeySource,
        options: &HardwareOptions,
        cert: Option<Certificate>,
    ) -> Result<HardwareKey> {
        if !matches!(source, KeySource::File(_)) {
            keep_memory_private().map_err(|e| {
                device_error(
                    source,
                    &format!("cannot keep the PIN out of core dumps: {e}"),
                    None,
                )
            })?;
        }
        let (pkey, device_cert, device) = match source {
            KeySource::File(_) => {
                return Err(device_error(
                    source,
                    "a PEM key file is not a hardware key; load it with KeyMaterial",
                    None,
                ))
            }
            KeySource::Pkcs11(_) if options.provider.is_none() => {
                let engine = options.engine.as_deref().unwrap_or("pkcs11");
                open_with_engine(source, engine, options, cert.is_none())?
            }
            _ => {
                let provider = options.provider.as_deref().unwrap_or("tpm2");
                open_with_provider(source, provider, options)?
            }
        };
        let spki = pkey
            .public_key_to_der()
            .map_err(|e| device_error(source, "cannot read the key's public half", Some(e)))?;
        let spki =
            <spki::SubjectPublicKeyInfoOwned as der::Decode>::from_der(&spki).map_err(|e| {
                device_error(
                    source,
                    &format!("bad public key from the device: {e}"),
                    None,
                )
            })?;
        let public = PublicKey::from_spki(&spki).map_err(|e| {
            device_error(
                source,
                &format!("{e} (IMA takes RSA or ECDSA on P-256 or P-384)"),
                None,
            )
        })?;
        let cert = cert.or(device_cert);
        if let Some(c) = &cert {
            if c.public_key().ok().as_ref() != Some(&public) {
                return Err(Error::CertificateMismatch {
                    cert: c.describe(),
                    key: source.to_string().into(),
                });
            }
        }
        Ok(HardwareKey {
            pkey,
            public,
            cert,
            source: source.clone(),
            device,
        })
    }

    /// The public half, as the device gave it.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The certificate given, or found on the device.
    pub fn certificate(&self) -> Option<&Certificate> {
        self.cert.as_ref()
    }

    /// Where the key is.
    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// The certificate's key id when there is one, else the public-key hash.
    pub fn key_id(&self) -> crate::KeyId {
        match &self.cert {
            Some(c) => c.key_id(),
            None => self.public.key_id(),
        }
    }

    /// A signer that passes requests to the device one at a time.
    pub(crate) fn into_signer(self) -> Box<dyn Signer> {
        let rsa = self.public.algorithm() == KeyAlgorithm::Rsa;
        Box::new(DeviceSigner {
            pkey: self.pkey,
            rsa,
            lock: Mutex::new(None),
            source: self.source,
            signatures: AtomicU64::new(0),
            busy_nanos: AtomicU64::new(0),
            device: self.device,
        })
    }
}

/// No core dump, no debugger of the same user: see "The PIN in memory".
fn keep_memory_private() -> std::io::Result<()> {
    use rustix::process::{setrlimit, DumpableBehavior, Resource, Rlimit};
    rustix::process::set_dumpable_behavior(DumpableBehavior::NotDumpable)?;
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )?;
    Ok(())
}

/// Loads `provider` (keeping OpenSSL's default provider for everything else)
/// and opens the key through its store.
fn open_with_provider(
    source: &KeySource,
    provider: &str,
    options: &HardwareOptions,
) -> Result<(PKey<Private>, Option<Certificate>, Device)> {
    // Keep the default provider available (fallback) and preferred for what
    // does not name a provider: hashing must not go to the device.
    let loaded = Provider::try_load(None, provider, true).map_err(|e| {
        device_error(
            source,
            &format!(
                "cannot load the OpenSSL provider {provider:?} (is it installed? \
                 for a TPM: Debian's tpm2-openssl)"
            ),
            Some(e),
        )
    })?;
    ffi::prefer_default_provider();
    let uri = CString::new(source.uri())
        .map_err(|_| device_error(source, "the key name contains a NUL byte", None))?;
    let ui = pin_ui(source)?;
    let Some((pkey, cert)) = ffi::store_load(&uri, &ui, options.pin.as_ref()) else {
        return Err(device_error(
            source,
            &not_found_hint(source, provider),
            Some(stack()),
        ));
    };
    let Some(pkey) = pkey else {
        return Err(device_error(
            source,
            &not_found_hint(source, provider),
            Some(stack()),
        ));
    };
    // The store leaves the complaints of the decoders it tried first; they
    // would show up in the next unrelated OpenSSL error.
    let _ = stack();
    let cert = cert
        .and_then(|c| c.to_der().ok())
        .and_then(|der| Certificate::from_der(&der).ok());
    let query = CString::new(format!("provider={provider}"))
        .map_err(|_| device_error(source, "provider name has a NUL byte", None))?;
    Ok((pkey, cert, Device::Provider(loaded, query)))
}

/// Loads the engine `engine_id` (with the PKCS#11 module and PIN) and the
/// key, and when `want_cert` the certificate stored beside it.
fn open_with_engine(
    source: &KeySource,
    engine_id: &str,
    options: &HardwareOptions,
    want_cert: bool,
) -> Result<(PKey<Private>, Option<Certificate>, Device)> {
    let id = CString::new(engine_id)
        .map_err(|_| device_error(source, "engine name has a NUL byte", None))?;
    let Some(loaded) = LoadedEngine::by_id(&id) else {
        return Err(device_error(
            source,
            &format!(
                "cannot load the OpenSSL engine {engine_id:?} (for PKCS#11: Debian's \
                 libengine-pkcs11-openssl)"
            ),
            Some(stack()),
        ));
    };
    if let Some(module) = &options.module {
        let module = CString::new(module.as_os_str().as_encoded_bytes())
            .map_err(|_| device_error(source, "module path has a NUL byte", None))?;
        if !loaded.ctrl(c"MODULE_PATH", &module) {
            return Err(device_error(
                source,
                "the engine refused MODULE_PATH",
                Some(stack()),
            ));
        }
    }
    let engine = loaded.init().map_err(|stack| {
        device_error(
            source,
            &format!(
                "cannot start the engine {engine_id:?}{}",
                options.module.as_ref().map_or_else(
                    || " (set module = the PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so, \
                        under [hardware] in ima.toml)"
                        .to_string(),
                    |m| format!(" with module {}", m.display())
                )
            ),
            Some(stack),
        )
    })?;
    if let Some(pin) = &options.pin {
        // NUL-terminated in a buffer that is wiped when dropped.
        let mut bytes = Zeroizing::new(Vec::with_capacity(pin.len() + 1));
        bytes.extend_from_slice(pin.as_bytes());
        bytes.push(0);
        let pin = CStr::from_bytes_with_nul(&bytes)
            .map_err(|_| device_error(source, "the PIN has a NUL byte", None))?;
        if !engine.ctrl(c"PIN", pin) {
            return Err(device_error(
                source,
                "the engine refused the PIN setting",
                Some(stack()),
            ));
        }
    }
    let uri = CString::new(source.uri())
        .map_err(|_| device_error(source, "the key name contains a NUL byte", None))?;
    let ui = pin_ui(source)?;
    let Some(pkey) = engine.load_private_key(&uri, &ui, options.pin.as_ref()) else {
        let errors = stack();
        let text = errors.to_string().to_ascii_uppercase();
        let reason = if text.contains("PIN INCORRECT") {
            "wrong PIN: the token refused the PIN from pin_file or pin_env under [hardware] \
             (too many wrong tries lock the token)"
        } else if text.contains("PIN LOCKED") {
            "the token's PIN is locked after too many wrong tries; unlock it with the SO PIN \
             (`pkcs11-tool --unlock-pin`)"
        } else if text.contains("PIN") || options.pin.is_none() {
            "the token did not give the key: wrong PIN, no PIN configured (pin_file or pin_env \
             under [hardware]), or no such key on the token"
        } else {
            "no such token or key (check token= and object= or id= in the URI against \
             `pkcs11-tool --module MODULE --list-objects --login`)"
        };
        return Err(device_error(source, reason, Some(errors)));
    };
    // Loading the engine leaves the complaints of the places it looked first.
    let _ = stack();
    let cert = want_cert
        .then(|| engine_certificate(&engine, source))
        .flatten();
    Ok((pkey, cert, Device::Engine(engine)))
}

/// The certificate stored on the token beside the key (same id or label),
/// through libp11's `LOAD_CERT_CTRL`; `None` when there is none.
fn engine_certificate(engine: &Engine, source: &KeySource) -> Option<Certificate> {
    let uri = source.uri().replace("type=private", "type=cert");
    let uri = CString::new(uri).ok()?;
    let x509 = engine.load_cert(&uri);
    // A token without a certificate is normal: forget the engine's complaint.
    let _ = stack();
    Certificate::from_der(&x509?.to_der().ok()?).ok()
}

/// The UI method that answers OpenSSL's PIN requests with the configured PIN.
fn pin_ui(key: &KeySource) -> Result<PinUi> {
    PinUi::new().ok_or_else(|| device_error(key, "cannot make OpenSSL's PIN callback", None))
}

/// What to check when a store found no key.
fn not_found_hint(source: &KeySource, provider: &str) -> String {
    match source {
        KeySource::TpmHandle(_) => format!(
            "the TPM has no key at this handle, or cannot be reached (provider {provider}; \
             `tpm2_getcap handles-persistent` lists the handles; TPM2OPENSSL_TCTI picks \
             the TPM, default /dev/tpmrm0)"
        ),
        KeySource::TpmKeyFile(_) => format!(
            "the TPM cannot load this key file (provider {provider}): another TPM made it, \
             its parent is gone, the authorisation (pin_file/pin_env) is wrong, or the TPM \
             cannot be reached (TPM2OPENSSL_TCTI, default /dev/tpmrm0)"
        ),
        _ => format!("the provider {provider} found no private key under this name"),
    }
}

/// The OpenSSL errors queued on this thread (and clears them).
fn stack() -> openssl::error::ErrorStack {
    openssl::error::ErrorStack::get()
}

fn device_error(
    source: &KeySource,
    what: &str,
    errors: Option<openssl::error::ErrorStack>,
) -> Error {
    let detail = errors
        .map(|e| e.to_string())
        .filter(|e| !e.is_empty())
        .map_or_else(String::new, |e| format!(" (openssl: {e})"));
    Error::Device {
        key: source.to_string(),
        reason: format!("{what}{detail}"),
    }
}

/// Passes signing requests to the device one at a time and counts them.
struct DeviceSigner {
    // Field order is drop order: the key before the device.
    pkey: PKey<Private>,
    rsa: bool,
    /// Serialises requests; holds the first device failure, after which
    /// every request fails at once.
    lock: Mutex<Option<String>>,
    source: KeySource,
    signatures: AtomicU64,
    busy_nanos: AtomicU64,
    device: Device,
}

impl DeviceSigner {
    /// A signing context whose code runs in the device: a provider key's
    /// context fetches the signature from that provider (the default
    /// properties prefer OpenSSL's own provider, which cannot use the key);
    /// an engine key's context goes to the engine by itself.
    fn context(&self) -> Result<PkeyCtx<Private>> {
        let query = match &self.device {
            Device::Provider(_, query) => Some(query.as_c_str()),
            Device::Engine(_) => None,
        };
        ffi::device_context(&self.pkey, query).ok_or_else(|| {
            Error::Crypto(format!(
                "openssl: signing context in the device: {}",
                stack()
            ))
        })
    }
}

impl Signer for DeviceSigner {
    fn sign_digest(&self, algo: HashAlgo, digest: &[u8]) -> Result<Vec<u8>> {
        let mut failed = self
            .lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(first) = failed.as_ref() {
            return Err(Error::Device {
                key: self.source.to_string(),
                reason: format!("not signed: the device failed earlier in this run ({first})"),
            });
        }
        let start = Instant::now();
        let result = self
            .context()
            .and_then(|ctx| sign_with(ctx, self.rsa, algo, digest));
        self.busy_nanos
            .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        match result {
            Ok(signature) => {
                self.signatures.fetch_add(1, Ordering::Relaxed);
                Ok(signature)
            }
            Err(e) => {
                let reason = format!("the device stopped signing: {e}");
                *failed = Some(reason.clone());
                Err(Error::Device {
                    key: self.source.to_string(),
                    reason,
                })
            }
        }
    }

    fn device_stats(&self) -> Option<DeviceStats> {
        Some(DeviceStats {
            signatures: self.signatures.load(Ordering::Relaxed),
            busy: std::time::Duration::from_nanos(self.busy_nanos.load(Ordering::Relaxed)),
        })
    }
}
