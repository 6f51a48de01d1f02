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
//! methods, so this module declares those functions itself and alone in the
//! crate carries `#[allow(unsafe_code)]`. Every pointer it gets from OpenSSL
//! is owned by exactly one Rust value that frees it on drop.

#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_long, c_void, CStr, CString};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use der::zeroize::Zeroizing;
use foreign_types::ForeignType;
use openssl::pkey::{PKey, Private};
use openssl::pkey_ctx::PkeyCtx;
use openssl::provider::Provider;

use crate::provider::openssl::sign_with;
use crate::{
    Certificate, DeviceStats, Error, HardwareOptions, HashAlgo, KeyAlgorithm, KeySource, PublicKey,
    Result, Signer,
};

/// Opaque OpenSSL types the `openssl-sys` crate does not declare.
#[repr(C)]
struct OsslStoreCtx {
    _private: [u8; 0],
}
#[repr(C)]
struct OsslStoreInfo {
    _private: [u8; 0],
}
#[repr(C)]
struct UiMethod {
    _private: [u8; 0],
}

/// `OSSL_STORE_INFO_PKEY` and `OSSL_STORE_INFO_CERT` (openssl/store.h).
const STORE_INFO_PKEY: c_int = 4;
const STORE_INFO_CERT: c_int = 5;

type PemPasswordCb = unsafe extern "C" fn(*mut c_char, c_int, c_int, *mut c_void) -> c_int;

// libcrypto functions without a binding in openssl-sys (OpenSSL 3.0 ABI).
extern "C" {
    fn OSSL_STORE_open(
        uri: *const c_char,
        ui_method: *const UiMethod,
        ui_data: *mut c_void,
        post_process: *const c_void,
        post_process_data: *mut c_void,
    ) -> *mut OsslStoreCtx;
    fn OSSL_STORE_load(ctx: *mut OsslStoreCtx) -> *mut OsslStoreInfo;
    fn OSSL_STORE_eof(ctx: *mut OsslStoreCtx) -> c_int;
    fn OSSL_STORE_close(ctx: *mut OsslStoreCtx) -> c_int;
    fn OSSL_STORE_INFO_get_type(info: *const OsslStoreInfo) -> c_int;
    fn OSSL_STORE_INFO_get1_PKEY(info: *const OsslStoreInfo) -> *mut openssl_sys::EVP_PKEY;
    fn OSSL_STORE_INFO_get1_CERT(info: *const OsslStoreInfo) -> *mut openssl_sys::X509;
    fn OSSL_STORE_INFO_free(info: *mut OsslStoreInfo);
    fn UI_UTIL_wrap_read_pem_callback(cb: PemPasswordCb, rwflag: c_int) -> *mut UiMethod;
    fn UI_destroy_method(method: *mut UiMethod);
    fn EVP_set_default_properties(libctx: *mut c_void, propq: *const c_char) -> c_int;
    fn EVP_PKEY_CTX_new_from_pkey(
        libctx: *mut c_void,
        pkey: *mut openssl_sys::EVP_PKEY,
        propquery: *const c_char,
    ) -> *mut openssl_sys::EVP_PKEY_CTX;
    fn ENGINE_by_id(id: *const c_char) -> *mut openssl_sys::ENGINE;
    fn ENGINE_init(e: *mut openssl_sys::ENGINE) -> c_int;
    fn ENGINE_finish(e: *mut openssl_sys::ENGINE) -> c_int;
    fn ENGINE_free(e: *mut openssl_sys::ENGINE) -> c_int;
    fn ENGINE_ctrl_cmd_string(
        e: *mut openssl_sys::ENGINE,
        cmd: *const c_char,
        arg: *const c_char,
        optional: c_int,
    ) -> c_int;
    fn ENGINE_ctrl_cmd(
        e: *mut openssl_sys::ENGINE,
        cmd: *const c_char,
        i: c_long,
        p: *mut c_void,
        f: *const c_void,
        optional: c_int,
    ) -> c_int;
    fn ENGINE_load_private_key(
        e: *mut openssl_sys::ENGINE,
        key_id: *const c_char,
        ui_method: *mut UiMethod,
        callback_data: *mut c_void,
    ) -> *mut openssl_sys::EVP_PKEY;
}

/// The PIN callback OpenSSL's UI calls (through `UI_UTIL_wrap_read_pem_callback`)
/// when a store or engine asks for a PIN or passphrase: copies the configured
/// PIN, or gives an empty one when none is configured. It never prompts on a
/// terminal (an emerge has nobody to answer).
///
/// # Safety
/// `userdata` is null or points to a live [`Zeroizing<String>`] (the
/// [`HardwareOptions::pin`] of the running open); `buf` has `size` bytes.
unsafe extern "C" fn pin_callback(
    buf: *mut c_char,
    size: c_int,
    _rwflag: c_int,
    userdata: *mut c_void,
) -> c_int {
    if userdata.is_null() || buf.is_null() {
        return 0;
    }
    // SAFETY: by this function's contract userdata is a live Zeroizing<String>.
    let pin = unsafe { &*(userdata as *const Zeroizing<String>) };
    let len = pin.len();
    if len > usize::try_from(size).unwrap_or(0) {
        return -1;
    }
    // SAFETY: buf has room for `size` >= len bytes; the regions are distinct.
    unsafe { ptr::copy_nonoverlapping(pin.as_ptr(), buf.cast::<u8>(), len) };
    len as c_int
}

/// An owned UI method that answers with the configured PIN.
struct PinUi(*mut UiMethod);

impl PinUi {
    fn new(key: &KeySource) -> Result<PinUi> {
        // SAFETY: pin_callback has the pem_password_cb signature; the method
        // returned is owned here and destroyed on drop.
        let method = unsafe { UI_UTIL_wrap_read_pem_callback(pin_callback, 0) };
        if method.is_null() {
            return Err(device_error(
                key,
                "cannot make OpenSSL's PIN callback",
                None,
            ));
        }
        Ok(PinUi(method))
    }
}

impl Drop for PinUi {
    fn drop(&mut self) {
        // SAFETY: made by UI_UTIL_wrap_read_pem_callback, destroyed once.
        unsafe { UI_destroy_method(self.0) }
    }
}

/// A functional reference to an initialised engine; finished and freed on drop
/// (after the keys it loaded, which the owner drops first).
struct Engine(*mut openssl_sys::ENGINE);

// SAFETY: the engine is only used while loading (one thread) and, through the
// keys it made, under DeviceSigner's lock; ENGINE_finish/free are thread-safe.
unsafe impl Send for Engine {}
// SAFETY: as above: no method of Engine is called through a shared reference.
unsafe impl Sync for Engine {}

impl Drop for Engine {
    fn drop(&mut self) {
        // SAFETY: self.0 came from ENGINE_by_id and was initialised once.
        unsafe {
            ENGINE_finish(self.0);
            ENGINE_free(self.0);
        }
    }
}

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
    // SAFETY: a NUL-terminated literal; NULL is the default library context.
    unsafe { EVP_set_default_properties(ptr::null_mut(), c"?provider=default".as_ptr()) };
    let uri = CString::new(source.uri())
        .map_err(|_| device_error(source, "the key name contains a NUL byte", None))?;
    let ui = PinUi::new(source)?;
    let pin_ptr = options.pin.as_ref().map_or(ptr::null_mut(), |p| {
        ptr::from_ref(p).cast_mut().cast::<c_void>()
    });
    // SAFETY: uri is NUL-terminated; ui outlives the store (closed below);
    // pin_ptr is null or points to options.pin, alive for this call.
    let store =
        unsafe { OSSL_STORE_open(uri.as_ptr(), ui.0, pin_ptr, ptr::null(), ptr::null_mut()) };
    if store.is_null() {
        return Err(device_error(
            source,
            &not_found_hint(source, provider),
            Some(stack()),
        ));
    }
    let mut pkey = None;
    let mut cert = None;
    // SAFETY: store is a live OSSL_STORE_CTX until OSSL_STORE_close below;
    // each info is freed after its object was taken (get1 = own reference).
    unsafe {
        while pkey.is_none() && OSSL_STORE_eof(store) == 0 {
            let info = OSSL_STORE_load(store);
            if info.is_null() {
                break;
            }
            match OSSL_STORE_INFO_get_type(info) {
                STORE_INFO_PKEY => {
                    let raw = OSSL_STORE_INFO_get1_PKEY(info);
                    if !raw.is_null() {
                        pkey = Some(PKey::<Private>::from_ptr(raw));
                    }
                }
                STORE_INFO_CERT if cert.is_none() => {
                    let raw = OSSL_STORE_INFO_get1_CERT(info);
                    if !raw.is_null() {
                        cert = Some(openssl::x509::X509::from_ptr(raw));
                    }
                }
                _ => {}
            }
            OSSL_STORE_INFO_free(info);
        }
        OSSL_STORE_close(store);
    }
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
    // SAFETY: id is NUL-terminated; ENGINE_by_id loads engines-3/<id>.so.
    let raw = unsafe { ENGINE_by_id(id.as_ptr()) };
    if raw.is_null() {
        return Err(device_error(
            source,
            &format!(
                "cannot load the OpenSSL engine {engine_id:?} (for PKCS#11: Debian's \
                 libengine-pkcs11-openssl)"
            ),
            Some(stack()),
        ));
    }
    // A structural reference until ENGINE_init succeeds: free it on error.
    let ctrl = |cmd: &CStr, arg: &CStr| -> bool {
        // SAFETY: raw is a live engine; both strings are NUL-terminated and
        // copied by the engine.
        unsafe { ENGINE_ctrl_cmd_string(raw, cmd.as_ptr(), arg.as_ptr(), 0) == 1 }
    };
    if let Some(module) = &options.module {
        let module = CString::new(module.as_os_str().as_encoded_bytes())
            .map_err(|_| device_error(source, "module path has a NUL byte", None))?;
        if !ctrl(c"MODULE_PATH", &module) {
            // SAFETY: not initialised: only the structural reference to free.
            unsafe { ENGINE_free(raw) };
            return Err(device_error(
                source,
                "the engine refused MODULE_PATH",
                Some(stack()),
            ));
        }
    }
    // SAFETY: raw is a live engine.
    if unsafe { ENGINE_init(raw) } != 1 {
        let stack = stack();
        // SAFETY: not initialised: only the structural reference to free.
        unsafe { ENGINE_free(raw) };
        return Err(device_error(
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
        ));
    }
    let engine = Engine(raw);
    if let Some(pin) = &options.pin {
        // NUL-terminated in a buffer that is wiped when dropped.
        let mut bytes = Zeroizing::new(Vec::with_capacity(pin.len() + 1));
        bytes.extend_from_slice(pin.as_bytes());
        bytes.push(0);
        let pin = CStr::from_bytes_with_nul(&bytes)
            .map_err(|_| device_error(source, "the PIN has a NUL byte", None))?;
        if !ctrl(c"PIN", pin) {
            return Err(device_error(
                source,
                "the engine refused the PIN setting",
                Some(stack()),
            ));
        }
    }
    let uri = CString::new(source.uri())
        .map_err(|_| device_error(source, "the key name contains a NUL byte", None))?;
    let ui = PinUi::new(source)?;
    let pin_ptr = options.pin.as_ref().map_or(ptr::null_mut(), |p| {
        ptr::from_ref(p).cast_mut().cast::<c_void>()
    });
    // SAFETY: engine is initialised; uri NUL-terminated; ui and pin live
    // through the call. The EVP_PKEY returned is owned (freed by PKey).
    let raw_key = unsafe { ENGINE_load_private_key(engine.0, uri.as_ptr(), ui.0, pin_ptr) };
    if raw_key.is_null() {
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
    }
    // SAFETY: a new, owned EVP_PKEY.
    let pkey = unsafe { PKey::<Private>::from_ptr(raw_key) };
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
    /// libp11's parameter block for LOAD_CERT_CTRL.
    #[repr(C)]
    struct LoadCert {
        cert_id: *const c_char,
        cert: *mut openssl_sys::X509,
    }
    let uri = source.uri().replace("type=private", "type=cert");
    let uri = CString::new(uri).ok()?;
    let mut params = LoadCert {
        cert_id: uri.as_ptr(),
        cert: ptr::null_mut(),
    };
    // SAFETY: engine is initialised; params lives through the call and the
    // engine only writes an owned X509 into params.cert.
    let ok = unsafe {
        ENGINE_ctrl_cmd(
            engine.0,
            c"LOAD_CERT_CTRL".as_ptr(),
            0,
            ptr::from_mut(&mut params).cast(),
            ptr::null(),
            1,
        )
    };
    // A token without a certificate is normal: forget the engine's complaint.
    let _ = stack();
    if ok != 1 || params.cert.is_null() {
        return None;
    }
    // SAFETY: an owned X509 from the engine, freed by the wrapper.
    let x509 = unsafe { openssl::x509::X509::from_ptr(params.cert) };
    Certificate::from_der(&x509.to_der().ok()?).ok()
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
            Device::Provider(_, query) => query.as_ptr(),
            Device::Engine(_) => ptr::null(),
        };
        // SAFETY: pkey is a live EVP_PKEY (the context takes its own
        // reference); query is null or NUL-terminated and outlives the call.
        let raw = unsafe { EVP_PKEY_CTX_new_from_pkey(ptr::null_mut(), self.pkey.as_ptr(), query) };
        if raw.is_null() {
            return Err(Error::Crypto(format!(
                "openssl: signing context in the device: {}",
                stack()
            )));
        }
        // SAFETY: a new, owned EVP_PKEY_CTX, freed by the wrapper.
        Ok(unsafe { PkeyCtx::from_ptr(raw) })
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
