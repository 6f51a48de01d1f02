//! Streaming file digests: one read of the file feeds every digest needed.

use std::cell::RefCell;
use std::fs::File;

use rustix::io::Errno;

use crate::{CryptoProvider, Error, HashAlgo, Result};

/// Read buffer size; one buffer per thread, so memory does not grow with
/// file size or file count.
pub(crate) const BUF_SIZE: usize = 256 * 1024;

thread_local! {
    static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The digests of one read of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileDigests {
    /// The algorithm of `digest`.
    pub algo: HashAlgo,
    /// The digest of the content in `algo`.
    pub digest: Vec<u8>,
    /// MD5 of the same bytes, when asked for (to check the content against a
    /// recorded MD5).
    pub md5: Option<[u8; 16]>,
    /// Bytes read.
    pub size: u64,
}

/// Hashes `file` from offset 0 to end of file with `pread` (the descriptor's
/// offset is neither used nor moved) through a bounded per-thread buffer,
/// feeding the signing digest and, when `with_md5`, MD5 in the same pass.
///
/// Anything but a regular file is refused first ([`Error::NotRegularFile`]):
/// a character device such as `/dev/zero` would otherwise be read forever.
pub fn digest_file(
    provider: &dyn CryptoProvider,
    file: &File,
    algo: HashAlgo,
    with_md5: bool,
) -> Result<FileDigests> {
    crate::file::check_regular_fd(file)?;
    let mut main = provider.hasher(algo)?;
    let mut md5 = if with_md5 {
        Some(provider.hasher(HashAlgo::Md5)?)
    } else {
        None
    };
    let size = BUF.with(|cell| -> Result<u64> {
        let mut buf = cell.borrow_mut();
        buf.resize(BUF_SIZE, 0);
        let mut offset = 0u64;
        loop {
            let n = match rustix::io::pread(file, &mut buf[..], offset) {
                Ok(0) => return Ok(offset),
                Ok(n) => n,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(Error::io("read", e)),
            };
            main.update(&buf[..n]);
            if let Some(h) = md5.as_mut() {
                h.update(&buf[..n]);
            }
            offset += n as u64;
        }
    })?;
    let md5 = md5.map(|h| {
        h.finish()
            .try_into()
            .expect("an MD5 hasher returns 16 bytes")
    });
    Ok(FileDigests {
        algo,
        digest: main.finish(),
        md5,
        size,
    })
}

/// The digest of `data`.
pub fn digest_bytes(provider: &dyn CryptoProvider, data: &[u8], algo: HashAlgo) -> Result<Vec<u8>> {
    let mut h = provider.hasher(algo)?;
    h.update(data);
    Ok(h.finish())
}
