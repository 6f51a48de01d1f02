# shellcheck shell=bash
# portage-ima: sign every file Portage merges with an IMA signature.
#
# Use it by adding this line to /etc/portage/bashrc (the test keeps
# Portage quiet if the package is removed):
#   [[ -r /usr/share/portage-ima/portage-ima.bashrc ]] && source /usr/share/portage-ima/portage-ima.bashrc
# Settings live in /etc/portage/ima.toml (key, cert, strict, premerge...).
# The binary is ${PORTAGE_IMA} if set, else `portage-ima` from PATH; in a
# binary merge (EMERGE_FROM=binary) always the one installed beside this
# file (.../share/portage-ima/portage-ima.bashrc -> .../bin/portage-ima).
#
# Timing: Portage sources bashrc at the start of every phase, before the
# phase's pre_pkg_*, pkg_* and post_pkg_* functions, so this runs from the
# top level and leaves all those functions to you. At that point
#   preinst:  ${D} holds the complete image (src_install is done) and nothing
#             is merged yet: files signed here go live already signed;
#   postinst: every file is merged and the vdb CONTENTS is complete (the old
#             version's prerm/postrm have run); what preinst could not sign,
#             or what a pkg_preinst added to ${D}, is signed here.
# Files that pkg_postinst changes afterwards are not re-signed.
#   package:  (FEATURES=buildpkg, before preinst) ${D} is about to be packed
#             into the binary package: signed here, with the signatures
#             listed in build-info/IMA_SIGNATURES, the package carries them.
# With mode = "verify" in ima.toml (a client of a binary host, no key),
# preinst and postinst keep the package's trusted signatures instead.
#   postrm:   (only with [keylime] in ima.toml) the removed or replaced
#             version's digests leave the Keylime runtime policy, which
#             postinst updates for the new version; never fails an unmerge.
#
# Nothing happens in any other phase: not in `depend` (metadata generation,
# where running a command corrupts the cache) and not with an empty
# EBUILD_PHASE (helper runs). No functions are defined; the variables used
# are unset again.
#
# Messages: problems go through ewarn (class "warn"), which Portage's default
# PORTAGE_ELOG_CLASSES="log warn error" sends to elog; the per-package
# summary goes through einfo (class "info": terminal and build log, not
# elog) unless PORTAGE_IMA_ELOG_SUMMARY=yes (make.conf or package.env) sends
# it through elog (class "log"). Opt packages out with `skip` in ima.toml;
# PORTAGE_IMA_SKIP=1 or yes (package.env) still does for a build from source.
#
# Portage restores a binary package's saved build environment for its
# phases, so there PORTAGE_IMA and PORTAGE_IMA_SKIP are the build host's (or
# the package's), never the client's: both are ignored. (EMERGE_FROM,
# EBUILD_PHASE and PORTAGE_CONFIGROOT are Portage's own, filtered out of it.)
#
# Fail-safe merges: when the kernel enforces appraisal and this merge would
# drop the signatures made in preinst (a copy without FEATURES=xattr), the
# hook exits 4 in preinst and this snippet stops the merge (die), strict or
# not, unless allow_unsigned_window = true.

# The token PIN never goes through the environment of an emerge: Portage
# saves the ebuild environment at the end of every phase (${T}/environment),
# and from there into every package's /var/db/pkg/CAT/PF/environment.bz2,
# readable by all, and into binary packages. So the variable the README once
# suggested (IMA_TOKEN_PIN), and the one pin_env names in ima.toml, are unset
# here in every phase (not in `depend`, which saves nothing), before anything
# can save them; the hook refuses pin_env inside an emerge. A pin_env line
# this cannot read (ima.toml unreadable to the portage user) leaves only the
# hook's refusal and `portage-ima doctor`'s scan of the vdb.
if [[ -n ${EBUILD_PHASE-} && ${EBUILD_PHASE} != depend ]]; then
	unset IMA_TOKEN_PIN 2>/dev/null
	_portage_ima_conf=${PORTAGE_CONFIGROOT%/}/etc/portage/ima.toml
	if [[ -f ${_portage_ima_conf} && -r ${_portage_ima_conf} ]]; then
		while IFS= read -r _portage_ima_line || [[ -n ${_portage_ima_line} ]]; do
			if [[ ${_portage_ima_line} =~ ^[[:space:]]*pin_env[[:space:]]*=[[:space:]]*[\"\']([A-Za-z_][A-Za-z0-9_]*)[\"\'] ]]; then
				unset "${BASH_REMATCH[1]}" 2>/dev/null
			fi
		done <"${_portage_ima_conf}" 2>/dev/null
	fi
	unset _portage_ima_conf _portage_ima_line
fi

_portage_ima_phase=${EBUILD_PHASE-}
case ${EMERGE_FROM-}:${PORTAGE_IMA_SKIP-} in
binary:*) ;;
*:1 | *:yes)
	[[ ${_portage_ima_phase} == postinst ]] && einfo "portage-ima: PORTAGE_IMA_SKIP=${PORTAGE_IMA_SKIP}: files of ${CATEGORY}/${PF} are not signed"
	_portage_ima_phase=
	;;
esac
# postrm only keeps a Keylime policy current: without a [keylime] table in
# ima.toml nothing runs there (an upgrade's old postrm would otherwise run
# a new binary that may not be signed yet).
if [[ ${_portage_ima_phase} == postrm ]]; then
	_portage_ima_conf=${PORTAGE_CONFIGROOT%/}/etc/portage/ima.toml
	_portage_ima_keylime=
	{ while IFS= read -r _portage_ima_line || [[ -n ${_portage_ima_line} ]]; do
		[[ ${_portage_ima_line} =~ ^[[:space:]]*\[keylime\] ]] && _portage_ima_keylime=1
	done <"${_portage_ima_conf}"; } 2>/dev/null
	[[ -n ${_portage_ima_keylime} ]] || _portage_ima_phase=
	unset _portage_ima_conf _portage_ima_line _portage_ima_keylime
fi
case ${_portage_ima_phase} in
package | preinst | postinst | postrm)
	_portage_ima_bin=${PORTAGE_IMA:-$(command -v portage-ima)}
	[[ ${EMERGE_FROM-} == binary ]] && _portage_ima_bin=${BASH_SOURCE[0]%/share/portage-ima/*}/bin/portage-ima
	# A merge of portage-ima itself that dropped the signatures: preinst
	# kept a signed copy of the new binary in the build directory (root's,
	# not a symlink); the merged one is unsigned until this postinst signs it.
	if [[ ${EBUILD_PHASE} == postinst && -n ${PORTAGE_BUILDDIR-} && -f ${PORTAGE_BUILDDIR}/portage-ima.self &&
		! -L ${PORTAGE_BUILDDIR}/portage-ima.self && -O ${PORTAGE_BUILDDIR}/portage-ima.self ]]; then
		_portage_ima_bin=${PORTAGE_BUILDDIR}/portage-ima.self
	fi
	# Strict mode is read here too (a line `strict = true`; an unreadable
	# file counts as strict), so that whatever status the hook ends with, a
	# signal or a crash included, fails the merge in strict mode: only 0
	# passes then. Outside strict mode nothing here calls die. (The hook
	# decides the same way and exits 3 for its own errors and signals.)
	_portage_ima_conf=${PORTAGE_CONFIGROOT%/}/etc/portage/ima.toml
	_portage_ima_strict=
	if [[ -e ${_portage_ima_conf} ]]; then
		[[ -f ${_portage_ima_conf} ]] || _portage_ima_strict=1
		{ while IFS= read -r _portage_ima_line || [[ -n ${_portage_ima_line} ]]; do
			if [[ ${_portage_ima_line} =~ ^[[:space:]]*strict[[:space:]]*=[[:space:]]*true([[:space:]#]|$) ]]; then
				_portage_ima_strict=1
			fi
		done <"${_portage_ima_conf}"; } 2>/dev/null || _portage_ima_strict=1
	fi
	if [[ -z ${_portage_ima_bin} || ! -x ${_portage_ima_bin} ]]; then
		_portage_ima_line="portage-ima: ${_portage_ima_bin:-portage-ima} not found or not executable (install it or set PORTAGE_IMA): files of ${CATEGORY}/${PF} are NOT signed"
		# Strict: stop at once; else warn once per package (postinst).
		[[ -n ${_portage_ima_strict} && ${EBUILD_PHASE} != postrm ]] && die "${_portage_ima_line} (strict = true in ima.toml)"
		[[ ${EBUILD_PHASE} == postinst ]] && ewarn "${_portage_ima_line}"
	else
		# stdout (the summary) -> einfo, or elog on request; stderr -> ewarn.
		# No file: ${T} belongs to the portage user, who could plant a symlink
		# there; stderr lines come through a pipe marked with \036.
		_portage_ima_rc=0
		_portage_ima_out=$({
			"${_portage_ima_bin}" hook 2>&1 1>&3 3>&- | while IFS= read -r _portage_ima_line || [[ -n ${_portage_ima_line} ]]; do
				printf '\036%s\n' "${_portage_ima_line}"
			done
			exit "${PIPESTATUS[0]}"
		} 3>&1) || _portage_ima_rc=$?
		while IFS= read -r _portage_ima_line; do
			case ${_portage_ima_line} in
			$'\036') ;;
			$'\036'*) ewarn "${_portage_ima_line#$'\036'}" ;;
			?*) if [[ ${PORTAGE_IMA_ELOG_SUMMARY-} == yes ]]; then elog "${_portage_ima_line}"; else einfo "${_portage_ima_line}"; fi ;;
			esac
		done <<<"${_portage_ima_out}"
		case ${_portage_ima_rc}:${_portage_ima_strict}:${EBUILD_PHASE} in
		0:*) ;;
		*:postrm) ewarn "portage-ima: '${_portage_ima_bin} hook' failed with exit status ${_portage_ima_rc} in postrm: the Keylime policy may still list ${CATEGORY}/${PF} (the next merge catches up)" ;;
		4:*) die "portage-ima: the merge of ${CATEGORY}/${PF} is stopped before any file goes live: the kernel enforces IMA appraisal and this merge would leave its programs unsigned until postinst (see the warnings above for the fix)" ;;
		1::*) ;; # the files not signed were reported just above
		3:*) die "portage-ima: strict mode (strict = true in ima.toml): files of ${CATEGORY}/${PF} could not be signed (or carry no trusted signature) in ${EBUILD_PHASE}, see the warnings above" ;;
		*:1:*) die "portage-ima: strict mode (strict = true in ima.toml): '${_portage_ima_bin} hook' ended with exit status ${_portage_ima_rc} in ${EBUILD_PHASE}: files of ${CATEGORY}/${PF} may NOT be signed" ;;
		*) ewarn "portage-ima: files of ${CATEGORY}/${PF} are NOT signed ('${_portage_ima_bin} hook' ended with exit status ${_portage_ima_rc} in ${EBUILD_PHASE}); once the cause is fixed, run: portage-ima sign =${CATEGORY}/${PF}" ;;
		esac
	fi
	unset _portage_ima_bin _portage_ima_conf _portage_ima_strict _portage_ima_rc _portage_ima_out _portage_ima_line
	;;
esac
unset _portage_ima_phase
