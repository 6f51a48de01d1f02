#!/bin/bash
# /sbin/portage-vm-init: init of the enforce-mode emerge test's root
# filesystem (see portagevm.py and test_enforce_emerge.py).
#
# Sets up what an IMA-enforcing Gentoo boot has (securityfs, the test
# certificate on the `_ima` keyring, the IMA policy from /etc/ima/ima-policy,
# as systemd and OpenRC setups load it), then runs real emerges in three
# merge modes and checks what the kernel allowed. Every step is one
# `@@ima-test KIND ID t=UPTIME key=value...` line on the console; emerge and
# doctor output follow as `@@out ID ...` lines; the ebuilds' own log
# (/var/log/ima-cases) as `@@case ...`; dmesg as `@@dmesg ...`, split into
# phases by `@@phase NAME` lines written to /dev/kmsg. Anything unexpected
# ends in a `fatal` line. The kernel was booted with ima_appraise=enforce:
# from the policy write on, every program root executes must carry a valid
# signature.

bb=/usr/bin/busybox
$bb mount -t devtmpfs devtmpfs /dev 2>/dev/null # CONFIG_DEVTMPFS_MOUNT may have done it
exec </dev/console >/dev/console 2>&1
export PATH=/opt/portage/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 LC_ALL=C.UTF-8 TERM=dumb NOCOLOR=true PYTHONDONTWRITEBYTECODE=1
# Portage from PyPI takes its venv as EPREFIX unless told otherwise.
export PORTAGE_OVERRIDE_EPREFIX=/

uptime() { cut -d' ' -f1 /proc/uptime; }
say() {
	local kind=$1 id=$2
	shift 2
	echo "@@ima-test $kind $id t=$(uptime) $*"
}
b64() { base64 -w 0; }
dump() {
	$bb dmesg | sed 's/^/@@dmesg /'
	[[ -f /var/log/ima-cases ]] && sed 's/^/@@case /' /var/log/ima-cases
}
die() {
	say fatal - "reason=$(printf '%s' "$*" | b64)"
	dump
	$bb poweroff -f
}

$bb mount -t proc proc /proc || die "mount proc"
$bb mount -t sysfs sysfs /sys || die "mount sysfs"
$bb mount -t securityfs securityfs /sys/kernel/security || die "mount securityfs"
$bb mkdir -p /dev/pts /dev/shm
$bb mount -t devpts devpts /dev/pts || die "mount devpts"
$bb mount -t tmpfs -o mode=1777 tmpfs /dev/shm || die "mount /dev/shm"
$bb mount -t tmpfs -o mode=0755 tmpfs /run || die "mount /run"
# bash process substitution (Portage needs it) goes through /dev/fd.
ln -sfn /proc/self/fd /dev/fd
ln -sfn /proc/self/fd/0 /dev/stdin
ln -sfn /proc/self/fd/1 /dev/stdout
ln -sfn /proc/self/fd/2 /dev/stderr
# Without auditd, audit records reach dmesg through printk_ratelimit(): lift
# the limit so no IMA denial record is dropped.
echo 0 >/proc/sys/kernel/printk_ratelimit
say kernel - "release=$(uname -r) cmdline=$(b64 </proc/cmdline)"

# The IMA keyring: a userspace `_ima` keyring (this kernel has no
# CONFIG_INTEGRITY_TRUSTED_KEYRING), with the certificate of the key that
# signed the image and signs what emerge merges.
ring=$(keyctl newring _ima @u) || die "keyctl newring _ima @u"
keyctl padd asymmetric "" "$ring" </etc/keys/ima.cert.der >/dev/null || die "keyctl padd"

# The policy, as the README says: `portage-ima policy` for this machine's
# layout (PORTAGE_TMPDIR on the root filesystem, FEATURES=userpriv), into
# /etc/ima/ima-policy, from where the boot loads it (the kernel has no
# CONFIG_IMA_WRITE_POLICY: one write per boot). The later merge modes only
# loosen what a fitted policy would exempt (tmpfs), so this stricter one
# serves them all.
mkdir -p /etc/ima
portage-ima policy --measure --output /etc/ima/ima-policy >/tmp/policy.out 2>&1 ||
	die "portage-ima policy: $(cat /tmp/policy.out)"
say policy-text - "text=$(b64 </etc/ima/ima-policy)"
cat /etc/ima/ima-policy >/sys/kernel/security/ima/policy || die "writing /etc/ima/ima-policy to the kernel"
say policy - written=1

# phase NAME: a marker in dmesg, so the host can tell which step a kernel
# record belongs to (audit records arrive late: wait a little first).
phase() {
	sleep 1
	echo "@@phase $1" >/dev/kmsg
	say phase "$1"
}

# run_step KIND ID CMD...: run CMD, report its exit code and output.
run_step() {
	local kind=$1 id=$2 out rc
	shift 2
	out=$("$@" 2>&1)
	rc=$?
	say "$kind" "$id" rc=$rc out="$(printf '%s' "$out" | b64)"
}

# emerge_step ID ATOM...: one emerge, its exit code, time and output.
emerge_step() {
	local id=$1 t0 t1 rc
	shift
	t0=$(uptime)
	emerge --color=n --oneshot --quiet-build=n "$@" >"/tmp/emerge-$id.out" 2>&1
	rc=$?
	t1=$(uptime)
	say emerge "$id" rc=$rc start="$t0" end="$t1"
	sed "s/^/@@out $id /" "/tmp/emerge-$id.out"
}

# doctor_step ID: what `portage-ima doctor` says about this setup.
doctor_step() {
	portage-ima doctor >"/tmp/doctor-$1.out" 2>&1
	say doctor "$1" rc=$?
	sed "s/^/@@out doctor-$1 /" "/tmp/doctor-$1.out"
}

# Booted with ima_appraise=log or fix (portagevm.case=appraise-mode): what the
# README's path to enforce mode and its recovery rely on. An unsigned copy of
# a program runs, the kernel logs what enforce would deny, and what the
# kernel wrote into security.ima is shown.
if grep -qw portagevm.case=appraise-mode /proc/cmdline; then
	phase appraise-mode
	mkdir -p /usr/local/bin
	cp /usr/bin/true /usr/local/bin/true-unsigned # cp copies no xattr
	run_step exec unsigned /usr/local/bin/true-unsigned
	run_step xattr unsigned getfattr --absolute-names -n security.ima -e hex /usr/local/bin/true-unsigned
	run_step exec unsigned-again /usr/local/bin/true-unsigned
	phase end
	dump
	say "done" -
	$bb poweroff -f
fi

# portagevm.case=binpkg (enforcing, issue 14): a client without a key. The
# signing key leaves the VM, ima.toml trusts the certificate only
# (mode = "verify"), and `emerge --usepkgonly` installs test-ima/binhello
# from the gpkg the host built and signed; then root runs it.
if grep -qw portagevm.case=binpkg /proc/cmdline; then
	rm -f /etc/keys/*.key.pem || die "removing the private keys"
	printf 'mode = "verify"\ntrusted_certs = ["/etc/keys/ima.cert.pem"]\nhash = "sha256"\n' \
		>/etc/portage/ima.toml || die "writing ima.toml"
	run_step keys - ls /etc/keys
	phase binpkg
	emerge_step binpkg --usepkgonly =test-ima/binhello-1
	phase binpkg-run
	run_step exec binhello /usr/bin/binhello
	run_step xattr binhello getfattr --absolute-names -n security.ima -e hex /usr/bin/binhello
	run_step xattr host cat /var/cache/binhello.security.ima
	run_step verify binhello portage-ima verify -v test-ima/binhello
	phase end
	dump
	say "done" -
	$bb poweroff -f
fi

# portagevm.case=audit (test_enforce_audit.py): the four kinds of denial an
# admin meets, made real, and what `policy --check` and `audit` say of them.
# json_step KIND ID CMD...: like run_step, stdout and stderr apart.
json_step() {
	local kind=$1 id=$2 out rc
	shift 2
	out=$("$@" 2>/tmp/stderr)
	rc=$?
	say "$kind" "$id" rc=$rc out="$(printf '%s' "$out" | b64)" err="$(b64 </tmp/stderr)"
}
if grep -qw portagevm.case=audit /proc/cmdline; then
	phase audit-install
	emerge_step audit-install =test-ima/auditcase-1
	# Installed and signed by the hook; now spoilt three ways, plus a script
	# no package installed.
	setfattr -x security.ima /usr/bin/audit-unsigned || die "removing security.ima"
	printf '# changed by the admin\n' >>/usr/bin/audit-modified || die "changing audit-modified"
	portage-ima sign -q --key /etc/keys/other.key.pem --cert /etc/keys/other.cert.pem \
		--files /usr/bin/audit-foreign || die "signing with the other key"
	mkdir -p /usr/local/bin
	printf '#!/bin/sh\necho "audit-local ran"\n' >/usr/local/bin/audit-local
	chmod 755 /usr/local/bin/audit-local
	json_step check before portage-ima policy --check --json /etc/ima/ima-policy
	phase audit-denials
	for f in /usr/bin/audit-unsigned /usr/bin/audit-modified /usr/bin/audit-foreign /usr/local/bin/audit-local; do
		run_step exec "${f##*/}" "$f"
	done
	sleep 1 # the audit records reach the kernel log a little late
	json_step audit report portage-ima audit --json
	json_step audit fix portage-ima audit --fix --json
	phase audit-after
	for f in /usr/bin/audit-unsigned /usr/bin/audit-modified /usr/bin/audit-foreign /usr/local/bin/audit-local; do
		run_step exec "${f##*/}-again" "$f"
	done
	json_step check after portage-ima policy --check --json /etc/ima/ima-policy
	phase end
	dump
	say "done" -
	$bb poweroff -f
fi

# 1. PORTAGE_TMPDIR on the root filesystem: the merge renames files, and
#    what preinst signed in ${D} goes live signed.
phase rootfs
doctor_step rootfs
emerge_step rootfs-install =test-ima/hellolib-1 =test-ima/vimlike-1 =test-ima/srcbuild-1
run_step exec hello-1 /usr/bin/hello
run_step exec gen /usr/bin/gen
run_step exec generated cat /usr/share/srcbuild/generated.txt
emerge_step rootfs-upgrade =test-ima/vimlike-2 =test-ima/portage-ima-1
run_step exec portage-ima-1 portage-ima --version

# 2. Fail-safe merges: PORTAGE_TMPDIR/portage on a tmpfs without
#    FEATURES=xattr, so the merge would drop the preinst signatures. A new
#    bash (the shell Portage runs every phase with, and root's shell) is
#    stopped in preinst: nothing merged, bash and root's shell still run.
phase tmpfs-stop
mkdir -p /var/tmp/portage || die "mkdir /var/tmp/portage"
$bb mount -t tmpfs -o mode=0775 tmpfs /var/tmp/portage || die "mount tmpfs on /var/tmp/portage"
cp /etc/portage/make.conf /etc/portage/make.conf.base || die "cp make.conf"
run_step sha256 bash-before sha256sum /usr/bin/bash
emerge_step tmpfs-stop =test-ima/bash-1
run_step sha256 bash-after sha256sum /usr/bin/bash
run_step vdb bash-after sh -c 'ls -d /var/db/pkg/test-ima/bash-* 2>&1'
run_step exec bash-after-stop /bin/bash -c 'echo "bash runs"'
root_shell=$(awk -F: '$1 == "root" { print $7 }' /etc/passwd)
run_step exec root-shell "$root_shell" -l -c 'echo "root shell runs"'

# 3. The same tmpfs with FEATURES=xattr and security.ima kept out of
#    PORTAGE_XATTR_EXCLUDE: the merge copies, with the signature. The same
#    bash upgrade goes through (the next emerge), and the new bash runs the
#    phases that follow (its own postinst, vimlike's).
phase tmpfs-xattr
cat /etc/portage/make.conf.xattr >>/etc/portage/make.conf || die "make.conf.xattr"
doctor_step tmpfs-xattr
emerge_step tmpfs-xattr =test-ima/bash-1 =test-ima/vimlike-3
run_step exec new-bash /bin/bash -c 'tail -n 1 /usr/bin/bash'

# 4. The policy really is enforced: copies of a merged executable. (A changed
#    copy of the library still loads: root-exec appraises programs only.)
phase enforcing
mkdir -p /usr/local/bin /usr/local/lib/tampered
cp /usr/bin/hello /usr/local/bin/hello-unsigned # cp copies no xattr
cp --preserve=xattr /usr/bin/hello /usr/local/bin/hello-changed
# One byte changed (the last one, in the version trailer: the ELF still runs).
size=$(stat -c %s /usr/local/bin/hello-changed)
printf 'X' | dd of=/usr/local/bin/hello-changed bs=1 seek=$((size - 1)) conv=notrunc 2>/dev/null ||
	die "changing a byte"
cp --preserve=xattr /usr/lib/hellolib/libhello.so /usr/local/lib/tampered/libhello.so
printf 'X' >>/usr/local/lib/tampered/libhello.so || die "tampering with the library"
run_step exec unsigned /usr/local/bin/hello-unsigned
run_step exec changed /usr/local/bin/hello-changed
run_step exec changed-lib env LD_LIBRARY_PATH=/usr/local/lib/tampered /usr/bin/hello
# Control: the changed copy runs when IMA does not appraise it (not uid 0).
run_step exec changed-as-user python3.11 -c \
	'import os; os.setgid(250); os.setuid(250); os.execv("/usr/local/bin/hello-changed", ["hello"])'
run_step verify merged portage-ima verify --cert /etc/keys/ima.cert.pem --files \
	/usr/bin/hello /usr/lib/hellolib/libhello.so /usr/bin/vimlike /usr/bin/gen /usr/bin/portage-ima

# 3b. Keylime (issue 25): the hook keeps a runtime policy ([keylime], digests
#     mode) through rollback-1 then rollback-2; version 1, with its valid
#     signature, is copied back over version 2 and runs (appraisal accepts
#     it). The measurement list and the policies (digests, then keys mode)
#     go to the host, where Keylime's own code judges them.
phase keylime
cp /etc/portage/ima.toml /etc/portage/ima.toml.base || die "cp ima.toml"
printf '\n[keylime]\nmode = "digests"\n' >>/etc/portage/ima.toml
run_step keylime sync portage-ima keylime sync
emerge_step keylime-v1 =test-ima/rollback-1
cp --preserve=xattr /usr/bin/rollback /root/rollback-1 || die "saving rollback-1"
emerge_step keylime-v2 =test-ima/rollback-2
run_step exec rollback-2 /usr/bin/rollback
cp --preserve=xattr /root/rollback-1 /usr/bin/.rollback.new || die "copying rollback-1 back"
mv /usr/bin/.rollback.new /usr/bin/rollback || die "moving rollback-1 over rollback-2"
run_step exec rollback-1-back /usr/bin/rollback
cp /sys/kernel/security/ima/ascii_runtime_measurements /tmp/measurements || die "reading the measurement list"
run_step keylime check portage-ima keylime check --measurements /tmp/measurements
say keylime-policy digests "data=$($bb gzip -c /var/lib/portage-ima/keylime-policy.json | b64)"
sed -i 's/^mode = "digests"$/mode = "keys"/' /etc/portage/ima.toml
run_step keylime sync-keys portage-ima keylime sync
say keylime-policy keys "data=$($bb gzip -c /var/lib/portage-ima/keylime-policy.json | b64)"
say keylime-list - "data=$($bb gzip -c /tmp/measurements | b64)"
cp /etc/portage/ima.toml.base /etc/portage/ima.toml || die "restore ima.toml"

# 5. The same tmpfs without FEATURES=xattr, and allow_unsigned_window = true:
#    the merge copies and drops the signature; the new files are live and
#    unsigned until the postinst hook. portage-ima upgrades itself here too:
#    its new binary is unsigned until the postinst hook, which runs the
#    signed copy preinst kept in the build directory; the next emerge is
#    signed by it.
phase tmpfs-noxattr
cp /etc/portage/make.conf.base /etc/portage/make.conf || die "restore make.conf"
doctor_step tmpfs-noxattr
# What `portage-ima policy` says about this layout (not loaded: one write per boot).
portage-ima policy --measure >/tmp/policy-noxattr.out 2>&1
say policy-check tmpfs-noxattr rc=$?
sed "s/^/@@out policy-tmpfs-noxattr /" /tmp/policy-noxattr.out
echo 'allow_unsigned_window = true' >>/etc/portage/ima.toml || die "allow_unsigned_window"
emerge_step tmpfs-noxattr =test-ima/vimlike-4 =test-ima/portage-ima-2
run_step exec vimlike-4 /usr/bin/vimlike after-the-emerge
run_step exec portage-ima-2 portage-ima --version
phase after-self-upgrade
emerge_step after-self-upgrade =test-ima/hellolib-2
run_step exec hello-2 /usr/bin/hello
run_step verify self-upgrade portage-ima verify --cert /etc/keys/ima.cert.pem --files \
	/usr/bin/portage-ima /usr/bin/hello /usr/lib/hellolib/libhello.so /usr/bin/vimlike /usr/bin/bash

phase end
dump
say "done" -
$bb poweroff -f
