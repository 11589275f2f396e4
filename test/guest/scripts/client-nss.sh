#!/bin/sh
# Guest side of the NSS-database test of virtcard client: the OpenSC
# transcripts that ccid-card-emulated's reference set also has, then card
# removal and insertion from the client's stdin, then the client stopping.
. "$VIRTCARD_FILES/common.sh"
PIN=${PIN:-12345678}

opensc_checks

tell_host remove-card
wait_card_state No
echo "card removed: rc=$?"
run removed-l opensc-tool -l

tell_host insert-card
wait_card_state Yes
echo "card inserted: rc=$?"
run inserted-l opensc-tool -l
run inserted-L pkcs11-tool --module "$OSC" -L

tell_host stop-client
wait_card_state No
echo "client stopped: rc=$?"
run stopped-l opensc-tool -l
run stopped-a opensc-tool -a
