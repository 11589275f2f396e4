/*
 * A PC/SC client that sends command APDUs in a loop, so that the client side
 * of a round-trip benchmark costs as little as possible.
 *
 *   pcsc-loop READER_PREFIX SECONDS APDU_HEX [APDU_HEX ...]
 *
 * Connects to the first reader whose name starts with READER_PREFIX, sends
 * the first APDU once (a setup command such as SELECT), then sends the last
 * APDU in a loop for SECONDS seconds and prints "<count> APDUs in <seconds> s".
 * With one APDU the loop sends that APDU. The output also names the status
 * word of the last response, so a run that measured only errors shows it.
 * PCSCLITE_CSOCK_NAME selects the pcscd, as for every libpcsclite client.
 *
 * Build: cc -O2 -o pcsc-loop pcsc-loop.c $(pkg-config --cflags --libs libpcsclite)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <winscard.h>

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int report_failure(const char *call, LONG rv)
{
    fprintf(stderr, "%s failed: %s (0x%lX)\n", call, pcsc_stringify_error(rv), (unsigned long)rv);
    return 1;
}

/* Parses hex digits (spaces allowed) into out; returns the byte count or -1. */
static int parse_hex(const char *text, BYTE *out, int capacity)
{
    int count = 0, high = -1;
    for (const char *p = text; *p != '\0'; p++) {
        int digit;
        if (*p >= '0' && *p <= '9')
            digit = *p - '0';
        else if (*p >= 'a' && *p <= 'f')
            digit = *p - 'a' + 10;
        else if (*p >= 'A' && *p <= 'F')
            digit = *p - 'A' + 10;
        else if (*p == ' ')
            continue;
        else
            return -1;
        if (high < 0) {
            high = digit;
        } else {
            if (count == capacity)
                return -1;
            out[count++] = (BYTE)(high << 4 | digit);
            high = -1;
        }
    }
    return high < 0 ? count : -1;
}

static unsigned last_status_word;

static int exchange(SCARDHANDLE card, const SCARD_IO_REQUEST *pci, const BYTE *command, int length, BYTE *response,
                    DWORD capacity)
{
    DWORD response_length = capacity;
    LONG rv = SCardTransmit(card, pci, command, (DWORD)length, NULL, response, &response_length);
    if (rv != SCARD_S_SUCCESS)
        return report_failure("SCardTransmit", rv);
    if (response_length < 2) {
        fprintf(stderr, "the card returned %lu bytes, less than a status word\n", (unsigned long)response_length);
        return 1;
    }
    last_status_word = (unsigned)response[response_length - 2] << 8 | response[response_length - 1];
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s READER_PREFIX SECONDS APDU_HEX [APDU_HEX ...]\n", argv[0]);
        return 2;
    }
    const char *prefix = argv[1];
    double seconds = atof(argv[2]);

    static BYTE setup[65544], command[65544], response[65538];
    int setup_length = parse_hex(argv[3], setup, sizeof setup);
    int command_length = parse_hex(argv[argc - 1], command, sizeof command);
    if (setup_length < 4 || command_length < 4) {
        fprintf(stderr, "invalid APDU: write at least 4 bytes as hex digits\n");
        return 2;
    }

    SCARDCONTEXT context;
    LONG rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &context);
    if (rv != SCARD_S_SUCCESS)
        return report_failure("SCardEstablishContext", rv);

    LPSTR readers = NULL;
    DWORD readers_length = SCARD_AUTOALLOCATE;
    rv = SCardListReaders(context, NULL, (LPSTR)&readers, &readers_length);
    if (rv != SCARD_S_SUCCESS)
        return report_failure("SCardListReaders", rv);
    const char *reader = NULL;
    for (const char *name = readers; *name != '\0'; name += strlen(name) + 1) {
        if (strncmp(name, prefix, strlen(prefix)) == 0) {
            reader = name;
            break;
        }
    }
    if (reader == NULL) {
        fprintf(stderr, "no reader name starts with \"%s\"\n", prefix);
        return 1;
    }

    SCARDHANDLE card;
    DWORD protocol;
    rv = SCardConnect(context, reader, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1, &card, &protocol);
    if (rv != SCARD_S_SUCCESS)
        return report_failure("SCardConnect", rv);
    const SCARD_IO_REQUEST *pci = protocol == SCARD_PROTOCOL_T1 ? SCARD_PCI_T1 : SCARD_PCI_T0;

    if (exchange(card, pci, setup, setup_length, response, sizeof response) != 0)
        return 1;

    unsigned long count = 0;
    double start = now_seconds(), elapsed;
    do {
        if (exchange(card, pci, command, command_length, response, sizeof response) != 0)
            return 1;
        count++;
        elapsed = now_seconds() - start;
    } while (elapsed < seconds);

    printf("%lu APDUs in %.3f s, last SW %04X\n", count, elapsed, last_status_word);
    SCardDisconnect(card, SCARD_LEAVE_CARD);
    SCardFreeMemory(context, readers);
    SCardReleaseContext(context);
    return 0;
}
