//! The few libc calls `rustix` does not wrap, each behind a small safe
//! function with a `// SAFETY:` comment. The only module of portage-ima that
//! may use `unsafe` (the crate denies `unsafe_code`); everything else goes
//! through `rustix` or the standard library.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::process::Command;

/// Restores the default action of SIGPIPE (die quietly on a closed pipe, as
/// C tools do) instead of Rust's ignore-and-panic. Call before any thread
/// is started.
pub fn default_sigpipe() {
    // SAFETY: setting a signal disposition to SIG_DFL touches no memory; the
    // caller (main) runs it before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// `FS_IOC_GETFSUUID` (Linux 6.8): `_IOR(0x15, 0, struct fsuuid2)`, a
/// 17-byte struct (a length, then up to 16 bytes).
const FS_IOC_GETFSUUID: libc::c_ulong = 0x8011_1500;

/// The superblock's uuid of the filesystem `file` is on, through
/// `FS_IOC_GETFSUUID`: its length and bytes, or None when the ioctl fails
/// (kernels before 6.8, filesystems without one).
pub(crate) fn fs_uuid(file: &File) -> Option<(u8, [u8; 16])> {
    #[repr(C)]
    struct FsUuid2 {
        len: u8,
        uuid: [u8; 16],
    }
    let mut out = FsUuid2 {
        len: 0,
        uuid: [0; 16],
    };
    // SAFETY: the ioctl writes at most the 17 bytes of `out`.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_GETFSUUID as _, &mut out) };
    (rc == 0).then_some((out.len, out.uuid))
}

/// keyctl(KEYCTL_READ) of the keyring `serial` into `buf`: the size in
/// bytes of the whole payload (more than `buf` holds when it was cut).
pub(crate) fn keyctl_read(serial: i32, buf: &mut [i32]) -> io::Result<usize> {
    /// `KEYCTL_READ` from <linux/keyctl.h>.
    const KEYCTL_READ: libc::c_long = 11;
    let len = std::mem::size_of_val(buf);
    // SAFETY: the kernel writes at most `len` bytes into `buf`, which has
    // exactly that many.
    let n = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_READ,
            libc::c_long::from(serial),
            buf.as_mut_ptr(),
            len,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// request_key(2) for the key of type `kind` named `name`, with no upcall
/// (callout_info NULL) and no destination keyring: its serial.
pub(crate) fn request_key(kind: &CStr, name: &CStr) -> io::Result<i32> {
    // SAFETY: two valid C strings, a NULL callout and no destination keyring.
    let n = unsafe {
        libc::syscall(
            libc::SYS_request_key,
            kind.as_ptr(),
            name.as_ptr(),
            std::ptr::null::<libc::c_char>(),
            0 as libc::c_long,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as i32)
    }
}

/// Makes `cmd`'s child start its own session (setsid) and close every
/// descriptor from 3 to 1023 before it runs the program.
pub(crate) fn detach_on_spawn(cmd: &mut Command) {
    // SAFETY: setsid and close are async-signal-safe and touch no memory.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, || {
            libc::setsid();
            for fd in 3..1024 {
                libc::close(fd);
            }
            Ok(())
        });
    }
}

/// Registers a handler that writes `msg` to stderr and ends the process at
/// once with `status` when the signal `sig` arrives.
pub(crate) fn exit_on_signal(sig: i32, msg: &'static [u8], status: i32) -> io::Result<()> {
    // SAFETY: the handler only calls write(2) and _exit(2), both
    // async-signal-safe, and reads only `msg`, a static.
    unsafe {
        signal_hook::low_level::register(sig, move || {
            libc::write(2, msg.as_ptr().cast(), msg.len());
            signal_hook::low_level::exit(status);
        })
    }
    .map(|_| ())
}
