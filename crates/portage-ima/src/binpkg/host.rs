//! The build host's per-file rule in the package phase: sign the file (or,
//! sign-missing, keep a trusted signature) and hand back its
//! `security.ima` for the package's [`super::manifest::MANIFEST`]. Config
//! files get what `config_files` says and are not listed. It is a
//! [`Writer`] of the engine, like every other run.

use std::fs::File;
use std::path::Path;

use ima_core::{ImaHasher, ImaSigner, SignOptions, SignOutcome};

use super::client::{Client, Settled};
use super::manifest::signature_value;
use crate::engine::{WriteError, Writer};
use crate::plan::{SkipReason, Treatment};
use crate::report::Failure;

/// A signed file of the package: whether it was signed now (not kept),
/// and the value listed for it.
pub type Listed = Option<(bool, Vec<u8>)>;

/// What the package phase writes with.
pub struct Packer<'a> {
    /// Our key.
    pub signer: &'a ImaSigner,
    /// Digests for config files under `config_files = "hash"`.
    pub hasher: &'a ImaHasher,
    /// sign-missing: a client with no list, whose trusted signatures are
    /// kept (and whose rule decides what our key signs).
    pub client: Option<Client<'a>>,
}

impl Writer for Packer<'_> {
    type Done = Listed;

    fn write(
        &self,
        file: &File,
        listed: &Path,
        treatment: Treatment,
        _expect_md5: Option<[u8; 16]>,
    ) -> Result<Listed, WriteError> {
        let keep = SignOptions {
            expect_md5: None,
            keep_valid: true,
            dry_run: false,
        };
        match treatment {
            Treatment::Sign => {}
            // Config files get what config_files says, and are not listed.
            Treatment::Hash => {
                self.hasher
                    .hash_file(file, &keep)
                    .map_err(WriteError::Ima)?;
                return Ok(None);
            }
            Treatment::Leave(_) => return Ok(None),
        }
        let newly = match &self.client {
            Some(client) => client.write(file, listed, Treatment::Sign, None)? == Settled::Signed,
            None => {
                let outcome = self
                    .signer
                    .sign_file(file, &keep)
                    .map_err(WriteError::Ima)?;
                outcome != SignOutcome::AlreadyValid
            }
        };
        let value = signature_value(file).ok_or(WriteError::Failed(Failure::Other(
            "no signature after signing".into(),
        )))?;
        Ok(Some((newly, value)))
    }

    fn left(&self, _reason: SkipReason) -> Listed {
        None
    }
}
