# Copyright 2026 Gentoo Authors
# Distributed under the terms of the GNU General Public License v2

# Made by scripts/release from the live ebuild. CRATES and the crate
# LICENSE+= are generated from Cargo.lock by scripts/update-crates.

EAPI=8

CRATES="
	aho-corasick@1.1.5
	anstream@1.0.0
	anstyle-parse@1.0.0
	anstyle-query@1.1.5
	anstyle-wincon@3.0.11
	anstyle@1.0.14
	anyhow@1.0.105
	autocfg@1.5.1
	base16ct@0.2.0
	base64ct@1.8.3
	bit-set@0.11.1
	bit-vec@0.10.2
	bitflags@2.13.2
	block-buffer@0.10.4
	borsh-derive@1.8.1
	borsh@1.8.1
	bumpalo@3.20.4
	bytes@1.12.2
	bzip2@0.6.1
	cc@1.11.3
	cfg-if@1.0.5
	cfg_aliases@0.2.2
	chacha20@0.10.2
	clap@4.6.9
	clap_builder@4.6.7
	clap_complete@4.6.11
	clap_derive@4.6.9
	clap_lex@1.1.2
	clap_mangen@0.2.33
	colorchoice@1.0.5
	console@0.15.11
	const-oid@0.9.6
	core_detect@1.0.0
	cpufeatures@0.2.17
	cpufeatures@0.3.1
	crossbeam-deque@0.8.8
	crossbeam-epoch@0.9.21
	crossbeam-utils@0.8.23
	crypto-bigint@0.5.5
	crypto-common@0.1.7
	der@0.7.10
	der_derive@0.7.3
	digest@0.10.7
	ecdsa@0.16.9
	either@1.19.0
	elliptic-curve@0.13.8
	encode_unicode@1.0.0
	equivalent@1.0.3
	errno@0.3.15
	fastrand@2.5.0
	ff@0.13.1
	find-msvc-tools@0.1.15
	flagset@0.4.7
	fnv@1.0.7
	foreign-types-shared@0.1.1
	foreign-types@0.3.2
	futures-core@0.3.34
	futures-task@0.3.34
	futures-util@0.3.34
	generic-array@0.14.7
	getrandom@0.2.17
	getrandom@0.4.3
	group@0.13.0
	hashbrown@0.17.2
	heck@0.5.0
	hex@0.4.3
	hmac@0.12.1
	indexmap@2.14.2
	indicatif@0.17.11
	is_terminal_polyfill@1.70.2
	itoa@1.0.19
	js-sys@0.3.107
	lazy_static@1.5.1
	libbz2-rs-sys@0.2.7
	libc@0.2.191
	libm@0.2.16
	linux-raw-sys@0.12.1
	log@0.4.35
	md-5@0.10.6
	memchr@2.8.3
	num-bigint-dig@0.8.6
	num-integer@0.1.47
	num-iter@0.1.46
	num-traits@0.2.19
	number_prefix@0.4.0
	once_cell@1.21.4
	once_cell_polyfill@1.70.2
	openssl-macros@0.1.1
	openssl-sys@0.9.118
	openssl@0.10.82
	p256@0.13.2
	p384@0.13.1
	pem-rfc7468@0.7.0
	pin-project-lite@0.2.18
	pkcs1@0.7.5
	pkcs8@0.10.2
	pkg-config@0.3.34
	portable-atomic@1.15.0
	ppv-lite86@0.2.21
	primeorder@0.13.6
	proc-macro-crate@3.5.0
	proc-macro2@1.0.107
	proptest@1.12.0
	quick-error@1.2.3
	quote@1.0.47
	r-efi@6.0.0
	rand@0.10.4
	rand@0.8.8
	rand_chacha@0.3.1
	rand_core@0.10.1
	rand_core@0.6.4
	rand_xorshift@0.5.0
	rayon-core@1.13.0
	rayon@1.12.0
	regex-automata@0.4.19
	regex-syntax@0.8.12
	regex@1.13.2
	rfc6979@0.4.0
	roff@1.1.1
	rsa@0.9.10
	rustix@1.1.6
	rustversion@1.0.23
	rusty-fork@0.3.1
	sec1@0.7.3
	serde@1.0.229
	serde_core@1.0.229
	serde_derive@1.0.229
	serde_json@1.0.154
	serde_spanned@0.6.9
	sha1@0.10.7
	sha2@0.10.9
	shlex@2.0.1
	signal-hook-registry@1.4.8
	signal-hook@0.3.18
	signature@2.2.0
	slab@0.4.12
	smallvec@1.16.6
	spin@0.9.9
	spki@0.7.3
	strsim@0.11.1
	subtle@2.6.1
	syn@2.0.119
	syn@3.0.10
	tempfile@3.27.0
	terminal_size@0.4.4
	thiserror-impl@2.0.21
	thiserror@2.0.21
	tls_codec@0.4.2
	tls_codec_derive@0.4.2
	toml@0.8.23
	toml_datetime@0.6.11
	toml_datetime@1.1.3+spec-1.1.0
	toml_edit@0.22.27
	toml_edit@0.25.20+spec-1.1.0
	toml_parser@1.1.6+spec-1.1.0
	toml_write@0.1.2
	typenum@1.20.1
	unarray@0.1.4
	unicode-ident@1.0.27
	unicode-width@0.2.3
	utf8parse@0.2.2
	vcpkg@0.2.15
	version_check@0.9.5
	wait-timeout@0.2.1
	wasi@0.11.1+wasi-snapshot-preview1
	wasm-bindgen-macro-support@0.2.130
	wasm-bindgen-macro@0.2.130
	wasm-bindgen-shared@0.2.130
	wasm-bindgen@0.2.130
	web-time@1.1.0
	windows-link@0.2.1
	windows-sys@0.59.0
	windows-sys@0.61.2
	windows-targets@0.52.6
	windows_aarch64_gnullvm@0.52.6
	windows_aarch64_msvc@0.52.6
	windows_i686_gnu@0.52.6
	windows_i686_gnullvm@0.52.6
	windows_i686_msvc@0.52.6
	windows_x86_64_gnu@0.52.6
	windows_x86_64_gnullvm@0.52.6
	windows_x86_64_msvc@0.52.6
	winnow@0.7.15
	winnow@1.0.5
	x509-cert@0.2.5
	zerocopy-derive@0.8.64
	zerocopy@0.8.64
	zeroize@1.9.2
	zeroize_derive@1.5.0
	zmij@1.0.23
"

# Set by scripts/update-crates: the newest rust-version among the workspace
# and the crates that Cargo.lock pins for the build.
RUST_MIN_VER="1.85.0"

inherit cargo optfeature readme.gentoo-r1 shell-completion systemd toolchain-funcs

DESCRIPTION="Sign every file Portage merges with a Linux IMA signature"
HOMEPAGE="https://github.com/portage-ima/portage-ima"
SRC_URI="
	https://github.com/portage-ima/portage-ima/releases/download/v${PV}/${P}.tar.gz
	${CARGO_CRATE_URIS}
"

LICENSE="|| ( Apache-2.0 MIT )"
# Dependent crate licenses
LICENSE+=" Apache-2.0 BSD MIT Unicode-3.0 BZIP2"
SLOT="0"
KEYWORDS="~amd64"
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
