//! The kernel's log ring buffer, read from `/dev/kmsg` (root only): one
//! record per `read(2)`, `EAGAIN` at the end (opened non-blocking, so it
//! never waits for new records), `EPIPE` when records were overwritten
//! while reading (the read goes on from the oldest one left).

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;

/// Where the kernel log is read.
pub(crate) const KMSG: &str = "/dev/kmsg";

/// The records in the kernel's ring buffer, one line each.
pub(crate) fn read() -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(KMSG)?;
    let mut data = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                data.extend_from_slice(&buf[..n]);
                if !data.ends_with(b"\n") {
                    data.push(b'\n');
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(data)
}
