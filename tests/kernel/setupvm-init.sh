#!/bin/bash
# /sbin/setupvm-init: init of the `portage-ima setup` VM test (setupvm.py,
# test_setup_vm.py). It mounts the pseudo filesystems, runs OpenRC's sysinit
# and boot runlevels (Debian's openrc: whatever setup put in
# /etc/runlevels/boot runs here, as on Gentoo), then the steps of the boot
# named by `setupvm.phase=` on the kernel command line:
#
#   apply    (no appraisal) `portage-ima setup`, then `setup --apply`;
#   observe  (ima_appraise=log) what the shipped service loaded, and doctor
#            (which runs Portage's portageq): the kernel logs what enforce
#            mode would refuse;
#   enforce  (ima_appraise=enforce) one emerge: a new install built from
#            source with tcc, and an upgrade of portage-ima itself whose
#            pkg_postinst runs the new binary; then an unsigned copy of a
#            merged program.
#
# Every step is one `@@ima-test KIND ID t=UPTIME key=value...` line; command
# output follows as `@@out ID` lines, the ebuilds' log as `@@case`, dmesg as
# `@@dmesg`, split by `@@phase NAME` markers. The disk is kept across boots:
# the init syncs and remounts / read-only before it powers off.

bb=/usr/bin/busybox
$bb mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
export PATH=/opt/portage/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 LC_ALL=C.UTF-8 TERM=dumb NOCOLOR=true PYTHONDONTWRITEBYTECODE=1
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
halt() {
	sync
	$bb mount -o remount,ro / || echo "@@ima-test warn remount-ro t=$(uptime)"
	$bb poweroff -f
}
die() {
	say fatal - "reason=$(printf '%s' "$*" | b64)"
	dump
	halt
}

$bb mount -t proc proc /proc || die "mount proc"
$bb mount -t sysfs sysfs /sys || die "mount sysfs"
$bb mkdir -p /dev/pts /dev/shm
$bb mount -t devpts devpts /dev/pts || die "mount devpts"
$bb mount -t tmpfs -o mode=1777 tmpfs /dev/shm || die "mount /dev/shm"
$bb mount -t tmpfs -o mode=0755 tmpfs /run || die "mount /run"
ln -sfn /proc/self/fd /dev/fd
ln -sfn /proc/self/fd/0 /dev/stdin
ln -sfn /proc/self/fd/1 /dev/stdout
ln -sfn /proc/self/fd/2 /dev/stderr
echo 0 >/proc/sys/kernel/printk_ratelimit
say kernel - "release=$(uname -r) cmdline=$(b64 </proc/cmdline)"

phase() {
	sleep 1
	echo "@@phase $1" >/dev/kmsg
	say phase "$1"
}

# run_step KIND ID CMD...: run CMD, report its exit code, time and output.
run_step() {
	local kind=$1 id=$2 out rc t0
	shift 2
	t0=$(uptime)
	out=$("$@" 2>&1)
	rc=$?
	say "$kind" "$id" rc=$rc start="$t0" end="$(uptime)" out="$(printf '%s' "$out" | b64)"
}

# long_step KIND ID CMD...: the same, with the output as `@@out ID` lines.
long_step() {
	local kind=$1 id=$2 rc t0
	shift 2
	t0=$(uptime)
	"$@" >"/tmp/$id.out" 2>&1
	rc=$?
	say "$kind" "$id" rc=$rc start="$t0" end="$(uptime)"
	sed "s/^/@@out $id /" "/tmp/$id.out"
}

# OpenRC, as Gentoo's /sbin/init runs it (the pseudo filesystems above are
# what Gentoo's sysinit services mount, Debian's openrc has none of them;
# securityfs is left to the image's `sysfs` service, as on Gentoo).
phase openrc
long_step openrc sysinit openrc sysinit
long_step openrc boot openrc boot
run_step openrc boot-links ls /etc/runlevels/boot

case $(sed -n 's/.*setupvm\.phase=\([a-z]*\).*/\1/p' /proc/cmdline) in
apply)
	phase apply
	run_step keys before sh -c 'ls -A /etc/keys 2>&1; ls /etc/portage/ima.toml /etc/ima 2>&1'
	run_step xattr before getfattr --absolute-names -d -m security.ima /usr/bin/bash /usr/bin/portage-ima
	long_step setup plan portage-ima setup
	long_step setup apply portage-ima setup --apply
	run_step link boot-runlevel readlink /etc/runlevels/boot/portage-ima
	run_step file policy cat /etc/ima/ima-policy
	run_step file ima-toml cat /etc/portage/ima.toml
	run_step file bashrc cat /etc/portage/bashrc
	run_step keys after ls -A /etc/keys
	run_step xattr after getfattr --absolute-names -n security.ima -e hex \
		/usr/bin/bash /usr/bin/portage-ima /usr/sbin/openrc /usr/bin/python3.11 /sbin/setupvm-init
	;;
observe)
	phase observe
	run_step keyring ima sh -c 'grep -E "keyring +_ima|asymmetric" /proc/keys'
	run_step openrc status rc-service portage-ima status
	long_step doctor observe portage-ima doctor
	run_step exec tcc tcc -v
	;;
enforce)
	phase enforce
	run_step keyring ima sh -c 'grep -E "keyring +_ima|asymmetric" /proc/keys'
	run_step openrc status rc-service portage-ima status
	phase emerge
	long_step emerge all emerge --color=n --oneshot --quiet-build=n \
		=test-ima/srcbuild-1 =app-portage/portage-ima-1
	run_step exec gen /usr/bin/gen
	run_step exec generated cat /usr/share/srcbuild/generated.txt
	run_step exec portage-ima portage-ima --version
	run_step vdb portage-ima sh -c 'ls -d /var/db/pkg/app-portage/portage-ima-*'
	run_step verify merged portage-ima verify -v test-ima/srcbuild
	phase denied
	mkdir -p /usr/local/bin
	cp /usr/bin/gen /usr/local/bin/gen-unsigned # cp copies no xattr
	run_step exec unsigned /usr/local/bin/gen-unsigned
	;;
*)
	die "no setupvm.phase= on the kernel command line"
	;;
esac

phase end
dump
say "done" -
halt
