//! The kernel's keyrings as IMA sees them: /proc/keys, the `.ima` or
//! `_ima` keyring IMA checks signatures with, and the keys linked into it
//! (keyctl and request_key through raw syscalls, which rustix does not
//! wrap). Shared by `doctor` and `audit`; nothing here prints.

use std::fs;
use std::io;

use ima_core::KeyId;

/// One key from /proc/keys.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ProcKey {
    pub(crate) serial: i32,
    /// Truncated to 9 characters by the kernel: `asymmetri`, `keyring`.
    pub(crate) kind: String,
    pub(crate) description: String,
}

impl ProcKey {
    /// A keyring's name: its description without the `: N` count.
    pub(crate) fn keyring_name(&self) -> Option<&str> {
        (self.kind == "keyring").then(|| {
            self.description
                .rsplit_once(": ")
                .map_or(self.description.as_str(), |(name, _)| name)
        })
    }

    /// An asymmetric key's id as /proc/keys shows it: the last 4 bytes of
    /// its SKID, after the subtype (`... X509.rsa b5e9934f []`).
    pub(crate) fn asymmetric_id(&self) -> Option<KeyId> {
        if self.kind != "asymmetri" {
            return None;
        }
        let d = self.description.trim_end();
        let d = d
            .strip_suffix(']')
            .and_then(|d| d.rsplit_once(" ["))
            .map_or(d, |(d, _)| d);
        let (_, last) = d.rsplit_once(' ')?;
        (last.len() == 8).then(|| last.parse().ok())?
    }
}

/// Parses /proc/keys text: serial flags usage timeout perm uid gid type description.
pub(crate) fn parse_proc_keys(text: &str) -> Vec<ProcKey> {
    text.lines()
        .filter_map(|line| {
            let mut rest = line.trim_start();
            let mut fields = Vec::with_capacity(8);
            for _ in 0..8 {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                fields.push(&rest[..end]);
                rest = rest[end..].trim_start();
            }
            Some(ProcKey {
                serial: u32::from_str_radix(fields[0], 16).ok()? as i32,
                kind: fields[7].to_string(),
                description: rest.to_string(),
            })
        })
        .collect()
}

/// The serials of the keys linked into a keyring (keyctl KEYCTL_READ).
pub(crate) fn keyring_members(serial: i32) -> io::Result<Vec<i32>> {
    let mut buf: Vec<i32> = vec![0; 256];
    loop {
        let len = buf.len() * 4;
        let n = crate::sys::keyctl_read(serial, &mut buf)?;
        if n <= len {
            buf.truncate(n / 4);
            return Ok(buf);
        }
        buf.resize(n.div_ceil(4), 0);
    }
}

/// The keyring named `name` that request_key(2) finds from this process,
/// as the kernel's IMA looks up `_ima` (no upcall: callout_info is NULL).
pub(crate) fn request_keyring(name: &str) -> io::Result<i32> {
    let kind = c"keyring";
    let name = std::ffi::CString::new(name).map_err(io::Error::other)?;
    crate::sys::request_key(kind, &name)
}

/// The keyring IMA checks signatures with: the kernel's own `.ima` when
/// it was built with CONFIG_INTEGRITY_TRUSTED_KEYRING, else the `_ima`
/// keyring request_key() finds from the process (session, then user
/// keyring). Other sessions' `_ima` keyrings in /proc/keys do not count.
pub(crate) fn ima_keyrings(keys: &[ProcKey]) -> Vec<(&'static str, i32)> {
    let mut rings: Vec<(&'static str, i32)> = keys
        .iter()
        .filter(|p| p.keyring_name() == Some(".ima"))
        .map(|p| (".ima", p.serial))
        .collect();
    if rings.is_empty() {
        if let Ok(serial) = request_keyring("_ima") {
            rings.push(("_ima", serial));
        }
    }
    rings
}

/// The ids of the keys on the keyring IMA checks signatures with, and its
/// name (`.ima` or `_ima`); `None` when there is none or it cannot be read
/// (not root, no CONFIG_KEYS).
pub(crate) fn ima_keyring_key_ids() -> Option<(&'static str, Vec<KeyId>)> {
    let keys = parse_proc_keys(&fs::read_to_string("/proc/keys").ok()?);
    let (name, serial) = *ima_keyrings(&keys).first()?;
    let members = keyring_members(serial).ok()?;
    let ids = keys
        .iter()
        .filter(|p| members.contains(&p.serial))
        .filter_map(ProcKey::asymmetric_id)
        .collect();
    Some((name, ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_keys_x509_and_keyrings() {
        let text = "\
1501ea6b I--Q---     1 perm 39010000     0     0 asymmetri t: e526930812e74a12a405cdde4329be6cb5e9934f: X509.rsa b5e9934f []
2a0b5d3c I------     1 perm 1f0b0000     0     0 keyring   .ima: 1
0ad0aac5 I--Q---     2 perm 1f3f0000     0 65534 keyring   _uid.0: empty
33b1a2c0 I--Q---     1 perm 3f030000     0     0 keyring   _ima: empty
";
        let keys = parse_proc_keys(text);
        assert_eq!(keys.len(), 4);
        assert_eq!(keys[0].serial, 0x1501ea6b);
        assert_eq!(keys[0].asymmetric_id(), Some("b5e9934f".parse().unwrap()));
        assert_eq!(keys[1].keyring_name(), Some(".ima"));
        assert_eq!(keys[2].keyring_name(), Some("_uid.0"));
        assert_eq!(keys[3].keyring_name(), Some("_ima"));
        assert_eq!(keys[1].asymmetric_id(), None);
    }

    #[test]
    fn proc_keys_subject_with_spaces() {
        let text = "3c0ff1e3 I------     1 perm 1f030000     0     0 asymmetri Gentoo IMA key: 0011223344556677889900112233445566778899: X509.rsa 66778899 []\n";
        let keys = parse_proc_keys(text);
        assert_eq!(keys[0].asymmetric_id(), Some("66778899".parse().unwrap()));
        assert!(keys[0].description.starts_with("Gentoo IMA key:"));
    }
}
