/*
 * Guest-side helper of the usbredir test: waits until pcscd reports the
 * first reader's card as present or empty, and prints when it did. The
 * test uses it to measure how fast a card removal or insertion at the
 * source reaches the guest's PC/SC stack.
 *
 * Usage: pcsc-card-wait present|empty TIMEOUT_MS
 * Output: "waiting" once the current state is known, then
 * "<state> <CLOCK_REALTIME in ns>" when the card reached the state.
 * Exit status: 0 when the state was reached, 2 on timeout, 1 on errors.
 * Build: gcc -O2 -o pcsc-card-wait pcsc-card-wait.c $(pkg-config --cflags --libs libpcsclite)
 */
#include <PCSC/winscard.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long long now_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[1], "present") != 0 && strcmp(argv[1], "empty") != 0)) {
        fprintf(stderr, "usage: pcsc-card-wait present|empty TIMEOUT_MS\n");
        return 1;
    }
    DWORD wanted = strcmp(argv[1], "present") == 0 ? SCARD_STATE_PRESENT : SCARD_STATE_EMPTY;
    long long deadline = now_ns() + atoll(argv[2]) * 1000000LL;

    SCARDCONTEXT context;
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

    SCARD_READERSTATE state;
    memset(&state, 0, sizeof state);
    state.szReader = readers;
    state.dwCurrentState = SCARD_STATE_UNAWARE;
    int announced = 0;
    for (;;) {
        long long left_ms = (deadline - now_ns()) / 1000000LL;
        if (left_ms <= 0) {
            fprintf(stderr, "timed out waiting for the card to be %s\n", argv[1]);
            return 2;
        }
        LONG rv = SCardGetStatusChange(context, announced ? (DWORD)left_ms : 0, &state, 1);
        if (rv != SCARD_S_SUCCESS && rv != SCARD_E_TIMEOUT) {
            fprintf(stderr, "SCardGetStatusChange failed: 0x%lx\n", (unsigned long)rv);
            return 1;
        }
        if (state.dwEventState & wanted) {
            printf("%s %lld\n", argv[1], now_ns());
            return 0;
        }
        if (!announced) {
            printf("waiting\n");
            fflush(stdout);
            announced = 1;
        }
        state.dwCurrentState = state.dwEventState & ~SCARD_STATE_CHANGED;
    }
}
