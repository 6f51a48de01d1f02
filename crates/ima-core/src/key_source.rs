//! Where the private key lives: a PEM file this process reads, or hardware
//! that signs for it without ever giving the key out.
//!
//! The `key` setting is one string, told apart by its form:
//! - `pkcs11:...` is an RFC 7512 URI naming a key on a PKCS#11 token
//!   (a smart card, an HSM, SoftHSM2);
//! - `handle:0x81000001` is a TPM 2.0 persistent handle (the form of the
//!   `tpm2` OpenSSL provider's store);
//! - a file starting with `-----BEGIN TSS2 PRIVATE KEY-----` is a TPM 2.0 key
//!   blob (`openssl genpkey -provider tpm2`, `tpm2tss-genkey`): only the TPM
//!   that made it can use it;
//! - anything else is a PEM key file ([`crate::KeyMaterial`]).
//!
//! Hardware keys are opened by [`crate::HardwareKey`] (OpenSSL backend only).

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use der::zeroize::Zeroizing;

use crate::{Error, Result};

/// The TSS2 PEM label (the "TSS2 Private Key" format of tpm2-tss-engine and
/// tpm2-openssl).
pub(crate) const TSS2_PEM_BEGIN: &str = "-----BEGIN TSS2 PRIVATE KEY-----";

/// A PIN or authorisation value, wiped from memory when dropped.
pub type Pin = Zeroizing<String>;

/// The `key` setting, classified.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A PEM private key file, read by this process.
    File(PathBuf),
    /// An RFC 7512 `pkcs11:` URI (without a PIN in it).
    Pkcs11(String),
    /// A TPM 2.0 key file (TSS2 PEM).
    TpmKeyFile(PathBuf),
    /// A TPM 2.0 persistent handle (0x81xxxxxx).
    TpmHandle(u32),
}

impl KeySource {
    /// Classifies `key` (see the module docs). A `pkcs11:` URI that carries
    /// its PIN (`pin-value=`) is refused: the command line and the settings
    /// file are readable by others; the PIN goes in a PIN file or variable.
    /// A TSS2 file is recognised by its first line; a file that cannot be
    /// read is left to be a [`KeySource::File`], whose loading says why.
    pub fn classify(key: &Path) -> Result<KeySource> {
        let text = key.to_string_lossy();
        if let Some(attributes) = text.strip_prefix("pkcs11:") {
            let attributes = attributes.split([';', '?', '&']);
            if attributes.clone().any(|a| a.starts_with("pin-value=")) {
                return Err(Error::Device {
                    key: redacted_uri(&text),
                    reason: "the URI carries the PIN (pin-value), which every user can read on \
                             the command line or in the settings; remove it and give the PIN \
                             with pin_file or pin_env under [hardware] in ima.toml"
                        .into(),
                });
            }
            return Ok(KeySource::Pkcs11(text.into_owned()));
        }
        if let Some(hex) = text.strip_prefix("handle:") {
            let digits = hex.trim_start_matches("0x").trim_start_matches("0X");
            let handle = u32::from_str_radix(digits, 16).map_err(|_| Error::Device {
                key: text.to_string(),
                reason: "not a TPM handle; write it in hex, e.g. handle:0x81000001".into(),
            })?;
            if handle >> 24 != 0x81 {
                return Err(Error::Device {
                    key: text.to_string(),
                    reason: "not a persistent handle (those are 0x81000000 to 0x81ffffff; \
                             make a key persistent with `tpm2_evictcontrol`)"
                        .into(),
                });
            }
            return Ok(KeySource::TpmHandle(handle));
        }
        if starts_with_tss2_pem(key) {
            return Ok(KeySource::TpmKeyFile(key.to_path_buf()));
        }
        Ok(KeySource::File(key.to_path_buf()))
    }

    /// Whether the key is held by hardware (not a file this process reads).
    pub fn is_hardware(&self) -> bool {
        !matches!(self, KeySource::File(_))
    }

    /// What kind of key, for messages: "a PKCS#11 URI", ...
    pub fn kind(&self) -> &'static str {
        match self {
            KeySource::File(_) => "a PEM key file",
            KeySource::Pkcs11(_) => "a PKCS#11 URI",
            KeySource::TpmKeyFile(_) => "a TPM 2.0 key file",
            KeySource::TpmHandle(_) => "a TPM 2.0 persistent handle",
        }
    }

    /// The key as OpenSSL's store names it: the URI, the path, `handle:0x...`.
    pub fn uri(&self) -> String {
        match self {
            KeySource::File(path) | KeySource::TpmKeyFile(path) => path.display().to_string(),
            KeySource::Pkcs11(uri) => uri.clone(),
            KeySource::TpmHandle(handle) => format!("handle:{handle:#010x}"),
        }
    }
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeySource({}: {})", self.kind(), self.uri())
    }
}

/// How to reach a hardware key: which OpenSSL provider or engine, which
/// PKCS#11 module, and the PIN. Debug never prints the PIN.
#[derive(Default)]
pub struct HardwareOptions {
    /// An OpenSSL 3 provider whose store opens the key (`tpm2`; a `pkcs11`
    /// provider where one is installed). Default for TPM keys: `tpm2`.
    pub provider: Option<String>,
    /// An OpenSSL engine that loads the key (`pkcs11`, libp11's). Default
    /// for `pkcs11:` URIs when no provider is given: `pkcs11`.
    pub engine: Option<String>,
    /// The PKCS#11 module the engine loads (`/usr/lib/softhsm/libsofthsm2.so`);
    /// unset, the engine's default (p11-kit's proxy).
    pub module: Option<PathBuf>,
    /// The user PIN (PKCS#11) or the key's authorisation value (TPM).
    pub pin: Option<Pin>,
}

impl fmt::Debug for HardwareOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HardwareOptions")
            .field("provider", &self.provider)
            .field("engine", &self.engine)
            .field("module", &self.module)
            .field("pin", &self.pin.as_ref().map(|_| "(set)"))
            .finish()
    }
}

/// A PIN read from a file: its first line, without the line end. The file
/// should be readable by root only; its content is never shown.
pub fn read_pin_file(path: &Path) -> Result<Pin> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| Error::Device {
        key: path.display().to_string(),
        reason: format!("cannot read the PIN file: {e}"),
    })?);
    let text = std::str::from_utf8(&bytes).map_err(|_| Error::Device {
        key: path.display().to_string(),
        reason: "the PIN file is not UTF-8 text".into(),
    })?;
    let pin = text.lines().next().unwrap_or("");
    if pin.is_empty() {
        return Err(Error::Device {
            key: path.display().to_string(),
            reason: "the PIN file is empty; write the PIN on its first line".into(),
        });
    }
    Ok(Zeroizing::new(pin.to_string()))
}

/// The URI with any `pin-value` blanked, for messages.
fn redacted_uri(uri: &str) -> String {
    let mut out = String::with_capacity(uri.len());
    let mut rest = uri;
    while let Some(at) = rest.find("pin-value=") {
        let (head, tail) = rest.split_at(at + "pin-value=".len());
        out.push_str(head);
        out.push_str("(hidden)");
        rest = tail.find([';', '&']).map_or("", |end| &tail[end..]);
    }
    out.push_str(rest);
    out
}

/// Whether the file's first bytes are the TSS2 PEM header.
fn starts_with_tss2_pem(path: &Path) -> bool {
    let mut head = [0u8; TSS2_PEM_BEGIN.len()];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head == *TSS2_PEM_BEGIN.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_uris_and_handles() {
        let uri = "pkcs11:token=ima;object=eckey;type=private";
        assert_eq!(
            KeySource::classify(Path::new(uri)).unwrap(),
            KeySource::Pkcs11(uri.into())
        );
        assert_eq!(
            KeySource::classify(Path::new("handle:0x81000001")).unwrap(),
            KeySource::TpmHandle(0x8100_0001)
        );
        assert_eq!(KeySource::TpmHandle(0x8100_0001).uri(), "handle:0x81000001");
        let transient = KeySource::classify(Path::new("handle:0x80000001")).unwrap_err();
        assert!(transient.to_string().contains("persistent"), "{transient}");
        let junk = KeySource::classify(Path::new("handle:zz")).unwrap_err();
        assert!(junk.to_string().contains("hex"), "{junk}");
        assert!(matches!(
            KeySource::classify(Path::new("/nonexistent/key.pem")).unwrap(),
            KeySource::File(_)
        ));
    }

    #[test]
    fn refuses_a_pin_in_the_uri_without_showing_it() {
        for uri in [
            "pkcs11:token=ima;object=k?pin-value=s3cret",
            "pkcs11:token=ima;pin-value=s3cret;object=k",
        ] {
            let err = KeySource::classify(Path::new(uri)).unwrap_err().to_string();
            assert!(err.contains("pin_file"), "{err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn recognises_a_tss2_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let tss2 = dir.path().join("tpm.pem");
        std::fs::write(&tss2, format!("{TSS2_PEM_BEGIN}\nAAAA\n")).unwrap();
        assert_eq!(
            KeySource::classify(&tss2).unwrap(),
            KeySource::TpmKeyFile(tss2.clone())
        );
        let pem = dir.path().join("key.pem");
        std::fs::write(&pem, "-----BEGIN PRIVATE KEY-----\n").unwrap();
        assert!(!KeySource::classify(&pem).unwrap().is_hardware());
    }

    #[test]
    fn pin_file_first_line_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pin");
        std::fs::write(&file, "1234\nignored\n").unwrap();
        assert_eq!(read_pin_file(&file).unwrap().as_str(), "1234");
        std::fs::write(&file, "\n").unwrap();
        let err = read_pin_file(&file).unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
    }
}
