#!/bin/sh
# Guest side of the PC/SC replug test. The guest has two CCID readers, and
# the host relays one vpcd reader into each through `virtcard client --pcsc`.
# The host stops and restarts the card behind reader 0, then puts a card
# into its second vpcd reader (reader 1), then kills the card behind reader
# 0 while this guest sends APDUs to it. Each "VIRTCARD-TEST <event>" line
# requests the next step from the host.
. "$VIRTCARD_FILES/common.sh"

# Number of APDUs in the loop that the host interrupts. The loop stops at
# the first failed transmit, so it runs only until the host kills the card.
APDU_LOOP_LENGTH=3000
# SELECT of an AID that the card does not have, so every response is 6A 82 and
# the host can count these commands in the client's APDU trace.
LOOP_APDU=00:A4:04:00:05:F0:76:69:72:74

uptime_seconds() {
    cut -d' ' -f1 /proc/uptime
}

# Prints "Yes" or "No" for the card column of reader $1 in opensc-tool -l,
# or nothing when there is no such reader.
reader_card_state() {
    opensc-tool -l 2>/dev/null | awk -v reader="$1" '$1 == reader { print $2; exit }'
}

# Waits up to about 30 s for reader $1's card state to become $2. Prints the
# guest uptime at the start and at the end, and returns 1 on timeout.
wait_reader_state() {
    start=$(uptime_seconds)
    i=0
    while [ $i -lt 60 ]; do
        if [ "$(reader_card_state "$1")" = "$2" ]; then
            echo "reader $1 card $2: waited from uptime $start to $(uptime_seconds)"
            return 0
        fi
        sleep 0.5
        i=$((i + 1))
    done
    echo "timed out: reader $1 card state is '$(reader_card_state "$1")', expected $2"
    return 1
}

run wait-first-card wait_reader_state 0 Yes
run wait-second-reader wait_reader_state 1 No
run readers-start opensc-tool -l

tell_host stop-card
run wait-removed wait_reader_state 0 No
run readers-stopped opensc-tool -l

tell_host start-card
run wait-reinserted wait_reader_state 0 Yes
run pkcs11-tool-L-restarted pkcs11-tool --module "$OSC" -L

tell_host second-card
run wait-second-card wait_reader_state 1 Yes
run opensc-tool-a-second opensc-tool -r 1 -a
run pkcs11-tool-L-both pkcs11-tool --module "$OSC" -L

apdus=""
i=0
while [ $i -lt $APDU_LOOP_LENGTH ]; do
    apdus="$apdus -s $LOOP_APDU"
    i=$((i + 1))
done
tell_host unplug-mid-apdu
# shellcheck disable=SC2086 # $apdus is a list of arguments.
run apdu-loop opensc-tool -r 0 $apdus
run wait-unplugged wait_reader_state 0 No
run opensc-tool-a-second-after-unplug opensc-tool -r 1 -a

tell_host start-card-again
run wait-back wait_reader_state 0 Yes
run pkcs11-tool-L-back pkcs11-tool --module "$OSC" -L
echo "##### DONE"
