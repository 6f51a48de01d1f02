//! The signer itself: can it run under enforce?

use std::fs;
use std::path::PathBuf;

use ima_core::{Certificate, KeyMaterial, KeySet, VerifyStatus};

use super::kernel::Kernel;
use super::{CheckId, Report};
use crate::settings::Settings;

/// The tool itself: its binary and every shared library it has mapped
/// executable must carry a valid signature, or under enforce it cannot run.
pub(super) fn check_self(
    r: &mut Report,
    s: Option<&Settings>,
    key: Option<&KeyMaterial>,
    cert: Option<&Certificate>,
    kernel: &Kernel,
) {
    let Some(s) = s else {
        r.skip(CheckId::Signer, "settings did not load");
        return;
    };
    let mut keys = KeySet::new(s.backend);
    let added = match (cert, key) {
        (Some(c), _) => keys.add_certificate(c).map(|_| "the certificate"),
        (None, Some(k)) => keys.add_key(k).map(|_| "the key's public half"),
        (None, None) => {
            r.skip(CheckId::Signer, "no certificate or key to verify with");
            return;
        }
    };
    let with = match added {
        Ok(w) => w,
        Err(e) => {
            r.skip(CheckId::Signer, format!("cannot verify: {e}"));
            return;
        }
    };
    let mut paths = Vec::new();
    match fs::read_link("/proc/self/exe") {
        Ok(exe) => paths.push(exe),
        Err(e) => {
            r.skip(CheckId::Signer, format!("/proc/self/exe: {e}"));
            return;
        }
    }
    let maps = fs::read_to_string("/proc/self/maps").unwrap_or_default();
    // Sorted: the mapping order changes from run to run (ASLR).
    let mut libs = executable_mappings(&maps);
    libs.retain(|l| !paths.contains(l));
    libs.sort();
    paths.extend(libs);
    let mut bad = Vec::new();
    for path in &paths {
        let status = ima_core::open_regular(path)
            .and_then(|f| keys.verify_file(&f, false))
            .map(|rep| rep.status);
        match status {
            Ok(VerifyStatus::Ok) => {}
            Ok(st) => bad.push((path, st.as_str().to_string())),
            Err(e) => bad.push((path, e.to_string())),
        }
    }
    if bad.is_empty() {
        r.ok(
            CheckId::Signer,
            format!(
                "{} and its {} shared libraries verify with {with}",
                paths[0].display(),
                paths.len() - 1
            ),
        );
        return;
    }
    let list: Vec<String> = bad
        .iter()
        .map(|(p, why)| format!("{} ({why})", p.display()))
        .collect();
    let fix_paths: Vec<String> = bad.iter().map(|(p, _)| p.display().to_string()).collect();
    let finding = format!(
        "{} of {} files do not verify with {with}: {}; under enforce, a signer the policy appraises (BPRM_CHECK, MMAP_CHECK) cannot run unsigned",
        bad.len(),
        paths.len(),
        list.join(", ")
    );
    let fix = format!("portage-ima sign --files {}", fix_paths.join(" "));
    if kernel.enforcing {
        r.fail(CheckId::Signer, finding, fix);
    } else {
        r.warn(CheckId::Signer, finding, fix);
    }
}

/// Files mapped executable, from /proc/self/maps text (ld.so and the
/// shared libraries), in order, without duplicates or deleted files.
fn executable_mappings(maps: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for line in maps.lines() {
        let mut rest = line;
        let mut fields = Vec::with_capacity(5);
        for _ in 0..5 {
            rest = rest.trim_start();
            let end = rest.find(' ').unwrap_or(rest.len());
            fields.push(&rest[..end]);
            rest = &rest[end..];
        }
        let path = rest.trim_start();
        if fields.len() < 5 || !fields[1].contains('x') || !path.starts_with('/') {
            continue;
        }
        if path.ends_with(" (deleted)") {
            continue;
        }
        let path = PathBuf::from(path);
        if !out.contains(&path) {
            out.push(path);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_keep_executable_files_once() {
        let maps = "\
55d0c0a00000-55d0c0a10000 r--p 00000000 fd:01 123 /usr/bin/portage-ima
55d0c0a10000-55d0c0a90000 r-xp 00010000 fd:01 123 /usr/bin/portage-ima
7f0000000000-7f0000100000 r-xp 00000000 fd:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000100000-7f0000200000 r-xp 00000000 fd:01 457 /opt/my libs/libx.so
7f0000200000-7f0000300000 r-xp 00000000 fd:01 458 /tmp/gone.so (deleted)
7f0000300000-7f0000400000 rw-p 00000000 00:00 0
7ffd00000000-7ffd00001000 r-xp 00000000 00:00 0                          [vdso]
7f0000400000-7f0000500000 r-xp 00000000 fd:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
";
        assert_eq!(
            executable_mappings(maps),
            vec![
                PathBuf::from("/usr/bin/portage-ima"),
                PathBuf::from("/usr/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/opt/my libs/libx.so"),
            ]
        );
    }
}
