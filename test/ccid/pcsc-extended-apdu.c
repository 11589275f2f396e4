/*
 * Guest-side helper of the usbredir test: sends one extended-length
 * command APDU (case 3, 600 data bytes) through PC/SC to the first reader
 * and prints the outcome, to show that pcscd, libccid and the CCID reader
 * pass extended APDUs to the card unchanged.
 *
 * Output: "extended APDU: rv=<hex> length=<n> sw=<SW1SW2>".
 * Build: gcc -O2 -o pcsc-extended-apdu pcsc-extended-apdu.c $(pkg-config --cflags --libs libpcsclite)
 */
#include <PCSC/winscard.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    SCARDCONTEXT context;
    SCARDHANDLE card;
    DWORD protocol;
    char readers[2048];
    DWORD readers_length = sizeof readers;

    if (SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &context) != SCARD_S_SUCCESS) {
        fprintf(stderr, "SCardEstablishContext failed: is pcscd running?\n");
        return 1;
    }
    if (SCardListReaders(context, NULL, readers, &readers_length) != SCARD_S_SUCCESS) {
        fprintf(stderr, "no PC/SC reader found\n");
        return 1;
    }
    LONG rv = SCardConnect(context, readers, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1, &card, &protocol);
    if (rv != SCARD_S_SUCCESS) {
        fprintf(stderr, "SCardConnect to %s failed: 0x%lx\n", readers, (unsigned long)rv);
        return 1;
    }

    /* UPDATE BINARY with extended Lc = 600: 00 D6 00 00 00 02 58, then the data. */
    unsigned char command[7 + 600];
    unsigned char response[4096];
    DWORD response_length = sizeof response;
    memcpy(command, "\x00\xD6\x00\x00\x00\x02\x58", 7);
    memset(command + 7, 0x5A, 600);
    rv = SCardTransmit(card, protocol == SCARD_PROTOCOL_T1 ? SCARD_PCI_T1 : SCARD_PCI_T0, command, sizeof command, NULL,
                       response, &response_length);
    printf("extended APDU: rv=%lx length=%lu", (unsigned long)rv, (unsigned long)response_length);
    if (rv == SCARD_S_SUCCESS && response_length >= 2)
        printf(" sw=%02x%02x", response[response_length - 2], response[response_length - 1]);
    printf("\n");
    SCardDisconnect(card, SCARD_LEAVE_CARD);
    SCardReleaseContext(context);
    return rv == SCARD_S_SUCCESS ? 0 : 1;
}
