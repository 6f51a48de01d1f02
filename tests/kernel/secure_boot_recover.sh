#!/bin/sh
# What the admin types at the `init=/bin/sh` shell of the Secure Boot VM's
# recovery boot (see test_secure_boot.py and docs/secure-boot.md): no init
# ran, so no custom IMA policy is loaded; sign what the policy needs, reboot.

export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/ LC_ALL=C
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t securityfs securityfs /sys/kernel/security
mount -o remount,rw /
echo "@@ima-test shell - pid=$$ policy=$(grep -c . /sys/kernel/security/ima/policy 2>/dev/null || echo unreadable)"
out=$(portage-ima sign =app-misc/needed-1 2>&1)
echo "@@ima-test sign recover rc=$? out=$(printf '%s' "$out" | base64 -w 0)"
sync
echo "@@ima-test done -"
poweroff -f
