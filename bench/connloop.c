/* connloop: N sequential connect + HTTP request + read-to-EOF + close cycles in one
 * process, so the figure is the cost of a proxied connection without process start-up.
 *
 *   connloop [-s PROXY_IP:PORT] -n N TARGET_IP PORT PATH
 *
 * Without -s it just connect()s to the target: run it under liblaysocks.so or
 * proxychains4 and they do the proxying. With -s it is the "native" reference: it
 * speaks SOCKS5 itself (no auth, CONNECT, IPv4), one message at a time and waiting for
 * each reply, the same two round trips a preload layer needs (microsocks cannot take
 * a pipelined handshake anyway).
 *
 * Prints one line: n, mean/median/min/p90 per cycle in microseconds, bytes per reply.
 * Exits non-zero with one line on the first failure. Bounded: n <= 1e6 and alarm(120).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int read_exact(int fd, unsigned char *buf, size_t len) {
    while (len > 0) {
        ssize_t r = read(fd, buf, len);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        buf += r;
        len -= (size_t)r;
    }
    return 0;
}

static int write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* RFC 1928 §3 greeting, §4 CONNECT request, §6 reply; one step at a time. */
static const char *socks5_connect(int fd, const struct sockaddr_in *dst) {
    unsigned char buf[262];
    static const unsigned char hello[3] = {5, 1, 0};
    if (write_all(fd, hello, 3) < 0) return "greeting write failed";
    if (read_exact(fd, buf, 2) < 0) return "greeting reply short";
    if (buf[0] != 5 || buf[1] != 0) return "proxy refused method 0 (no auth)";
    unsigned char req[10] = {5, 1, 0, 1};
    memcpy(req + 4, &dst->sin_addr, 4);
    memcpy(req + 8, &dst->sin_port, 2);
    if (write_all(fd, req, 10) < 0) return "request write failed";
    if (read_exact(fd, buf, 4) < 0) return "reply short";
    if (buf[0] != 5 || buf[1] != 0) return "proxy replied with an error code";
    size_t rest;
    switch (buf[3]) {
    case 1: rest = 4 + 2; break;
    case 4: rest = 16 + 2; break;
    case 3:
        if (read_exact(fd, buf, 1) < 0) return "reply short";
        rest = (size_t)buf[0] + 2;
        break;
    default: return "reply has an unknown address type";
    }
    if (read_exact(fd, buf, rest) < 0) return "reply short";
    return NULL;
}

static int parse_addr(const char *ip, const char *port, struct sockaddr_in *out) {
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_port = htons((unsigned short)atoi(port));
    return inet_pton(AF_INET, ip, &out->sin_addr) == 1 ? 0 : -1;
}

int main(int argc, char **argv) {
    long n = 1000;
    char *proxy = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "s:n:")) != -1) {
        if (opt == 's') proxy = optarg;
        else if (opt == 'n') n = atol(optarg);
        else return 2;
    }
    if (argc - optind != 3 || n < 1 || n > 1000000) {
        fprintf(stderr, "usage: connloop [-s PROXY_IP:PORT] -n N TARGET_IP PORT PATH\n");
        return 2;
    }
    alarm(120);
    struct sockaddr_in dst, px;
    if (parse_addr(argv[optind], argv[optind + 1], &dst) < 0) {
        fprintf(stderr, "connloop: bad target address\n");
        return 2;
    }
    if (proxy) {
        char host[64];
        const char *colon = strrchr(proxy, ':');
        if (!colon || (size_t)(colon - proxy) >= sizeof host) return 2;
        memcpy(host, proxy, (size_t)(colon - proxy));
        host[colon - proxy] = 0;
        if (parse_addr(host, colon + 1, &px) < 0) {
            fprintf(stderr, "connloop: bad proxy address\n");
            return 2;
        }
    }
    char req[256];
    int rl = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", argv[optind + 2],
                      argv[optind]);
    uint64_t *t = calloc((size_t)n, sizeof *t);
    static char buf[65536];
    long bytes = 0;
    for (long i = 0; i < n; i++) {
        uint64_t t0 = now_ns();
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) { perror("connloop: socket"); return 1; }
        const struct sockaddr_in *to = proxy ? &px : &dst;
        if (connect(fd, (const struct sockaddr *)to, sizeof *to) < 0) {
            fprintf(stderr, "connloop: connect (cycle %ld): %s\n", i, strerror(errno));
            return 1;
        }
        if (proxy) {
            const char *err = socks5_connect(fd, &dst);
            if (err) { fprintf(stderr, "connloop: socks5 (cycle %ld): %s\n", i, err); return 1; }
        }
        if (write_all(fd, req, (size_t)rl) < 0) {
            fprintf(stderr, "connloop: write (cycle %ld): %s\n", i, strerror(errno));
            return 1;
        }
        long got = 0;
        for (;;) {
            ssize_t r = read(fd, buf, sizeof buf);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) {
                fprintf(stderr, "connloop: read (cycle %ld): %s\n", i, strerror(errno));
                return 1;
            }
            if (r == 0) break;
            if (got == 0 && (r < 12 || memcmp(buf, "HTTP/1.1 200", 12) != 0)) {
                fprintf(stderr, "connloop: cycle %ld: reply is not HTTP 200\n", i);
                return 1;
            }
            got += r;
        }
        close(fd);
        t[i] = now_ns() - t0;
        if (got == 0) { fprintf(stderr, "connloop: cycle %ld: empty reply\n", i); return 1; }
        bytes = got;
    }
    uint64_t sum = 0;
    for (long i = 0; i < n; i++) sum += t[i];
    qsort(t, (size_t)n, sizeof *t, cmp_u64);
    printf("n=%ld mean_us=%.2f median_us=%.2f min_us=%.2f p90_us=%.2f reply_bytes=%ld\n", n,
           (double)sum / (double)n / 1e3, (double)t[n / 2] / 1e3, (double)t[0] / 1e3,
           (double)t[(n * 9) / 10] / 1e3, bytes);
    return 0;
}
