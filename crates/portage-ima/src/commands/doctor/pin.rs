//! The hardware token's PIN: the PIN file (`pin-file`), and packages whose
//! saved environment carries the PIN variable (`pin-saved`).
//!
//! A PIN exported where emerge runs (the README once said so) is saved by
//! Portage into each package's world-readable `environment.bz2` in the vdb
//! ([`crate::gentoo::saved_env`]) and into binary packages. The snippet now
//! keeps it out, but what older merges saved stays until those files are
//! cleaned, and the PIN must be taken as known.

use ima_core::SecretFile;
use rayon::prelude::*;

use super::{CheckId, Report};
use crate::gentoo::saved_env::{assigned_variables, saved_env_path};
use crate::gentoo::vdb::Vdb;
use crate::plan::Location;
use crate::settings::{Settings, DEFAULT_PIN_ENV};

/// Packages named in the finding; the rest are counted.
const EXAMPLES: usize = 10;

/// `pin_file`: read as the signer reads it (no symlink, no FIFO, private).
pub(super) fn check_pin_file(r: &mut Report, s: Option<&Settings>) {
    let Some(s) = s else {
        r.skip(CheckId::PinFile, "settings did not load");
        return;
    };
    let Some(path) = s.hardware.pin_file.as_deref() else {
        r.ok(CheckId::PinFile, "no pin_file set");
        return;
    };
    let fix = format!(
        "write the PIN on the first line of a plain file owned by root: install -m 0400 \
         -o root /dev/null {0} && edit it; or correct pin_file under [hardware]",
        path.display()
    );
    match SecretFile::read(path) {
        Err(e) => r.fail(CheckId::PinFile, format!("{}: {e}", path.display()), fix),
        Ok(secret) => match secret.exposure(path).as_slice() {
            [] => r.ok(
                CheckId::PinFile,
                format!("{}: private (mode {:04o})", path.display(), secret.mode),
            ),
            problems => r.fail(
                CheckId::PinFile,
                format!("{}: {}", path.display(), problems.join("; ")),
                "fix the file as said, then change the PIN (others could read it)",
            ),
        },
    }
}

/// The vdb's saved environments: which packages carry the PIN variable
/// (`IMA_TOKEN_PIN`, and the `pin_env` name when it is another).
pub(super) fn check_saved_pin(r: &mut Report, s: Option<&Settings>, location: &Location) {
    let mut names = vec![DEFAULT_PIN_ENV];
    if let Some(name) = s.and_then(|s| s.hardware.pin_env.as_deref()) {
        if name != DEFAULT_PIN_ENV {
            names.push(name);
        }
    }
    let packages = match Vdb::open(&location.eroot).and_then(|v| v.packages()) {
        Ok(p) => p,
        Err(e) => {
            r.skip(
                CheckId::PinSaved,
                format!("no installed packages to look at: {e}"),
            );
            return;
        }
    };
    // Decompressing every environment is the cost: one package per task.
    let results: Vec<_> = packages
        .par_iter()
        .map(|package| {
            let path = saved_env_path(package);
            let found = assigned_variables(&path, &names);
            (path, found)
        })
        .collect();
    let mut carrying = Vec::new();
    let mut unreadable = Vec::new();
    for (path, found) in results {
        match found {
            Ok(found) if found.is_empty() => {}
            Ok(found) => carrying.push((path, found.join(", "))),
            Err(e) => unreadable.push(format!("{}: {e}", path.display())),
        }
    }
    let searched = names.join(" or ");
    if carrying.is_empty() {
        let finding = format!(
            "no saved environment of the {} installed packages holds {searched}",
            packages.len()
        );
        match unreadable.as_slice() {
            [] => r.ok(CheckId::PinSaved, finding),
            [first, ..] => r.warn(
                CheckId::PinSaved,
                format!(
                    "{finding}, but {} could not be read ({first})",
                    unreadable.len()
                ),
                "run doctor as root",
            ),
        }
        return;
    }
    let mut shown: Vec<String> = carrying
        .iter()
        .take(EXAMPLES)
        .map(|(path, vars)| format!("{} ({vars})", path.display()))
        .collect();
    if carrying.len() > EXAMPLES {
        shown.push(format!("and {} more", carrying.len() - EXAMPLES));
    }
    r.fail(
        CheckId::PinSaved,
        format!(
            "the token PIN was saved by Portage, readable by every user, in {} package \
             environments: {}",
            carrying.len(),
            shown.join(", ")
        ),
        format!(
            "take the PIN as known: change it on the token (pkcs11-tool --change-pin) and put \
             the new one in pin_file; remove {searched} from emerge's environment; then \
             re-merge those packages (or rewrite each environment.bz2 without the line), and \
             rebuild binary packages made meanwhile (FEATURES=buildpkg), which carry it too"
        ),
    );
}
