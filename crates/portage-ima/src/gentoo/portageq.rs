//! Running Portage's own `portageq`, safely from inside an ebuild phase.

use std::path::PathBuf;

/// How to run `portageq`.
///
/// Inside an ebuild phase (`EBUILD_PHASE` set: the hook, as root), `PATH`
/// may hold directories the build put there, so `portageq` is never looked
/// up in it: it is run the way Portage's own `portageq-wrapper` runs it,
/// `${PORTAGE_PYTHON} ${PORTAGE_BIN_PATH}/portageq` with
/// `PYTHONPATH=${PORTAGE_PYTHONPATH:-${PORTAGE_PYM_PATH}}`, and only when
/// those paths are absolute; otherwise `None` (do without portageq).
/// Outside Portage (an admin running a command) it is the `portageq` on
/// the admin's own `PATH`.
pub(crate) fn portageq_command(vars: &crate::gentoo::vars::Vars) -> Option<std::process::Command> {
    portageq_command_from(|k| vars.get_os(k).map(std::ffi::OsStr::to_os_string))
}

fn portageq_command_from(
    get: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Option<std::process::Command> {
    if get("EBUILD_PHASE").is_none() {
        return Some(std::process::Command::new("portageq"));
    }
    let absolute = |k: &str| get(k).map(PathBuf::from).filter(|p| p.is_absolute());
    let bin = absolute("PORTAGE_BIN_PATH")?;
    let python = absolute("PORTAGE_PYTHON").unwrap_or_else(|| PathBuf::from("/usr/bin/python"));
    let mut cmd = std::process::Command::new(python);
    cmd.arg(bin.join("portageq"));
    let pym = absolute("PORTAGE_PYM_PATH");
    if let Some(path) = absolute("PORTAGE_PYTHONPATH").or_else(|| pym.clone()) {
        cmd.env("PYTHONPATH", path);
    }
    // A safe working directory, as the wrapper does (Portage bug #469338).
    cmd.current_dir(pym.unwrap_or_else(|| PathBuf::from("/")));
    Some(cmd)
}

#[cfg(test)]
mod tests {
    use super::portageq_command_from;
    use std::ffi::OsString;

    fn cmd(vars: &[(&str, &str)]) -> Option<(String, Vec<String>)> {
        let c = portageq_command_from(|k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| OsString::from(v))
        })?;
        Some((
            c.get_program().to_string_lossy().into_owned(),
            c.get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
        ))
    }

    #[test]
    fn inside_portage_portageq_is_never_looked_up_in_path() {
        // An admin's own command: their PATH.
        assert_eq!(cmd(&[]), Some(("portageq".into(), vec![])));
        // In an ebuild phase: Portage's python and bin path, or nothing.
        let phase = ("EBUILD_PHASE", "postinst");
        assert_eq!(cmd(&[phase]), None);
        assert_eq!(cmd(&[phase, ("PORTAGE_BIN_PATH", "bin")]), None);
        assert_eq!(
            cmd(&[
                phase,
                ("PORTAGE_BIN_PATH", "/usr/lib/portage/python3.12"),
                ("PORTAGE_PYTHON", "/usr/bin/python3.12"),
            ]),
            Some((
                "/usr/bin/python3.12".into(),
                vec!["/usr/lib/portage/python3.12/portageq".into()]
            ))
        );
        let (python, _) = cmd(&[
            phase,
            ("PORTAGE_BIN_PATH", "/usr/lib/portage/python3.12"),
            ("PORTAGE_PYTHON", "python3"),
        ])
        .unwrap();
        assert_eq!(python, "/usr/bin/python");
    }
}
