# Helpers for the guest scripts of the virtcard client tests (sourced, not run).
#
# Every command's output goes into a section:
#   ##### BEGIN <name>: <command>
#   ...output...
#   ##### END <name> rc=<n>
# Lines "VIRTCARD-TEST <event>" go to the console (ttyS0), which the host
# test reads while the guest runs, so it can act (remove the card, stop the
# client, kill QEMU) at the right moment.
OSC=/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so

run() {
    name=$1; shift
    echo "##### BEGIN $name: $*"
    "$@" 2>&1
    r=$?
    echo "##### END $name rc=$r"
}

tell_host() {
    echo "VIRTCARD-TEST $*" > /dev/ttyS0
}

# Prints "Yes" or "No" for the first reader's card column of opensc-tool -l,
# or nothing when there is no reader.
card_state() {
    opensc-tool -l 2>/dev/null | awk '$1 ~ /^[0-9]+$/ { print $2; exit }'
}

# Waits up to about 20 s for card_state to print $1; returns 0 when it did.
wait_card_state() {
    i=0
    while [ $i -lt 40 ]; do
        [ "$(card_state)" = "$1" ] && return 0
        sleep 0.5
        i=$((i + 1))
    done
    return 1
}

# Reads, prints and signs with every certificate of the token, as the
# reference transcripts of ccid-card-emulated do: cert<N>-read and sign<N>.
read_and_sign_all() {
    ids=$(pkcs11-tool --module "$OSC" -O --type cert 2>/dev/null | awk '$1 == "ID:" { print $2 }')
    printf 'virtcard test data\n' > /tmp/data
    n=0
    for id in $ids; do
        n=$((n + 1))
        run "cert$n-read" sh -c "pkcs11-tool --module $OSC --read-object --type cert --id $id --output-file /tmp/cert$n.der && base64 -w 64 /tmp/cert$n.der"
        run "sign$n" sh -c "pkcs11-tool --module $OSC --login --pin $PIN --sign --mechanism RSA-PKCS --id $id --input-file /tmp/data --output-file /tmp/sig$n && echo 'signature (base64):' && base64 -w 64 /tmp/sig$n"
    done
}

# The OpenSC checks that the reference transcripts of ccid-card-emulated
# also contain, then a login with a wrong PIN.
opensc_checks() {
    run opensc-tool-l opensc-tool -l
    run opensc-tool-a opensc-tool -a
    run opensc-tool-n opensc-tool -n
    run pkcs11-tool-L pkcs11-tool --module "$OSC" -L
    run pkcs11-tool-O pkcs11-tool --module "$OSC" -O
    run pkcs15-tool-D pkcs15-tool -D
    read_and_sign_all
    run pkcs11-tool-login-O pkcs11-tool --module "$OSC" --login --pin "$PIN" -O
    run pkcs11-tool-wrong-pin pkcs11-tool --module "$OSC" --login --pin 00000000 -O --type privkey
}
