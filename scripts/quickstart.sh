#!/bin/bash
# Sets up virtcard on a fresh Debian 12 machine and runs its main job once:
# QEMU 7.2 boots a small Debian guest with a usb-ccid reader and a
# ccid-card-passthru card, `virtcard client` supplies the card with the
# built-in test identity, and the guest's OpenSC lists the token and its
# certificates.
#
# Run as root (apt-get, debootstrap). Takes about 2 minutes the first time,
# most of it the guest build, which is cached in ~/.cache/virtcard-guest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "quickstart.sh installs Debian packages and builds a guest image: run it as root" >&2
    exit 1
fi

echo "== installing Debian packages (qemu-system-x86, debootstrap, pcscd, opensc, ...)"
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    qemu-system-x86 debootstrap e2fsprogs cpio xz-utils \
    pcscd vsmartcard-vpcd opensc opensc-pkcs11 libnss3 libnss3-tools openssl >/dev/null

echo "== building virtcard"
npm ci --no-audit --no-fund --loglevel=error
npm run --silent build

echo "== building the test guest (cached after the first run)"
test/guest/build.sh

# A free loopback port for QEMU's passthru chardev.
port=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")

echo "== starting virtcard client for 127.0.0.1:$port (built-in identity)"
VIRTCARD_LOG_FORMAT=text node dist/src/cli/main.js client 127.0.0.1 "$port" &
client_pid=$!
trap 'kill -TERM "$client_pid" 2>/dev/null || true' EXIT

echo "== booting the guest; its OpenSC output follows"
status=0
test/guest/run.sh --timeout 240 scripts/quickstart-guest.sh -- \
    -device usb-ccid -device ccid-card-passthru,chardev=ccid \
    -chardev "socket,id=ccid,host=127.0.0.1,port=$port,server=on,wait=off" || status=$?

kill -TERM "$client_pid" 2>/dev/null || true
wait "$client_pid" 2>/dev/null || true
trap - EXIT

if [ "$status" -eq 0 ]; then
    echo "== done: the guest used virtcard's CAC card"
else
    echo "== the guest script failed with status $status" >&2
fi
exit "$status"
