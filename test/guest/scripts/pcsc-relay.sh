#!/bin/sh
# Guest side of the PC/SC relay test: the host relays a card from its own
# pcscd through `virtcard client --pcsc`. List and use the token, let the
# host use the card between two guest operations, then sign with every key.
. "$VIRTCARD_FILES/common.sh"
PIN=${PIN:-12345678}

wait_card_state Yes
run opensc-tool-a opensc-tool -a
run pkcs11-tool-L pkcs11-tool --module "$OSC" -L
run pkcs11-tool-O pkcs11-tool --module "$OSC" -O
tell_host host-use
sleep 5
read_and_sign_all
echo "##### DONE"
