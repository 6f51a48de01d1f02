# Copyright 2026 Gentoo Authors
# Distributed under the terms of the GNU General Public License v2

# The live ebuild: builds the main branch. RUST_MIN_VER and the crate
# LICENSE+= are copied from the versioned ebuild by scripts/update-crates.

EAPI=8

# Set by scripts/update-crates: the newest rust-version among the workspace
# and the crates that Cargo.lock pins for the build.
RUST_MIN_VER="1.85.0"

inherit cargo git-r3 shell-completion toolchain-funcs

DESCRIPTION="Sign every file Portage merges with a Linux IMA signature"
HOMEPAGE="https://github.com/portage-ima/portage-ima"
EGIT_REPO_URI="https://github.com/portage-ima/portage-ima.git"

LICENSE="|| ( Apache-2.0 MIT )"
# Dependent crate licenses
LICENSE+=" Apache-2.0 BSD MIT Unicode-3.0"
SLOT="0"
IUSE="+openssl test"
RESTRICT="!test? ( test )"

DEPEND="openssl? ( dev-libs/openssl:= )"
RDEPEND="${DEPEND}"
# The tests make their keys with the openssl tool and check the signatures
# against evmctl's; those that need root or a kernel keyring skip themselves.
BDEPEND="
	test? (
		app-crypt/ima-evm-utils
		dev-libs/openssl
	)
"

src_unpack() {
	git-r3_src_unpack
	# Fetches and vendors what Cargo.lock names (the live ebuild's network
	# access happens here, like git-r3's).
	cargo_live_src_unpack
}

# No QA_FLAGS_IGNORED: cargo.eclass links with ${CC} ${LDFLAGS} and passes
# RUSTFLAGS, so the binary carries the user's flags.

src_configure() {
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

	# The man pages and completions come from the binary's own argument
	# definitions, so they always match it; that needs to run the binary.
	if tc-is-cross-compiler; then
		ewarn "Cross-compiling: not generating the man pages and shell completions."
	else
		local bin="${ED}/usr/bin/portage-ima"
		mkdir -p "${T}/man" || die
		"${bin}" generate man "${T}/man" || die "portage-ima generate man failed"
		doman "${T}"/man/*.1

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
}

pkg_postinst() {
	# The setup steps, on a first install only.
	[[ -n ${REPLACING_VERSIONS} ]] && return

	elog "To have Portage sign every file it merges with an IMA signature:"
	elog "  1. Create the signing key and its certificate (defaults:"
	elog "     /etc/keys/IMA_signing_key.priv, readable by root only, and"
	elog "     /etc/keys/x509_ima.der) and load the certificate on the kernel's"
	elog "     IMA keyring at every boot: the _ima keyring, e.g."
	elog "       evmctl import /etc/keys/x509_ima.der \$(keyctl newring _ima @u)"
	elog "     or, with CONFIG_INTEGRITY_TRUSTED_KEYRING, .ima (the certificate"
	elog "     must then be signed by a key the kernel trusts)."
	elog "  2. Add this line to ${EROOT}/etc/portage/bashrc:"
	elog "       source \"${EPREFIX}/usr/share/portage-ima/portage-ima.bashrc\""
	elog "  3. Review ${EROOT}/etc/portage/ima.toml (key, cert, hash, strict...)."
	elog "  4. Run 'portage-ima doctor': it checks all of the above."
	ewarn "The files of ${CATEGORY}/${PN} itself were merged before the hook was set"
	ewarn "up, so they are not signed. Sign them before switching IMA appraisal"
	ewarn "to enforce mode, or the kernel will refuse to run portage-ima:"
	ewarn "  portage-ima sign ${CATEGORY}/${PN}"
	ewarn "('portage-ima sign --all' signs every installed package.)"
}
