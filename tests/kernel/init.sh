#!/bin/busybox sh
# /init of the IMA appraisal test's initramfs (see test_appraisal.py).
#
# Sets up what an IMA-appraising system has (securityfs, the `_ima` keyring
# with our certificates, an appraise policy), then sources /cases.sh, which the
# test generated: it signs, tampers with and executes files and reports each
# step as one `@@ima-test KIND ID key=value...` line on the console. At the end
# it dumps dmesg and the IMA measurement list, prefixed so the host can find
# them, and powers off. Anything unexpected ends in a `fatal` line: the host
# never has to guess from a missing line.

/bin/busybox mkdir -p /dev /proc /sys /tmp /mnt /bin /sbin
/bin/busybox mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
/bin/busybox --install -s /bin
export PATH=/usr/bin:/bin HOME=/ LC_ALL=C

# say KIND ID key=value...: one result line for the host (t= is the VM's uptime).
say() {
    kind=$1 id=$2
    shift 2
    echo "@@ima-test $kind $id t=$(cut -d' ' -f1 /proc/uptime) $*"
}
b64() { base64 -w 0; }

dump() {
    dmesg | sed 's/^/@@dmesg /'
    sed 's/^/@@meas /' /sys/kernel/security/ima/ascii_runtime_measurements 2>/dev/null
}

die() {
    say fatal - reason=$(printf '%s' "$*" | b64)
    dump
    poweroff -f
}

mount -t proc proc /proc || die "mount proc"
mount -t sysfs sysfs /sys || die "mount sysfs"
mount -t securityfs securityfs /sys/kernel/security || die "mount securityfs"
# Without auditd, audit records reach dmesg through printk_ratelimit(): lift
# the limit so no IMA denial record is dropped.
echo 0 >/proc/sys/kernel/printk_ratelimit
say kernel - release=$(uname -r)

# Modules the kernel built as modules (sha512 on 6.1, virtio): dependencies first.
if [ -s /modules.list ]; then
    while read -r m; do
        insmod "/lib/modules/$m.ko" || die "insmod $m"
        say module "$m"
    done </modules.list
fi

# The IMA keyring: a userspace `_ima` keyring, accepted because this kernel has
# no CONFIG_INTEGRITY_TRUSTED_KEYRING.
ring=$(keyctl newring _ima @u) || die "keyctl newring _ima @u"
for cert in /ima/certs/*.der; do
    id=$(keyctl padd asymmetric "" "$ring" <"$cert") || die "keyctl padd $cert"
    say key "${cert##*/}" serial=$id
done

# Write the policy once; only these rules apply (no ima_policy= on the command line).
cat /ima/policy >/sys/kernel/security/ima/policy || die "writing the IMA policy"
say policy - written=1

mkdir -p /mnt/t && mount -t tmpfs -o mode=0755 tmpfs /mnt/t || die "mount tmpfs"

# The host-signed ext4 image, if attached: wait for the virtio disk to show up.
if [ -e /ima/has-disk ]; then
    i=0
    while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    [ -b /dev/vda ] || die "no /dev/vda after 10 s"
    mkdir -p /mnt/ext && mount -t ext4 -o ro /dev/vda /mnt/ext || die "mount /dev/vda"
fi

# Helpers for /cases.sh.

# run_step KIND ID CMD...: run CMD, report its exit code and output.
run_step() {
    kind=$1 id=$2
    shift 2
    out=$("$@" 2>&1)
    rc=$?
    say "$kind" "$id" rc=$rc out="$(printf '%s' "$out" | b64)"
}

# own FILE...: executable and owned by uid 1000, so the policy applies.
own() {
    chown 1000:1000 "$@" && chmod 0755 "$@" || die "chown/chmod $*"
}

# tamper FILE: append one byte after signing (a newline keeps scripts valid).
tamper() {
    printf '\n' >>"$1" || die "tamper $1"
}

. /cases.sh

# Audit records reach dmesg asynchronously (kauditd): wait for all we expect.
i=0
while [ "$(dmesg | grep -c 'type=1800')" -lt "${EXPECT_AUDIT:-0}" ] && [ $i -lt 50 ]; do
    sleep 0.1
    i=$((i + 1))
done

dump
say done -
poweroff -f
