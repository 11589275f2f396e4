/*
 * Drives libcacard's soft CAC card for the benchmarks, in one of two modes:
 *
 *   libcacard-driver engine DB SECONDS select|read-buffer
 *       Sends one APDU in a loop straight into vreader_xfr_bytes for SECONDS
 *       seconds and prints "<count> APDUs in <seconds> s".
 *   libcacard-driver vpcd DB HOST PORT
 *       Serves the card to vsmartcard's vpcd (the card side of its TCP
 *       protocol) until vpcd closes the connection.
 *
 * DB is an NSS database directory holding the certificates id-cert,
 * signing-cert and encryption-cert; the card is created with the option
 * string QEMU's ccid-card-emulated builds for its "certificates" backend.
 * The NSS password doubles as the card PIN (VERIFY passes it to NSS).
 *
 * Build: cc -O2 -o libcacard-driver libcacard-driver.c $(pkg-config --cflags --libs libcacard)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libcacard.h>

/* Largest response libcacard returns: 64 KiB of data plus the status word. */
#define RESPONSE_CAPACITY (65536 + 2)

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Creates the soft card and returns its reader, or NULL with a message on stderr. */
static VReader *start_card(const char *database)
{
    char options[4096];
    snprintf(options, sizeof options,
             "db=\"sql:%s\" use_hw=no soft=(,Virtual Reader,CAC,,id-cert,signing-cert,encryption-cert)",
             database);

    VCardEmulOptions *parsed = vcard_emul_options(options);
    if (parsed == NULL) {
        fprintf(stderr, "libcacard rejected the option string: %s\n", options);
        return NULL;
    }
    if (vcard_emul_init(parsed) != VCARD_EMUL_OK) {
        fprintf(stderr, "vcard_emul_init failed for the NSS database %s\n", database);
        return NULL;
    }

    VReaderList *readers = vreader_get_reader_list();
    VReaderListEntry *entry = readers ? vreader_list_get_first(readers) : NULL;
    VReader *reader = entry ? vreader_reference(vreader_list_get_reader(entry)) : NULL;
    if (readers)
        vreader_list_delete(readers);
    if (reader == NULL) {
        fprintf(stderr, "libcacard created no reader\n");
        return NULL;
    }
    if (vreader_card_is_present(reader) != VREADER_OK) {
        fprintf(stderr, "libcacard's reader \"%s\" has no card\n", vreader_get_name(reader));
        return NULL;
    }
    return reader;
}

/* Exchanges one APDU; returns the response length or -1. */
static int transmit(VReader *reader, const unsigned char *command, int command_length, unsigned char *response)
{
    int response_length = RESPONSE_CAPACITY;
    VReaderStatus status = vreader_xfr_bytes(reader, (unsigned char *)command, command_length, response, &response_length);
    return status == VREADER_OK ? response_length : -1;
}

static int run_engine(VReader *reader, double seconds, const char *loop)
{
    /* SELECT of the first PKI applet by AID with Le = 00 (case 4): returns the FCI and 90 00. */
    static const unsigned char select_pki[] = { 0x00, 0xA4, 0x04, 0x00, 0x07, 0xA0, 0x00, 0x00, 0x00, 0x79, 0x01, 0x00, 0x00 };
    /* READ BUFFER of the value file: 240 bytes from offset 2, Le = 240, as OpenSC reads certificates. */
    static const unsigned char read_buffer[] = { 0x80, 0x52, 0x00, 0x02, 0x02, 0x02, 0xF0, 0xF0 };
    static unsigned char response[RESPONSE_CAPACITY];

    const unsigned char *command;
    int command_length;
    if (strcmp(loop, "select") == 0) {
        command = select_pki;
        command_length = sizeof select_pki;
    } else if (strcmp(loop, "read-buffer") == 0) {
        if (transmit(reader, select_pki, sizeof select_pki, response) < 2) {
            fprintf(stderr, "SELECT of the PKI applet failed\n");
            return 1;
        }
        command = read_buffer;
        command_length = sizeof read_buffer;
    } else {
        fprintf(stderr, "unknown loop \"%s\": use select or read-buffer\n", loop);
        return 2;
    }

    int length = transmit(reader, command, command_length, response);
    if (length < 2 || response[length - 2] != 0x90 || response[length - 1] != 0x00) {
        fprintf(stderr, "the %s command did not return 90 00 (length %d, last bytes %02X %02X)\n", loop, length, length >= 2 ? response[length - 2] : 0, length >= 2 ? response[length - 1] : 0);
        return 1;
    }

    unsigned long count = 0;
    double start = now_seconds(), elapsed;
    do {
        /* Check the clock every 256 APDUs so that clock_gettime stays out of the measurement. */
        for (int i = 0; i < 256; i++) {
            if (transmit(reader, command, command_length, response) < 2) {
                fprintf(stderr, "vreader_xfr_bytes failed after %lu APDUs\n", count);
                return 1;
            }
        }
        count += 256;
        elapsed = now_seconds() - start;
    } while (elapsed < seconds);

    printf("%lu APDUs in %.3f s\n", count, elapsed);
    return 0;
}

/* Reads exactly length bytes; returns 0, or -1 on end of stream or error. */
static int read_exact(int fd, unsigned char *buffer, size_t length)
{
    size_t done = 0;
    while (done < length) {
        /* Re-arm TCP_QUICKACK before every read: Linux clears it after a few ACKs, and a delayed ACK costs 40 ms per round trip. */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
        ssize_t n = read(fd, buffer + done, length - done);
        if (n == 0)
            return -1;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        done += (size_t)n;
    }
    return 0;
}

static int write_frame(int fd, const unsigned char *payload, int length)
{
    unsigned char frame[2 + RESPONSE_CAPACITY];
    frame[0] = (unsigned char)(length >> 8);
    frame[1] = (unsigned char)length;
    memcpy(frame + 2, payload, (size_t)length);
    size_t total = 2 + (size_t)length, done = 0;
    while (done < total) {
        ssize_t n = write(fd, frame + done, total - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        done += (size_t)n;
    }
    return 0;
}

static int connect_to(const char *host, const char *port)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    struct addrinfo *addresses;
    int rc = getaddrinfo(host, port, &hints, &addresses);
    if (rc != 0) {
        fprintf(stderr, "cannot resolve %s:%s: %s\n", host, port, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = addresses; a != NULL && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(addresses);
    if (fd < 0) {
        fprintf(stderr, "cannot connect to vpcd at %s:%s: %s\n", host, port, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* vpcd control codes: a 1-byte frame is a command to the card, not an APDU. */
enum { VPCD_POWER_OFF = 0x00, VPCD_POWER_ON = 0x01, VPCD_RESET = 0x02, VPCD_GET_ATR = 0x04 };

static int run_vpcd(VReader *reader, const char *host, const char *port)
{
    int fd = connect_to(host, port);
    if (fd < 0)
        return 1;

    static unsigned char command[65536], response[RESPONSE_CAPACITY];
    /* vpcd asks for the ATR whenever it polls for card presence, so answer
     * from a copy: vreader_power_on would reset the card and drop pending
     * response data between a command and its GET RESPONSE. */
    unsigned char atr[64];
    int atr_length = sizeof atr;
    vreader_power_on(reader, atr, &atr_length);

    unsigned char header[2];
    while (read_exact(fd, header, 2) == 0) {
        int length = (header[0] << 8) | header[1];
        if (read_exact(fd, command, (size_t)length) != 0)
            break;

        if (length == 1) {
            int reset_atr_length = sizeof atr;
            switch (command[0]) {
            case VPCD_POWER_OFF:
                vreader_power_off(reader);
                break;
            case VPCD_POWER_ON:
            case VPCD_RESET:
                vreader_power_on(reader, atr, &reset_atr_length);
                atr_length = reset_atr_length;
                break;
            case VPCD_GET_ATR:
                if (write_frame(fd, atr, atr_length) != 0)
                    goto done;
                break;
            default:
                fprintf(stderr, "ignoring unknown vpcd control code 0x%02X\n", command[0]);
            }
            continue;
        }

        int response_length = transmit(reader, command, length, response);
        if (response_length < 0) {
            /* 6F 00: no precise diagnosis. */
            response[0] = 0x6F;
            response[1] = 0x00;
            response_length = 2;
        }
        if (write_frame(fd, response, response_length) != 0)
            break;
    }
done:
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "engine") == 0) {
        VReader *reader = start_card(argv[2]);
        return reader ? run_engine(reader, atof(argv[3]), argv[4]) : 1;
    }
    if (argc == 5 && strcmp(argv[1], "vpcd") == 0) {
        VReader *reader = start_card(argv[2]);
        return reader ? run_vpcd(reader, argv[3], argv[4]) : 1;
    }
    fprintf(stderr,
            "usage: %s engine NSS_DB SECONDS select|read-buffer\n"
            "       %s vpcd NSS_DB HOST PORT\n",
            argv[0], argv[0]);
    return 2;
}
