#!/bin/sh
# Guest side of the CoolKey test of virtcard client. It follows QEMU's
# smart-card documentation: a system NSS database with the CA and the
# CoolKey module, `certutil -L -h all`, then a signature with each key
# through CoolKey. Then it runs the OpenSC checks (opensc_checks) on the
# same card. The guest's root file system is a throwaway snapshot, so the
# script may create /etc/pki/nssdb.
#
# Output: the "nss" section, one line "##### SIGNATURE <id> rc=<n> <base64>"
# per CoolKey key, then the OpenSC sections. The exit status counts the
# failed CoolKey steps. Before the OpenSC checks the script writes the event
# "opensc-checks" to the console, so the host can tell CoolKey's APDUs in
# the pcscd log from OpenSC's.
. "$VIRTCARD_FILES/common.sh"
PIN=${PIN:-12345678}

CK=
for candidate in /usr/lib/pkcs11/libcoolkeypk11.so /usr/lib/x86_64-linux-gnu/pkcs11/libcoolkeypk11.so; do
    [ -e "$candidate" ] && CK=$candidate && break
done
[ -n "$CK" ] || { echo "##### CoolKey module not found"; exit 3; }

# The script starts when pcscd lists the reader; the client inserts the card a moment later.
wait_card_state Yes || { echo "##### no card in the reader after 20 s"; exit 2; }

# QEMU's documented setup: a system database with the CA and CoolKey, then the listing.
coolkey_nss_setup() {
    mkdir -p /etc/pki/nssdb &&
    certutil -N -d sql:/etc/pki/nssdb --empty-password &&
    certutil -A -d sql:/etc/pki/nssdb -n fake-smartcard-ca -t CT,C,C -i "$VIRTCARD_FILES/fake-smartcard-ca.cer" &&
    modutil -force -add CoolKey -libfile "$CK" -dbdir sql:/etc/pki/nssdb &&
    certutil -d sql:/etc/pki/nssdb -L -h all -f /tmp/pin.txt
}

printf '%s\n' "$PIN" > /tmp/pin.txt
run nss coolkey_nss_setup
failures=0
[ "$r" = 0 ] || failures=$((failures + 1))

# CoolKey's IDs of the three PKI applets' keys.
printf 'virtcard test data\n' > /tmp/data
for id in 0001 0002 0003; do
    pkcs11-tool --module "$CK" --login --pin "$PIN" --sign --mechanism RSA-PKCS --id $id \
        --input-file /tmp/data --output-file /tmp/coolkey-sig$id >/tmp/coolkey-sign$id.log 2>&1
    rc=$?
    echo "##### SIGNATURE $id rc=$rc $(base64 -w 0 /tmp/coolkey-sig$id 2>/dev/null)"
    [ $rc = 0 ] || { cat /tmp/coolkey-sign$id.log; failures=$((failures + 1)); }
done

tell_host opensc-checks
opensc_checks
exit $failures
