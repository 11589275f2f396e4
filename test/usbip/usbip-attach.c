/*
 * Guest-side helper of the USB/IP test: imports one device from a USB/IP
 * server and hands the connection to the vhci-hcd driver, as
 * `usbip attach -r HOST -b BUSID` does, without the usbip package.
 *
 *   usbip-attach HOST PORT BUSID
 *
 * Exits 0 once the kernel owns the connection; the device then enumerates.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define VHCI_ATTACH "/sys/devices/platform/vhci_hcd.0/attach"

static int read_exact(int fd, unsigned char *buffer, size_t length)
{
    size_t done = 0;
    while (done < length) {
        ssize_t n = read(fd, buffer + done, length - done);
        if (n <= 0)
            return -1;
        done += (size_t)n;
    }
    return 0;
}

static uint32_t be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s HOST PORT BUSID\n", argv[0]);
        return 2;
    }

    struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])) };
    if (inet_pton(AF_INET, argv[1], &address.sin_addr) != 1) {
        fprintf(stderr, "invalid IPv4 address %s\n", argv[1]);
        return 2;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        fprintf(stderr, "connect to %s:%s failed: %s\n", argv[1], argv[2], strerror(errno));
        return 1;
    }

    /* OP_REQ_IMPORT: version 0x0111, code 0x8003, status 0, bus id. */
    unsigned char request[40] = { 0x01, 0x11, 0x80, 0x03 };
    strncpy((char *)request + 8, argv[3], 31);
    if (write(fd, request, sizeof request) != (ssize_t)sizeof request) {
        fprintf(stderr, "sending OP_REQ_IMPORT failed: %s\n", strerror(errno));
        return 1;
    }

    unsigned char reply[8 + 312];
    if (read_exact(fd, reply, 8) != 0) {
        fprintf(stderr, "no OP_REP_IMPORT from the server\n");
        return 1;
    }
    if (be32(reply + 4) != 0) {
        fprintf(stderr, "the server rejected the import of bus id %s (status %u)\n", argv[3], be32(reply + 4));
        return 1;
    }
    if (read_exact(fd, reply + 8, 312) != 0) {
        fprintf(stderr, "OP_REP_IMPORT ended before its device record\n");
        return 1;
    }
    uint32_t busnum = be32(reply + 8 + 288);
    uint32_t devnum = be32(reply + 8 + 292);
    uint32_t speed = be32(reply + 8 + 296);

    /* Ports 0-7 are the driver's USB 2.0 ports by default; take the first free one. */
    for (int port = 0; port < 8; port++) {
        int attach = open(VHCI_ATTACH, O_WRONLY);
        if (attach < 0) {
            fprintf(stderr, "cannot open %s (is vhci-hcd loaded?): %s\n", VHCI_ATTACH, strerror(errno));
            return 1;
        }
        char line[64];
        int length = snprintf(line, sizeof line, "%d %d %u %u", port, fd, (busnum << 16) | devnum, speed);
        ssize_t written = write(attach, line, (size_t)length);
        close(attach);
        if (written == length) {
            printf("attached bus id %s to vhci port %d\n", argv[3], port);
            return 0;
        }
    }
    fprintf(stderr, "no free vhci-hcd port accepted the device\n");
    return 1;
}
