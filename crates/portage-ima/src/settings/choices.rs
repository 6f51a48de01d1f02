//! The settings that choose between a few ways: when to sign before the
//! merge, enforcement, the hook's mode, config files, the signing scope
//! and the progress display. Each deserializes from its ima.toml value.

use serde::Deserialize;

use crate::cli::ProgressMode;

/// When the hook signs files under `${D}`, before the merge.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Premerge {
    /// Only when the merge will keep the xattr.
    #[default]
    Auto,
    /// Always (the user knows the xattr survives).
    Always,
    /// Never: sign in postinst only.
    Never,
}

/// Whether the hook acts as if the kernel enforced IMA appraisal of what
/// root executes (`enforce` in ima.toml): `"auto"` (detect it,
/// `policy/enforcement.rs`), `true` or `false`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Enforce {
    /// Detect it from the running kernel (`"auto"`).
    #[default]
    Auto,
    /// Act as if it enforced (`true`).
    Yes,
    /// Act as if it did not (`false`).
    No,
}

impl<'de> Deserialize<'de> for Enforce {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(true) => Ok(Enforce::Yes),
            Raw::Bool(false) => Ok(Enforce::No),
            Raw::Text(t) if t == "auto" => Ok(Enforce::Auto),
            Raw::Text(t) => Err(serde::de::Error::custom(format!(
                "enforce = \"{t}\": expected \"auto\", true or false"
            ))),
        }
    }
}

/// What the hook does with signatures: make them, or only accept those a
/// binary host made (see `binpkg/`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Sign every file with our key (a build host, or a machine on its own).
    #[default]
    Sign,
    /// No private key: keep the signatures a trusted certificate verifies
    /// (carried by the binary package) and report every file without one.
    Verify,
    /// Like `verify`, and sign with our key what has no trusted signature.
    SignMissing,
}

impl Mode {
    /// The value as written in ima.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Sign => "sign",
            Mode::Verify => "verify",
            Mode::SignMissing => "sign-missing",
        }
    }
}

/// Which files `sign` and the hook's postinst sign (`scope`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SigningScope {
    /// Every file: safe under any policy.
    #[default]
    All,
    /// Only the files the IMA policy's appraise rules can cover (see
    /// `Coverage` in `policy/check.rs`); everything when no policy can be read.
    Policy,
}

/// How a long run shows its progress on stderr (`--progress`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProgressDisplay {
    /// A bar on a terminal, periodic lines otherwise.
    #[default]
    Auto,
    /// The bar (`--progress bar`).
    Bar,
    /// A line now and then, for logs.
    Lines,
    /// Nothing.
    None,
}

impl From<ProgressMode> for ProgressDisplay {
    fn from(mode: ProgressMode) -> Self {
        match mode {
            ProgressMode::Auto => ProgressDisplay::Auto,
            ProgressMode::Bar => ProgressDisplay::Bar,
            ProgressMode::Lines => ProgressDisplay::Lines,
            ProgressMode::None => ProgressDisplay::None,
        }
    }
}
