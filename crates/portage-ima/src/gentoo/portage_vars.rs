//! The three Portage variables the hook's decisions rest on: FEATURES,
//! PORTAGE_XATTR_EXCLUDE and PORTAGE_TMPDIR, as Portage itself resolves
//! them (`portageq envvar`, with PORTAGE_CONFIGROOT for another root), else
//! read roughly from make.globals and make.conf. Shared by `doctor`,
//! `policy` and the fail-safe decision.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::gentoo::make_conf::{Features, RootConf, DEFAULT_XATTR_EXCLUDE};

/// Portage's default PORTAGE_TMPDIR (make.globals).
const DEFAULT_TMPDIR: &str = "/var/tmp";

/// FEATURES, PORTAGE_XATTR_EXCLUDE and PORTAGE_TMPDIR, and where they came from.
#[derive(Debug)]
pub(crate) struct PortageVars {
    pub(crate) features: Features,
    pub(crate) xattr_exclude: String,
    pub(crate) tmpdir: String,
    pub(crate) source: String,
}

impl PortageVars {
    /// PORTAGE_XATTR_EXCLUDE's patterns.
    pub(crate) fn xattr_exclude_patterns(&self) -> Vec<String> {
        self.xattr_exclude
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    /// Where builds happen: `${PORTAGE_TMPDIR}/portage` when it exists (often
    /// a tmpfs of its own, as the Gentoo handbook suggests), else PORTAGE_TMPDIR.
    pub(crate) fn build_dir(&self) -> PathBuf {
        let base = PathBuf::from(&self.tmpdir);
        let build = base.join("portage");
        if build.is_dir() {
            build
        } else {
            base
        }
    }
}

/// Asks portageq when it exists (what Portage itself will use), else reads
/// make.globals and make.conf roughly.
pub(crate) fn portage_vars(root: &Path, vars: &crate::gentoo::vars::Vars) -> PortageVars {
    // Never through PATH inside an ebuild phase (see portageq_command).
    if let Some(mut cmd) = crate::gentoo::portageq::portageq_command(vars) {
        cmd.args([
            "envvar",
            "FEATURES",
            "PORTAGE_XATTR_EXCLUDE",
            "PORTAGE_TMPDIR",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null());
        if root != Path::new("/") {
            cmd.env("PORTAGE_CONFIGROOT", root);
        }
        if let Ok(out) = cmd.output() {
            let text = String::from_utf8_lossy(&out.stdout);
            let lines: Vec<&str> = text.lines().collect();
            if out.status.success() && lines.len() == 3 {
                return PortageVars {
                    features: Features::from_words(lines[0].split_whitespace()),
                    xattr_exclude: lines[1].to_string(),
                    tmpdir: non_empty(lines[2], DEFAULT_TMPDIR),
                    source: "from portageq".into(),
                };
            }
        }
    }
    let RootConf {
        conf,
        make_conf,
        had_globals,
    } = RootConf::read(root);
    let exclude = conf
        .get("PORTAGE_XATTR_EXCLUDE")
        .map_or(DEFAULT_XATTR_EXCLUDE.join(" "), str::to_string);
    let tmpdir = non_empty(conf.get("PORTAGE_TMPDIR").unwrap_or(""), DEFAULT_TMPDIR);
    PortageVars {
        features: conf.features().clone(),
        xattr_exclude: exclude,
        tmpdir,
        source: format!(
            "portageq not found: read roughly from {}{}",
            make_conf.display(),
            if had_globals {
                " and make.globals"
            } else {
                " and Portage's defaults"
            }
        ),
    }
}

fn non_empty(value: &str, default: &str) -> String {
    if value.trim().is_empty() {
        default.to_string()
    } else {
        value.trim().to_string()
    }
}
