#!/usr/bin/env bash
# Runs this package's tests against a real soft-dirty kernel: Debian's
# (built with CONFIG_MEM_SOFT_DIRTY, which the host kernel may lack), booted
# under QEMU TCG with a busybox initramfs holding the static test binary.
# The tests' "real" subtests then run instead of skipping.
#
# Needs qemu-system-x86, busybox-static and linux-image-amd64 (`make test`
# installs them). Extra arguments go to the test binary, e.g.
#   measure/proc/vmtest.sh -test.run '^$' -test.bench . -test.benchtime 3x
# (give MEM=3072 for the 1 GiB benchmarks).
set -euo pipefail
cd "$(dirname "$0")/../.."

kernel=${KERNEL:-$(ls /boot/vmlinuz-*-amd64 2>/dev/null | sort -V | tail -n 1)}
[ -n "$kernel" ] || { echo "vmtest: no /boot/vmlinuz-*-amd64 (apt-get install linux-image-amd64)" >&2; exit 1; }
config=/boot/config-${kernel#/boot/vmlinuz-}
if [ -f "$config" ] && ! grep -q '^CONFIG_MEM_SOFT_DIRTY=y' "$config"; then
	echo "vmtest: $kernel has no CONFIG_MEM_SOFT_DIRTY" >&2; exit 1
fi
busybox=$(command -v busybox)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/tmp" "$root/dev"
cp "$busybox" "$root/bin/busybox"
mkdir "$root/t" && cp -r measure/proc/testdata "$root/t/"
CGO_ENABLED=0 go test -c -o "$root/proc.test" ./measure/proc

args=${*:--test.v -test.count=1}
cat >"$root/init" <<INIT
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t tmpfs tmp /tmp
/bin/busybox mount -t devtmpfs dev /dev
echo "guest kernel: \$(/bin/busybox uname -r)"
cd /t && TMPDIR=/tmp /proc.test $args 2>&1
echo "vmtest: exit \$?"
/bin/busybox poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet) >"$work/initrd.cpio"

timeout "${TIMEOUT:-600}" qemu-system-x86_64 -accel tcg -machine q35 -cpu max -m "${MEM:-512}" \
	-nodefaults -display none -no-reboot -serial stdio \
	-kernel "$kernel" -initrd "$work/initrd.cpio" \
	-append 'console=ttyS0 quiet panic=-1 mitigations=off rdinit=/init' | tee "$work/out.log"
# The real subtests must have run, not skipped, and everything passed.
grep -q -- '--- PASS: TestIncrementalOwnMapping/real' "$work/out.log" || [ -n "${*:-}" ] || { echo "vmtest: the real soft-dirty tests did not run" >&2; exit 1; }
grep -q '^vmtest: exit 0' "$work/out.log"
