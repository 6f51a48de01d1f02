#!/bin/sh
# init of the Secure Boot VM (see test_secure_boot.py), on its ext4 root.
# `pima=observe`: doctor, then the observe policy is written, loaded and run
# under, and `portage-ima audit` reads what it recorded; the enforcing policy
# is then installed (and the unsigned program audit named is, on purpose,
# left unsigned). `pima=enforce`: the installed policy is loaded, as a
# system's init loads /etc/ima/ima-policy, and the program root needs runs.
# Each step is one `@@ima-test KIND ID key=value...` line (outputs base64).

export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/ LC_ALL=C
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1

say() {
    kind=$1 id=$2
    shift 2
    echo "@@ima-test $kind $id t=$(cut -d' ' -f1 /proc/uptime) $*"
}
b64() { base64 -w 0; }
run_step() {
    kind=$1 id=$2
    shift 2
    out=$("$@" 2>&1)
    rc=$?
    say "$kind" "$id" rc=$rc out="$(printf '%s' "$out" | b64)"
}
finish() {
    dmesg | sed 's/^/@@dmesg /'
    say "done" -
    sync
    poweroff -f
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t securityfs securityfs /sys/kernel/security
mount -t tmpfs tmpfs /tmp
echo 0 >/proc/sys/kernel/printk_ratelimit
# efivarfs is a module in Debian's kernel (signed, as lockdown requires).
insmod /lib/modules/efivarfs.ko 2>/dev/null
mount -t efivarfs efivarfs /sys/firmware/efi/efivars
say kernel - "release=$(uname -r)" "cmdline=$(b64 </proc/cmdline)" \
    "lockdown=$(b64 </sys/kernel/security/lockdown)"
ring=$(keyctl newring _ima @u) && keyctl padd asymmetric "" "$ring" </etc/ima/cert.der >/dev/null
say keyring - rc=$?

stage=$(sed -n 's/.*pima=\([a-z]*\).*/\1/p' /proc/cmdline)
case $stage in
observe)
    run_step doctor json portage-ima doctor --json
    run_step policy observe portage-ima policy --observe --output /etc/ima/ima-policy
    run_step load observe sh -c 'echo /etc/ima/ima-policy >/sys/kernel/security/ima/policy'
    run_step exec needed /usr/sbin/needed
    dmesg >/tmp/kernel.log
    cat /sys/kernel/security/ima/ascii_runtime_measurements >/tmp/measurements
    run_step audit observe portage-ima audit --log /tmp/kernel.log --measurements /tmp/measurements
    # The admin installs the enforcing policy without signing what audit named.
    run_step policy enforce portage-ima policy --output /etc/ima/ima-policy
    ;;
enforce)
    run_step load enforce sh -c 'echo /etc/ima/ima-policy >/sys/kernel/security/ima/policy'
    run_step exec needed /usr/sbin/needed
    ;;
esac
finish
