/* guardconn: the price of a trapped connect and of a trapped getpeername, in one process.
 *
 *   guardconn conn [-s PROXY_IP:PORT] [-r] [-n N] [-w W] TARGET_IP PORT
 *   guardconn peer [-s PROXY_IP:PORT] [-r] [-n N] TARGET_IP PORT
 *
 * conn: N cycles (after W untimed warm-up cycles, default 20) of socket + blocking
 * connect + one byte written + the same byte read back from the echo server + close. A
 * cycle's time runs from socket() to the echoed byte (close is not in it): connect,
 * SOCKS5 handshake and the first round trip through the proxy, whoever does the
 * handshake. Prints n, p50, p90, mean, min, max in microseconds.
 *
 * peer: one connection as above, then N getpeername(2) calls on it in batches of 256;
 * prints the fastest and the median batch in ns per call. Without -s the answer must be
 * the target (a layer that proxied the socket reports the target, not the proxy).
 *
 * Without -s the program has no SOCKS code: it connect()s to the target and relies on
 * whoever is around it (liblaysocks.so, the guard, proxychains4). With -s it is the
 * native reference and speaks SOCKS5 itself (RFC 1928 §3 greeting, §4 CONNECT, §6 reply,
 * no authentication, one message at a time: the same two round trips a layer needs).
 * -r makes connect and getpeername with the `syscall` instruction, around libc and any
 * preload hook (as Go does; the preload layer interposes syscall(3) itself); built with
 * -static the whole program is out of a preload layer's reach.
 *
 * Exits non-zero with one line on the first failure. Bounded: N <= 1e6 (conn: 1e5), alarm(120).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int raw;

#include "guardsys.h"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int read_exact(int fd, unsigned char *buf, size_t len)
{
    while (len > 0) {
        ssize_t r = read(fd, buf, len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        buf += r;
        len -= (size_t)r;
    }
    return 0;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static int do_connect(int fd, const struct sockaddr_in *to)
{
    if (raw)
        return (int)raw_syscall(SYS_connect, fd, (long)to, sizeof *to, 0, 0, 0);
    return connect(fd, (const struct sockaddr *)to, sizeof *to);
}

static int do_getpeername(int fd, struct sockaddr_storage *ss, socklen_t *len)
{
    if (raw)
        return (int)raw_syscall(SYS_getpeername, fd, (long)ss, (long)len, 0, 0, 0);
    return getpeername(fd, (struct sockaddr *)ss, len);
}

/* RFC 1928 §3 greeting, §4 CONNECT request, §6 reply; one step at a time. */
static const char *socks5_connect(int fd, const struct sockaddr_in *dst)
{
    unsigned char buf[262];
    static const unsigned char hello[3] = {5, 1, 0};
    if (write_all(fd, hello, 3) < 0)
        return "greeting write failed";
    if (read_exact(fd, buf, 2) < 0)
        return "greeting reply short";
    if (buf[0] != 5 || buf[1] != 0)
        return "proxy refused method 0 (no auth)";
    unsigned char req[10] = {5, 1, 0, 1};
    memcpy(req + 4, &dst->sin_addr, 4);
    memcpy(req + 8, &dst->sin_port, 2);
    if (write_all(fd, req, 10) < 0)
        return "request write failed";
    if (read_exact(fd, buf, 4) < 0)
        return "reply short";
    if (buf[0] != 5 || buf[1] != 0)
        return "proxy replied with an error code";
    size_t rest;
    switch (buf[3]) {
    case 1: rest = 4 + 2; break;
    case 4: rest = 16 + 2; break;
    case 3:
        if (read_exact(fd, buf, 1) < 0)
            return "reply short";
        rest = (size_t)buf[0] + 2;
        break;
    default: return "reply has an unknown address type";
    }
    if (read_exact(fd, buf, rest) < 0)
        return "reply short";
    return NULL;
}

static int parse_addr(const char *ip, const char *port, struct sockaddr_in *out)
{
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_port = htons((unsigned short)atoi(port));
    return inet_pton(AF_INET, ip, &out->sin_addr) == 1 ? 0 : -1;
}

/* One connected socket to the target, through the proxy (native) or whoever is around. */
static int open_conn(const struct sockaddr_in *dst, const struct sockaddr_in *px, long cycle)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("guardconn: socket");
        exit(1);
    }
    if (do_connect(fd, px ? px : dst) < 0) {
        fprintf(stderr, "guardconn: connect (cycle %ld): %s\n", cycle, strerror(errno));
        exit(1);
    }
    if (px) {
        const char *err = socks5_connect(fd, dst);
        if (err) {
            fprintf(stderr, "guardconn: socks5 (cycle %ld): %s\n", cycle, err);
            exit(1);
        }
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void echo_once(int fd, long cycle)
{
    unsigned char c = (unsigned char)(cycle & 0xff), r = 0;
    if (write_all(fd, &c, 1) < 0 || read_exact(fd, &r, 1) < 0 || r != c) {
        fprintf(stderr, "guardconn: echo (cycle %ld) failed: %s\n", cycle,
                errno ? strerror(errno) : "wrong byte");
        exit(1);
    }
}

#define PEER_BATCH 256

int main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "conn") && strcmp(argv[1], "peer"))) {
        fprintf(stderr, "usage: guardconn conn|peer [-s PROXY_IP:PORT] [-r] [-n N] [-w W] TARGET_IP PORT\n");
        return 2;
    }
    int conn = !strcmp(argv[1], "conn");
    long n = conn ? 1000 : 100000, warm = 20;
    char *proxy = NULL;
    int opt;
    optind = 2;
    while ((opt = getopt(argc, argv, "s:rn:w:")) != -1) {
        if (opt == 's')
            proxy = optarg;
        else if (opt == 'r')
            raw = 1;
        else if (opt == 'n')
            n = atol(optarg);
        else if (opt == 'w')
            warm = atol(optarg);
        else
            return 2;
    }
    if (argc - optind != 2 || n < 1 || n > (conn ? 100000 : 1000000) || warm < 0 || warm > 1000 ||
        (!conn && n < PEER_BATCH)) {
        fprintf(stderr, "guardconn: bad arguments (conn: 1 <= N <= 1e5; peer: 256 <= N <= 1e6)\n");
        return 2;
    }
    alarm(120);
    struct sockaddr_in dst, pxa, *px = NULL;
    if (parse_addr(argv[optind], argv[optind + 1], &dst) < 0) {
        fprintf(stderr, "guardconn: bad target address\n");
        return 2;
    }
    if (proxy) {
        char host[64];
        const char *colon = strrchr(proxy, ':');
        if (!colon || (size_t)(colon - proxy) >= sizeof host)
            return 2;
        memcpy(host, proxy, (size_t)(colon - proxy));
        host[colon - proxy] = 0;
        if (parse_addr(host, colon + 1, &pxa) < 0) {
            fprintf(stderr, "guardconn: bad proxy address\n");
            return 2;
        }
        px = &pxa;
    }

    if (conn) {
        uint64_t *t = calloc((size_t)n, sizeof *t);
        if (!t)
            return 1;
        for (long i = -warm; i < n; i++) {
            uint64_t t0 = now_ns();
            int fd = open_conn(&dst, px, i);
            echo_once(fd, i);
            uint64_t t1 = now_ns();
            close(fd);
            if (i >= 0)
                t[i] = t1 - t0;
        }
        uint64_t sum = 0;
        for (long i = 0; i < n; i++)
            sum += t[i];
        qsort(t, (size_t)n, sizeof *t, cmp_u64);
        printf("mode=conn n=%ld p50_us=%.1f p90_us=%.1f mean_us=%.1f min_us=%.1f max_us=%.1f\n", n,
               (double)t[n / 2] / 1e3, (double)t[(n * 9) / 10] / 1e3, (double)sum / (double)n / 1e3,
               (double)t[0] / 1e3, (double)t[n - 1] / 1e3);
        return 0;
    }

    int fd = open_conn(&dst, px, 0);
    echo_once(fd, 0);
    long nb = n / PEER_BATCH;
    double *v = calloc((size_t)nb, sizeof *v);
    if (!v)
        return 1;
    struct sockaddr_storage ss;
    for (long b = 0; b < nb; b++) {
        uint64_t t0 = now_ns();
        for (int i = 0; i < PEER_BATCH; i++) {
            socklen_t len = sizeof ss;
            if (do_getpeername(fd, &ss, &len) != 0) {
                fprintf(stderr, "guardconn: getpeername: %s\n", strerror(errno));
                return 1;
            }
        }
        v[b] = (double)(now_ns() - t0) / PEER_BATCH;
    }
    /* The last answer: under a layer it must be the target itself. */
    const struct sockaddr_in *got = (const struct sockaddr_in *)&ss;
    if (!px && (got->sin_family != AF_INET || got->sin_addr.s_addr != dst.sin_addr.s_addr ||
                got->sin_port != dst.sin_port)) {
        char a[INET6_ADDRSTRLEN] = "?";
        if (got->sin_family == AF_INET)
            inet_ntop(AF_INET, &got->sin_addr, a, sizeof a);
        fprintf(stderr, "guardconn: getpeername gave %s:%u (family %d), not the target\n", a,
                ntohs(got->sin_port), got->sin_family);
        return 1;
    }
    qsort(v, (size_t)nb, sizeof *v, cmp_d);
    printf("mode=peer n=%ld min_ns=%.1f median_ns=%.1f\n", nb * PEER_BATCH, v[0], v[nb / 2]);
    return 0;
}
