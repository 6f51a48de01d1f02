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

use crate::secret_file::SecretFile;
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
            if attributes.split([';', '?', '&']).any(is_pin_value) {
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

/// For messages: the URI with any PIN hidden ([`redacted_uri`]). A URI
/// made by [`KeySource::classify`] never holds one, but the variant is public.
impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redacted_uri(&self.uri()))
    }
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeySource({}: {self})", self.kind())
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
/// is read as the key file is ([`SecretFile`]: no symlink, no FIFO, a size
/// limit) and must be private: owned by root or the running user, no group
/// or other access, else it is refused with the command that fixes it. Its
/// content is never shown.
pub fn read_pin_file(path: &Path) -> Result<Pin> {
    let refused = |reason: String| Error::Device {
        key: path.display().to_string(),
        reason: format!("PIN file (pin_file under [hardware]): {reason}"),
    };
    let secret = SecretFile::read(path).map_err(|e| refused(e.to_string()))?;
    if let Some(problem) = secret.exposure(path).into_iter().next() {
        return Err(refused(format!(
            "{problem}; then change the PIN, since others could read it"
        )));
    }
    let text =
        std::str::from_utf8(&secret.bytes).map_err(|_| refused("is not UTF-8 text".into()))?;
    let pin = text.lines().next().unwrap_or("");
    if pin.is_empty() {
        return Err(refused("is empty; write the PIN on its first line".into()));
    }
    Ok(Zeroizing::new(pin.to_string()))
}

/// Whether a URI attribute (`name=value`) is the PIN, however it is
/// spelled: the name compared without case and after percent-decoding
/// (`PIN-VALUE=`, `pin%2Dvalue=`, `%70in-value=` are all `pin-value=`).
fn is_pin_value(attribute: &str) -> bool {
    let name = attribute.split('=').next().unwrap_or("");
    attribute.contains('=') && percent_decoded(name).eq_ignore_ascii_case(b"pin-value")
}

/// `%XX` decoded; a `%` not followed by two hex digits stays as it is.
fn percent_decoded(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .filter(|_| bytes[i] == b'%')
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// The URI with the value of any PIN attribute (`pin-value`, in any case or
/// percent-encoding) replaced by `(hidden)`, for messages. Text that is not
/// a `pkcs11:` URI is returned as it is.
pub fn redacted_uri(uri: &str) -> String {
    let Some(attributes) = uri.strip_prefix("pkcs11:") else {
        return uri.to_string();
    };
    let mut out = String::from("pkcs11:");
    let mut rest = attributes;
    loop {
        let end = rest.find([';', '?', '&']).unwrap_or(rest.len());
        let (attribute, tail) = rest.split_at(end);
        match attribute.split_once('=') {
            Some((name, _)) if is_pin_value(attribute) => {
                out.push_str(name);
                out.push_str("=(hidden)");
            }
            _ => out.push_str(attribute),
        }
        let mut chars = tail.chars();
        match chars.next() {
            Some(separator) => out.push(separator),
            None => break,
        }
        rest = chars.as_str();
    }
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
            "pkcs11:token=ima;object=k?PIN-VALUE=s3cret",
            "pkcs11:token=ima;Pin-Value=s3cret;object=k",
            "pkcs11:token=ima;object=k?pin%2Dvalue=s3cret",
            "pkcs11:token=ima;object=k?pin%2dvalue=s3cret&module-name=softhsm2",
            "pkcs11:token=ima;%70%69%6E-value=s3cret",
        ] {
            let err = KeySource::classify(Path::new(uri)).unwrap_err().to_string();
            assert!(err.contains("pin_file"), "{err}");
            assert!(!err.contains("s3cret"), "{err}");
            assert!(!redacted_uri(uri).contains("s3cret"), "{uri}");
            let source = KeySource::Pkcs11(uri.into());
            assert!(!source.to_string().contains("s3cret"), "{uri}");
            assert!(!format!("{source:?}").contains("s3cret"), "{uri}");
        }
        // Other attributes stay, separators included.
        let uri = "pkcs11:token=ima;object=k;type=private?module-name=softhsm2&pin-source=/p";
        assert!(KeySource::classify(Path::new(uri)).is_ok());
        assert_eq!(redacted_uri(uri), uri);
        assert_eq!(
            redacted_uri("pkcs11:token=a;PIN-value=1;id=%01?x=1&pin%2Dvalue=2"),
            "pkcs11:token=a;PIN-value=(hidden);id=%01?x=1&pin%2Dvalue=(hidden)"
        );
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
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        assert_eq!(read_pin_file(&file).unwrap().as_str(), "1234");
        std::fs::write(&file, "\n").unwrap();
        let err = read_pin_file(&file).unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
    }
}
