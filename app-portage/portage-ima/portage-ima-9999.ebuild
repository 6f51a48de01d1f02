# Copyright 2026 Gentoo Authors
# Distributed under the terms of the GNU General Public License v2

# The live ebuild: builds the main branch. scripts/release derives the
# versioned ebuild from this one; RUST_MIN_VER and the crate LICENSE+= are
# kept in step by scripts/update-crates.

EAPI=8

# Set by scripts/update-crates: the newest rust-version among the workspace
# and the crates that Cargo.lock pins for the build.
RUST_MIN_VER="1.85.0"

inherit cargo git-r3 optfeature readme.gentoo-r1 shell-completion systemd toolchain-funcs

DESCRIPTION="Sign every file Portage merges with a Linux IMA signature"
HOMEPAGE="https://github.com/portage-ima/portage-ima"
EGIT_REPO_URI="https://github.com/portage-ima/portage-ima.git"

LICENSE="|| ( Apache-2.0 MIT )"
# Dependent crate licenses
LICENSE+=" Apache-2.0 BSD MIT Unicode-3.0 BZIP2"
SLOT="0"
IUSE="+openssl test"
RESTRICT="!test? ( test )"

DEPEND="openssl? ( dev-libs/openssl:= )"
# keyctl: the boot service puts the certificate on the kernel's IMA keyring.
RDEPEND="
	${DEPEND}
	sys-apps/keyutils
"
# openssl-sys finds the system libcrypto with pkg-config. The tests make
# their keys with the openssl tool and check the signatures against
# evmctl's; those that need root or a kernel keyring skip themselves.
BDEPEND="
	openssl? ( virtual/pkgconfig )
	test? (
		app-crypt/ima-evm-utils
		dev-libs/openssl
	)
"

# Portage's CFLAGS check (under -frecord-gcc-switches) flags every ELF file
# without a .GCC.command.line section. rustc never writes one, and no C code
# is compiled into the binary (openssl-sys only runs the C preprocessor on
# its probe file), so the check cannot see the user's flags; cargo.eclass
# passes RUSTFLAGS and links with ${CC} ${LDFLAGS}.
QA_FLAGS_IGNORED="usr/bin/${PN}"

src_unpack() {
	git-r3_src_unpack
	# Fetches and vendors what Cargo.lock names (the live ebuild's network
	# access happens here, like git-r3's).
	cargo_live_src_unpack
}

src_configure() {
	# Link the system libcrypto, never a copy built from openssl-src.
	export OPENSSL_NO_VENDOR=1
	# Exactly one signing backend: the system libcrypto (default), or the
	# pure-Rust one for systems that want no C crypto library.
	local myfeatures=(
		$(usev openssl)
		$(usev !openssl rustcrypto)
	)
	cargo_src_configure --no-default-features
}

src_install() {
	cargo_src_install --path crates/portage-ima

	# The hook users source from /etc/portage/bashrc, and the settings
	# (config-protected under /etc/portage).
	insinto /usr/share/portage-ima
	doins bashrc.d/portage-ima.bashrc
	insinto /etc/portage
	doins example/ima.toml

	# Boot integration (docs/boot.md): the loader that puts the certificates
	# on the IMA keyring and then loads the policy, run by the OpenRC
	# service and the systemd unit (neither enabled here: portage-ima setup
	# enables the one that fits). The dracut and kernel config snippets act
	# wherever they are put, so they are only shipped, for setup to install.
	exeinto /usr/libexec/portage-ima
	doexe boot/load
	newinitd boot/openrc/portage-ima.initd portage-ima
	newconfd boot/openrc/portage-ima.confd portage-ima
	systemd_dounit boot/systemd/portage-ima.service
	insinto /usr/share/portage-ima/dracut
	doins boot/dracut/portage-ima.conf
	insinto /usr/share/portage-ima/kernel
	doins boot/kernel/portage-ima.config

	# The man pages and completions come from the binary's own argument
	# definitions, so they always match it: run the binary just built, in
	# the build tree (not the image, which stays untouched).
	if tc-is-cross-compiler; then
		ewarn "Cross-compiling: not generating the man pages and shell completions."
	else
		local bin
		bin="$(cargo_target_dir)/portage-ima" || die
		mkdir -p "${T}/man" || die
		"${bin}" generate man "${T}/man" || die "portage-ima generate man failed"
		# portage-ima(8), a page per subcommand, and ima.toml(5) (section 1
		# pages up to 0.1.0).
		doman "${T}"/man/*.[158]

		"${bin}" generate completions bash > "${T}/portage-ima.bash" ||
			die "portage-ima generate completions bash failed"
		newbashcomp "${T}/portage-ima.bash" portage-ima

		# shell-completion.eclass: /usr/share/zsh/site-functions/_portage-ima
		# and /usr/share/fish/vendor_completions.d/portage-ima.fish.
		"${bin}" generate completions zsh > "${T}/portage-ima.zsh" ||
			die "portage-ima generate completions zsh failed"
		newzshcomp "${T}/portage-ima.zsh" _portage-ima

		"${bin}" generate completions fish > "${T}/portage-ima.fish" ||
			die "portage-ima generate completions fish failed"
		newfishcomp "${T}/portage-ima.fish" portage-ima.fish
	fi

	einstalldocs

	# The setup steps: /usr/share/doc/${PF}/README.gentoo, shown once on the
	# first install (readme.gentoo-r1).
	local DISABLE_AUTOFORMATTING=1
	local snippet="${EPREFIX}/usr/share/portage-ima/portage-ima.bashrc"
	local DOC_CONTENTS="To have Portage sign every file it merges with an IMA signature, run
'emerge --config ${CATEGORY}/${PN}' (portage-ima setup --apply): it makes the
key, writes the settings below, enables the boot service that fits, signs
what is installed and prints the boots still to do ('portage-ima setup'
alone prints the plan). By hand:
1. Create the signing key and its certificate (ima.toml's defaults:
/etc/keys/IMA_signing_key.priv, root-only, and /etc/keys/x509_ima.der) and
load the certificate on the kernel's IMA keyring at every boot.
2. Add this line to ${EPREFIX}/etc/portage/bashrc:
[[ -r ${snippet} ]] && source ${snippet}
3. Review ${EPREFIX}/etc/portage/ima.toml (key, cert, hash, strict...).
4. Run 'portage-ima doctor': it checks all of the above, and prints the
make.conf lines that keep security.ima when PORTAGE_TMPDIR is a tmpfs.
Opt a package out with PORTAGE_IMA_SKIP=1 from package.env; have the
per-package summary in the elog summary with PORTAGE_IMA_ELOG_SUMMARY=yes."
	readme.gentoo_create_doc
}

pkg_postinst() {
	readme.gentoo_print_elog
	optfeature "checking signatures with evmctl, and dracut's integrity module" app-crypt/ima-evm-utils

	# On a first install: this package's own files were merged before the
	# hook was set up.
	[[ -n ${REPLACING_VERSIONS} ]] && return
	ewarn "The files of ${CATEGORY}/${PN} were merged before the hook was set up and"
	ewarn "are not signed; sign them before IMA appraisal goes to enforce mode:"
	ewarn "  portage-ima sign ${CATEGORY}/${PN}"
}

pkg_config() {
	# emerge --config: from an unsigned machine to the first boots. setup
	# reads the machine, carries out its plan (a backup of every file it
	# changes, never the boot loader) and prints the boots still to do; a
	# second run changes nothing.
	"${EROOT}/usr/bin/portage-ima" setup --apply --root "${ROOT:-/}" ||
		die "portage-ima setup failed (its messages say why; 'portage-ima setup' prints the plan)"
}
