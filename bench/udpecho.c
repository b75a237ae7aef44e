/* udpecho: the UDP target of bench/udp.sh. Returns every datagram to its sender, as it
 * came, from one socket bound to ADDR:PORT (0.0.0.0 serves the proxy's own address, for
 * the direct reference, and the target's behind danted alike).
 *
 *   udpecho ADDR PORT
 *
 * recvmmsg/sendmmsg in batches of up to 64, so one wake-up answers a burst: the echo is
 * never what limits a figure (danted's relay, one datagram per select(), is slower).
 * SO_RCVBUF/SO_SNDBUF 4 MiB so a window of datagrams in flight is not dropped here.
 * Runs until killed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 64
#define MAXLEN 65536

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: udpecho ADDR PORT\n");
        return 2;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &a.sin_addr) != 1) {
        fprintf(stderr, "udpecho: bad address %s\n", argv[1]);
        return 2;
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int big = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("udpecho: bind");
        return 1;
    }
    static char bufs[BATCH][MAXLEN];
    struct sockaddr_in from[BATCH];
    struct iovec iov[BATCH];
    struct mmsghdr m[BATCH];
    for (;;) {
        memset(m, 0, sizeof m);
        for (int i = 0; i < BATCH; i++) {
            iov[i].iov_base = bufs[i];
            iov[i].iov_len = MAXLEN;
            m[i].msg_hdr.msg_iov = &iov[i];
            m[i].msg_hdr.msg_iovlen = 1;
            m[i].msg_hdr.msg_name = &from[i];
            m[i].msg_hdr.msg_namelen = sizeof from[i];
        }
        int n = recvmmsg(fd, m, BATCH, MSG_WAITFORONE, NULL);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("udpecho: recvmmsg");
            return 1;
        }
        for (int i = 0; i < n; i++) iov[i].iov_len = m[i].msg_len;
        int done = 0;
        while (done < n) {
            int s = sendmmsg(fd, m + done, (unsigned)(n - done), 0);
            if (s < 0) {
                if (errno == EINTR) continue;
                break; /* e.g. ECONNREFUSED left by an earlier ICMP: drop the rest */
            }
            done += s;
        }
    }
}
