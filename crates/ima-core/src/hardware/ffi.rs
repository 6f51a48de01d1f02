//! The raw OpenSSL calls behind [`super::HardwareKey`]: the rust `openssl`
//! crate has no safe API for `OSSL_STORE`, engines or UI methods, so this
//! module declares those functions itself and alone in the crate carries
//! `#[allow(unsafe_code)]`. What it exports is safe: every pointer it gets
//! from OpenSSL is owned by exactly one Rust value that frees it on drop,
//! and every `unsafe` block says why it is sound.

use std::ffi::{c_char, c_int, c_long, c_void, CStr};
use std::ptr;

use der::zeroize::Zeroizing;
use foreign_types::ForeignType;
use openssl::error::ErrorStack;
use openssl::pkey::{PKey, Private};
use openssl::pkey_ctx::PkeyCtx;
use openssl::x509::X509;

use crate::Pin;

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
/// terminal (an unattended run has nobody to answer).
///
/// # Safety
/// `userdata` is null or points to a live [`Zeroizing<String>`] (the
/// [`crate::HardwareOptions::pin`] of the running open); `buf` has `size` bytes.
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

/// The PIN as the callback's user data: null without one.
fn pin_data(pin: Option<&Pin>) -> *mut c_void {
    pin.map_or(ptr::null_mut(), |p| {
        ptr::from_ref(p).cast_mut().cast::<c_void>()
    })
}

/// An owned UI method that answers with the configured PIN.
pub(super) struct PinUi(*mut UiMethod);

impl PinUi {
    /// None when OpenSSL cannot make the method.
    pub(super) fn new() -> Option<PinUi> {
        // SAFETY: pin_callback has the pem_password_cb signature; the method
        // returned is owned here and destroyed on drop.
        let method = unsafe { UI_UTIL_wrap_read_pem_callback(pin_callback, 0) };
        (!method.is_null()).then_some(PinUi(method))
    }
}

impl Drop for PinUi {
    fn drop(&mut self) {
        // SAFETY: made by UI_UTIL_wrap_read_pem_callback, destroyed once.
        unsafe { UI_destroy_method(self.0) }
    }
}

/// Makes OpenSSL's default provider preferred for what names no provider
/// (hashing must not go to the device), in the default library context.
pub(super) fn prefer_default_provider() {
    // SAFETY: a NUL-terminated literal; NULL is the default library context.
    unsafe { EVP_set_default_properties(ptr::null_mut(), c"?provider=default".as_ptr()) };
}

/// Opens `uri` through the providers' stores (asking `ui` for a PIN, which
/// answers `pin`) and takes the first private key, and the first
/// certificate met before it. None when the store cannot be opened.
pub(super) fn store_load(
    uri: &CStr,
    ui: &PinUi,
    pin: Option<&Pin>,
) -> Option<(Option<PKey<Private>>, Option<X509>)> {
    // SAFETY: uri is NUL-terminated; ui outlives the store (closed below);
    // the pin data is null or points to `pin`, alive for this call.
    let store = unsafe {
        OSSL_STORE_open(
            uri.as_ptr(),
            ui.0,
            pin_data(pin),
            ptr::null(),
            ptr::null_mut(),
        )
    };
    if store.is_null() {
        return None;
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
                        cert = Some(X509::from_ptr(raw));
                    }
                }
                _ => {}
            }
            OSSL_STORE_INFO_free(info);
        }
        OSSL_STORE_close(store);
    }
    Some((pkey, cert))
}

/// Sends a control command with a string argument to the engine `raw`.
///
/// # Safety
/// `raw` is a live engine (structural or functional reference).
unsafe fn ctrl_string(raw: *mut openssl_sys::ENGINE, cmd: &CStr, arg: &CStr) -> bool {
    // SAFETY: raw is a live engine by the contract; both strings are
    // NUL-terminated and copied by the engine.
    unsafe { ENGINE_ctrl_cmd_string(raw, cmd.as_ptr(), arg.as_ptr(), 0) == 1 }
}

/// A structural reference to an engine, loaded but not yet initialised;
/// freed on drop.
pub(super) struct LoadedEngine(*mut openssl_sys::ENGINE);

impl LoadedEngine {
    /// Loads the engine `id` (engines-3/`id`.so); None when there is none.
    pub(super) fn by_id(id: &CStr) -> Option<LoadedEngine> {
        // SAFETY: id is NUL-terminated; the reference returned is owned here.
        let raw = unsafe { ENGINE_by_id(id.as_ptr()) };
        (!raw.is_null()).then_some(LoadedEngine(raw))
    }

    /// Sends `cmd` with `arg`; whether the engine took it.
    pub(super) fn ctrl(&self, cmd: &CStr, arg: &CStr) -> bool {
        // SAFETY: self.0 is a live structural reference.
        unsafe { ctrl_string(self.0, cmd, arg) }
    }

    /// Initialises the engine; on failure the OpenSSL errors that say why
    /// (taken before the structural reference is freed).
    pub(super) fn init(self) -> std::result::Result<Engine, ErrorStack> {
        let raw = self.0;
        // SAFETY: raw is a live structural reference.
        if unsafe { ENGINE_init(raw) } != 1 {
            let errors = ErrorStack::get();
            drop(self);
            return Err(errors);
        }
        // The functional reference now owns the engine: finished and freed
        // by Engine's drop, not freed here.
        std::mem::forget(self);
        Ok(Engine(raw))
    }
}

impl Drop for LoadedEngine {
    fn drop(&mut self) {
        // SAFETY: not initialised: only the structural reference to free.
        unsafe { ENGINE_free(self.0) };
    }
}

/// A functional reference to an initialised engine; finished and freed on drop
/// (after the keys it loaded, which the owner drops first).
pub(super) struct Engine(*mut openssl_sys::ENGINE);

// SAFETY: the engine is only used while loading (one thread) and, through the
// keys it made, under DeviceSigner's lock; ENGINE_finish/free are thread-safe.
unsafe impl Send for Engine {}
// SAFETY: as above: no method of Engine is called through a shared reference
// once the key is loaded.
unsafe impl Sync for Engine {}

impl Engine {
    /// Sends `cmd` with `arg`; whether the engine took it.
    pub(super) fn ctrl(&self, cmd: &CStr, arg: &CStr) -> bool {
        // SAFETY: self.0 is a live, initialised engine.
        unsafe { ctrl_string(self.0, cmd, arg) }
    }

    /// The private key `uri` names (asking `ui` for a PIN, which answers
    /// `pin`); None when the engine gives none.
    pub(super) fn load_private_key(
        &self,
        uri: &CStr,
        ui: &PinUi,
        pin: Option<&Pin>,
    ) -> Option<PKey<Private>> {
        // SAFETY: the engine is initialised; uri NUL-terminated; ui and pin
        // live through the call.
        let raw = unsafe { ENGINE_load_private_key(self.0, uri.as_ptr(), ui.0, pin_data(pin)) };
        // SAFETY: a new, owned EVP_PKEY, freed by PKey.
        (!raw.is_null()).then(|| unsafe { PKey::<Private>::from_ptr(raw) })
    }

    /// The certificate `cert_id` names, through libp11's `LOAD_CERT_CTRL`;
    /// None when there is none. Leaves the engine's complaints queued.
    pub(super) fn load_cert(&self, cert_id: &CStr) -> Option<X509> {
        /// libp11's parameter block for LOAD_CERT_CTRL.
        #[repr(C)]
        struct LoadCert {
            cert_id: *const c_char,
            cert: *mut openssl_sys::X509,
        }
        let mut params = LoadCert {
            cert_id: cert_id.as_ptr(),
            cert: ptr::null_mut(),
        };
        // SAFETY: the engine is initialised; params lives through the call
        // and the engine only writes an owned X509 into params.cert.
        let ok = unsafe {
            ENGINE_ctrl_cmd(
                self.0,
                c"LOAD_CERT_CTRL".as_ptr(),
                0,
                ptr::from_mut(&mut params).cast(),
                ptr::null(),
                1,
            )
        };
        if ok != 1 || params.cert.is_null() {
            return None;
        }
        // SAFETY: an owned X509 from the engine, freed by the wrapper.
        Some(unsafe { X509::from_ptr(params.cert) })
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // SAFETY: self.0 came from ENGINE_by_id and was initialised once.
        unsafe {
            ENGINE_finish(self.0);
            ENGINE_free(self.0);
        }
    }
}

/// A signing context for `pkey` whose code comes from the provider `query`
/// names (`provider=NAME`), or, with None, wherever the key's own methods
/// are (an engine key). None when OpenSSL cannot make one.
pub(super) fn device_context(
    pkey: &PKey<Private>,
    query: Option<&CStr>,
) -> Option<PkeyCtx<Private>> {
    let query = query.map_or(ptr::null(), CStr::as_ptr);
    // SAFETY: pkey is a live EVP_PKEY (the context takes its own
    // reference); query is null or NUL-terminated and outlives the call.
    let raw = unsafe { EVP_PKEY_CTX_new_from_pkey(ptr::null_mut(), pkey.as_ptr(), query) };
    // SAFETY: a new, owned EVP_PKEY_CTX, freed by the wrapper.
    (!raw.is_null()).then(|| unsafe { PkeyCtx::from_ptr(raw) })
}
