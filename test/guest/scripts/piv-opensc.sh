#!/bin/sh
# Guest side of the PIV test of virtcard client: OpenSC's PIV driver lists
# the card and its objects (the private keys only after a login). Two logins
# with a wrong PIN follow, each reading the PIN's tries left before and
# after. Then each key in $PIV_SIGN signs after a login with the right PIN.
# $PIV_SIGN is a list of "<PKCS#11 id>:<pkcs11-tool mechanism>",
# e.g. "01:SHA256-RSA-PKCS 02:ECDSA-SHA256". ECDSA signatures are written
# in DER (--signature-format openssl), which openssl dgst -verify reads.
. "$VIRTCARD_FILES/common.sh"
PIN=${PIN:-123456}
WRONG_PIN=000000

# Prints the status word of a VERIFY without data for the PIN (reference 80)
# after a logout (P1 FF): 63 Cx while x tries are left.
# OpenSC 0.23's pkcs15-tool --list-pins does not show a PIV PIN's tries.
pin_tries() {
    run "$1" opensc-tool -s '00 A4 04 00 05 A0 00 00 03 08' -s '00 20 FF 80' -s '00 20 00 80'
}

# The script starts when pcscd lists the reader; the client inserts the card a moment later.
wait_card_state Yes || { echo "##### no card in the reader after 20 s"; exit 2; }

run opensc-tool-n opensc-tool -n
run pkcs11-tool-L pkcs11-tool --module "$OSC" -L
run pkcs11-tool-O pkcs11-tool --module "$OSC" -O
run pkcs11-tool-login-O pkcs11-tool --module "$OSC" --login --pin "$PIN" -O

pin_tries pin-tries-start
run wrong-pin-1 pkcs11-tool --module "$OSC" --login --pin "$WRONG_PIN" -O --type privkey
pin_tries pin-tries-after-1
run wrong-pin-2 pkcs11-tool --module "$OSC" --login --pin "$WRONG_PIN" -O --type privkey
pin_tries pin-tries-after-2
run token-final-try pkcs11-tool --module "$OSC" -T

printf 'virtcard test data\n' > /tmp/data
failures=0
for key in $PIV_SIGN; do
    id=${key%%:*}
    mechanism=${key#*:}
    run "cert$id-read" sh -c "pkcs11-tool --module $OSC --read-object --type cert --id $id --output-file /tmp/cert$id.der && base64 -w 64 /tmp/cert$id.der"
    [ "$r" = 0 ] || failures=$((failures + 1))
    run "sign$id" sh -c "pkcs11-tool --module $OSC --login --pin $PIN --sign --mechanism $mechanism --signature-format openssl --id $id --input-file /tmp/data --output-file /tmp/sig$id && echo 'signature (base64):' && base64 -w 64 /tmp/sig$id"
    [ "$r" = 0 ] || failures=$((failures + 1))
done
# The signatures above logged in with the right PIN, which restores the tries.
pin_tries pin-tries-end
exit $failures
