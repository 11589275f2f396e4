#!/bin/sh
# Guest side of the QEMU restart test: the client connected to the killed
# QEMU must reconnect to this one and announce the card again.
. "$VIRTCARD_FILES/common.sh"

wait_card_state Yes
echo "card present: rc=$?"
run opensc-tool-a opensc-tool -a
run pkcs11-tool-L pkcs11-tool --module "$OSC" -L
