#!/bin/sh
# Guest side of the built-in identity test of virtcard client, first QEMU:
# list and use the token, then ask the host to kill this QEMU.
. "$VIRTCARD_FILES/common.sh"
PIN=${PIN:-12345678}

run opensc-tool-a opensc-tool -a
run pkcs11-tool-L pkcs11-tool --module "$OSC" -L
run pkcs11-tool-O pkcs11-tool --module "$OSC" -O
read_and_sign_all
echo "##### DONE"

tell_host kill-qemu
sleep 120
