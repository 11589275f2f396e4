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
    timeout 20 opensc-tool -l 2>/dev/null | awk -v reader="$1" '$1 == reader { print $2; exit }'
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
run readers-start timeout 60 opensc-tool -l

tell_host stop-card
run wait-removed wait_reader_state 0 No
run readers-stopped timeout 60 opensc-tool -l

tell_host start-card
run wait-reinserted wait_reader_state 0 Yes
run pkcs11-tool-L-restarted timeout 60 pkcs11-tool --module "$OSC" -L

tell_host second-card
run wait-second-card wait_reader_state 1 Yes
run opensc-tool-a-second timeout 60 opensc-tool -r 1 -a
run pkcs11-tool-L-both timeout 60 pkcs11-tool --module "$OSC" -L

# Runs the APDU loop on reader 0 and prints, instead of its thousands of
# lines, how often each status word came back and how the loop ended. The
# timeout turns a command that never gets its response into a visible failure
# (status 124) instead of a guest run that hangs until the host gives up.
apdu_loop() {
    apdus=""
    i=0
    while [ $i -lt $APDU_LOOP_LENGTH ]; do
        apdus="$apdus -s $LOOP_APDU"
        i=$((i + 1))
    done
    # shellcheck disable=SC2086 # $apdus is a list of arguments.
    timeout 120 opensc-tool -r 0 $apdus > /tmp/apdu-loop.out 2>&1
    status=$?
    echo "answers:"
    grep '^Received' /tmp/apdu-loop.out | sort | uniq -c
    echo "last lines:"
    tail -n 4 /tmp/apdu-loop.out
    return $status
}

tell_host unplug-mid-apdu
run apdu-loop apdu_loop
run wait-unplugged wait_reader_state 0 No
run opensc-tool-a-second-after-unplug timeout 60 opensc-tool -r 1 -a

tell_host start-card-again
run wait-back wait_reader_state 0 Yes
run pkcs11-tool-L-back timeout 60 pkcs11-tool --module "$OSC" -L
echo "##### DONE"
