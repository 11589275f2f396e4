/*
 * Measures how many APDUs per second one PC/SC reader carries: connects to
 * the first reader whose name starts with READER_PREFIX and sends a 5-byte
 * command APDU in a loop for SECONDS seconds.
 *
 *   cc -O2 -o pcsc-apdu-rate pcsc-apdu-rate.c $(pkg-config --cflags --libs libpcsclite)
 *   ./pcsc-apdu-rate ["Virtual PCD 00 00"] [3]
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

static int fail(const char *call, LONG rv)
{
    fprintf(stderr, "%s failed: %s (0x%lX)\n", call, pcsc_stringify_error(rv), (unsigned long)rv);
    return 1;
}

int main(int argc, char **argv)
{
    const char *prefix = argc > 1 ? argv[1] : "Virtual PCD 00 00";
    double seconds = argc > 2 ? atof(argv[2]) : 3.0;
    SCARDCONTEXT context;
    SCARDHANDLE card;
    DWORD protocol, readers_length = SCARD_AUTOALLOCATE;
    LPSTR readers = NULL;
    const char *reader = NULL;
    LONG rv;

    rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &context);
    if (rv != SCARD_S_SUCCESS)
        return fail("SCardEstablishContext", rv);
    rv = SCardListReaders(context, NULL, (LPSTR)&readers, &readers_length);
    if (rv != SCARD_S_SUCCESS)
        return fail("SCardListReaders", rv);
    for (const char *name = readers; *name != '\0'; name += strlen(name) + 1) {
        if (strncmp(name, prefix, strlen(prefix)) == 0) {
            reader = name;
            break;
        }
    }
    if (reader == NULL) {
        fprintf(stderr, "no reader whose name starts with \"%s\"\n", prefix);
        return 1;
    }

    rv = SCardConnect(context, reader, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1, &card, &protocol);
    if (rv != SCARD_S_SUCCESS)
        return fail("SCardConnect", rv);
    const SCARD_IO_REQUEST *pci = protocol == SCARD_PROTOCOL_T1 ? SCARD_PCI_T1 : SCARD_PCI_T0;

    /* GET DATA with Le = 0: any card responds to it at once, if only with an error status word. */
    const BYTE command[] = { 0x00, 0xCA, 0x00, 0x00, 0x00 };
    BYTE response[258];
    unsigned long count = 0;
    double start = now_seconds(), elapsed;
    do {
        DWORD response_length = sizeof response;
        rv = SCardTransmit(card, pci, command, sizeof command, NULL, response, &response_length);
        if (rv != SCARD_S_SUCCESS)
            return fail("SCardTransmit", rv);
        count++;
        elapsed = now_seconds() - start;
    } while (elapsed < seconds);

    printf("%s: %lu APDUs in %.2f s = %.0f APDUs/s\n", reader, count, elapsed, count / elapsed);
    SCardDisconnect(card, SCARD_LEAVE_CARD);
    SCardFreeMemory(context, readers);
    SCardReleaseContext(context);
    return 0;
}
