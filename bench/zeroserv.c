/* zeroserv: the benchmark's HTTP target.
 *
 * Why not python's http.server or socat: a 100 MB download must be limited by the
 * proxy path, not by the server, and python tops out well below what danted moves.
 * This serves zeros from one static buffer, one connection at a time (the benchmark's
 * clients are sequential, and an iterative server adds no fork/thread cost per request).
 *
 *   zeroserv IP PORT
 *   GET /small      -> 128-byte body
 *   GET /<N>[K|M]   -> N bytes (or KiB, MiB) of zeros, e.g. /100M
 *
 * Every response carries Content-Length and "Connection: close"; the server closes
 * after the body. A client that sends nothing for 5 s is dropped, so a stuck client
 * cannot wedge the benchmark.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static char zeros[1 << 20];

static size_t body_len(const char *req) {
    const char *p = strchr(req, ' ');
    if (!p) return 0;
    p++;
    if (strncmp(p, "/small", 6) == 0 && (p[6] == ' ' || p[6] == '?')) return 128;
    if (*p != '/') return 0;
    char *end;
    unsigned long long n = strtoull(p + 1, &end, 10);
    if (*end == 'K') n <<= 10;
    else if (*end == 'M') n <<= 20;
    if (n > (4ULL << 30)) n = 4ULL << 30;
    return (size_t)n;
}

static int write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

static void serve(int c) {
    char req[8192];
    size_t got = 0;
    struct timeval tv = {5, 0};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    while (got < sizeof req - 1) {
        ssize_t r = read(c, req + got, sizeof req - 1 - got);
        if (r <= 0) return;
        got += (size_t)r;
        req[got] = 0;
        if (strstr(req, "\r\n\r\n")) break;
    }
    size_t n = body_len(req);
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                      n);
    if (write_all(c, head, (size_t)hl) < 0) return;
    while (n > 0) {
        size_t chunk = n < sizeof zeros ? n : sizeof zeros;
        if (write_all(c, zeros, chunk) < 0) return;
        n -= chunk;
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: zeroserv IP PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &a.sin_addr) != 1) {
        fprintf(stderr, "zeroserv: bad IPv4 address %s\n", argv[1]);
        return 2;
    }
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 512) < 0) {
        perror("zeroserv: bind/listen");
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            perror("zeroserv: accept");
            return 1;
        }
        serve(c);
        close(c);
    }
}
