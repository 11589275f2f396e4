#!/bin/bash
# Adds what the USB/IP test needs to the test guest's build folder:
# the guest kernel's e1000, usbip-core and vhci-hcd modules (the guest
# image leaves them out) and a static usbip-attach helper.
#
#   prepare-guest.sh            (uses $VIRTCARD_GUEST_DIR like test/guest)
#
# Needs apt-get (to download the kernel package), dpkg-deb and gcc with
# static glibc. Running it again does nothing once the files are there.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
G=${VIRTCARD_GUEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/virtcard-guest}
OUT=$G/usbip
FILES=(e1000.ko usbip-core.ko vhci-hcd.ko usbip-attach)

done=1
for f in "${FILES[@]}"; do [ -f "$OUT/$f" ] || done=0; done
[ $done = 1 ] && [ "$OUT/usbip-attach" -nt "$HERE/usbip-attach.c" ] && exit 0

[ -f "$G/kernel-version" ] || { echo "prepare-guest.sh: $G/kernel-version missing; run test/guest/build.sh first" >&2; exit 1; }
package=$(sed -n 's/.*(\(linux-image-[^ ]*\) .*/\1/p' "$G/kernel-version")
release=$(awk '{ print $1 }' "$G/kernel-version")
[ -n "$package" ] || { echo "prepare-guest.sh: cannot read the kernel package name from $G/kernel-version" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$OUT"
(cd "$work" && apt-get download "$package" >/dev/null)
dpkg-deb -x "$work"/linux-image-*.deb "$work/root"
modules=$work/root/lib/modules/$release/kernel
cp "$modules/drivers/net/ethernet/intel/e1000/e1000.ko" "$modules/drivers/usb/usbip/usbip-core.ko" \
   "$modules/drivers/usb/usbip/vhci-hcd.ko" "$OUT/"
gcc -O2 -static -Wall -o "$OUT/usbip-attach" "$HERE/usbip-attach.c"
echo "prepare-guest.sh: USB/IP test files in $OUT"
