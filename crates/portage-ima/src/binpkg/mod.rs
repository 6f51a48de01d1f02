//! Binary packages ("binpkg", Portage's own word: `FEATURES=buildpkg`,
//! `binpkg-request-signature`, `emerge --usepkg`): signatures that travel
//! with them, made once on the build host and kept on clients that hold
//! only the certificate.
//!
//! What real Portage does (3.0.x, checked in its source and with `emerge`):
//! - A binary package (`FEATURES=buildpkg`) is made in the `package` phase,
//!   after src_install and before preinst, from `${D}` (a hard-linked copy
//!   under `${T}/packaging` when PKG_INSTALL_MASK is set). A signature made
//!   in preinst is never in it; the hook signs in the package phase. The
//!   bashrc is sourced there too (misc-functions.sh), as root.
//! - xpak (`.tbz2`/`.xpak`): the image is packed by `gtar --xattrs` when
//!   `FEATURES=xattr`, so `security.ima` is in the tar (PAX
//!   `SCHILY.xattr.security.ima`). `emerge -K` extracts with
//!   `--xattrs-exclude` for every entry of `PORTAGE_XATTR_EXCLUDE`, which by
//!   default lists `security.*`: the client must drop it from the list.
//! - gpkg (`.gpkg.tar`): Python's `tarfile` packs the image, which stores no
//!   xattrs at all, whatever the settings.
//! - Both formats store every file of `${PORTAGE_BUILDDIR}/build-info` as the
//!   package's metadata, unpack it into the client's build-info before
//!   preinst, and copy it into the vdb entry (`/var/db/pkg/CAT/PF/`) at the
//!   merge; `quickpkg` packs the vdb entry again.
//!
//! So in the package phase the hook also writes `build-info/IMA_SIGNATURES`
//! ([`manifest::MANIFEST`]): every signed file's CONTENTS path and its `security.ima`.
//! A client applies an entry only when it verifies, against a trusted
//! certificate, over the content of the file it is about to merge (or has
//! merged, and whose MD5 CONTENTS records): the list needs no protection of
//! its own, and a file changed on the binary host after signing is found.

//!
//! - [`manifest`]: the `IMA_SIGNATURES` file format, parsed and written;
//! - [`client`]: what a client does with one file, the [`client::Client`]
//!   that the engine runs like any other writer ([`crate::engine::Writer`]),
//!   and its tally;
//! - [`host`]: what the build host does with one file in the package phase.
//!
//! The plan decides what happens to each file and the engine runs the
//! per-file rules, as for `sign` and the hook; only the writing is here.

pub mod client;
pub mod host;
pub mod manifest;
