#!/bin/sh
# Runs inside the quickstart guest: shows the reader, the token and the
# certificates that virtcard client supplies through ccid-card-passthru.
set -e
echo "--- opensc-tool -l"
opensc-tool -l
echo "--- opensc-tool -a"
opensc-tool -a
echo "--- pkcs11-tool -L"
pkcs11-tool -L
echo "--- pkcs11-tool -O"
pkcs11-tool -O
