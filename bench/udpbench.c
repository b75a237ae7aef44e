/* udpbench: round trips of small datagrams to a UDP echo server, and datagrams per
 * second with a window in flight. The client of bench/udp.sh.
 *
 *   udpbench lat  [-s PROXY_IP:PORT] [-c] [-n N] [-l LEN] [-W WARM] TARGET_IP PORT
 *   udpbench rate [-s PROXY_IP:PORT] [-c] [-t SECS] [-w WINDOW] [-l LEN] [-W WARM] TARGET_IP PORT
 *
 * Without -s it is a plain UDP program with no SOCKS code: sendto()/recvfrom() on an
 * unconnected socket (with -c: connect() and send()/recv()), poll() for the timeout.
 * Run it under laysocks or socksify and they carry the datagrams. Every answer must come
 * from TARGET_IP:PORT (recvfrom's address; with -c getpeername once) and carry the
 * payload that was sent.
 *
 * With -s it is the native reference: it does UDP ASSOCIATE itself (RFC 1928 §3, §4, §6,
 * no authentication, DST 0.0.0.0:0, one message at a time), keeps the TCP control
 * connection open, connect()s its UDP socket to the relay (BND.ADDR 0.0.0.0 means the
 * proxy's address) and sends header + payload from one buffer with send(); the answer's
 * header (§7: RSV, FRAG 0, ATYP 1, DST = the target) is checked and stripped. That is the
 * least a SOCKS5 UDP client can do per datagram.
 *
 * Payload: 8 bytes of sequence number, then bytes that depend on it, checked on return.
 *
 * lat:  WARM untimed round trips (the first opens the layer's session; its time, with
 *       -s plus that of the UDP ASSOCIATE before it, is printed as first_us), then N, one
 *       at a time, each timed with CLOCK_MONOTONIC. cpu_us: the process's CPU time
 *       (user + system, every thread) per round trip.
 *       A datagram not answered within 1 s counts as lost.
 * rate: WARM round trips, then WINDOW datagrams in flight for SECS seconds: each answer
 *       sends the next. If nothing comes back for 200 ms the window is counted lost and
 *       refilled; answers to datagrams from before that are counted late, not resent.
 *       cpu_us: the process's CPU time per datagram answered.
 *
 * Prints one key=value line on stdout; exits non-zero with one line on stderr on a
 * failure (a send error, a wrong source, a bad payload). Bounded: alarm(SECS + 60).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXLEN 65507
#define HDR 10 /* RSV RSV FRAG ATYP(1) ADDR(4) PORT(2) */

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* CPU time of the whole process (every thread: a layer's too), in microseconds. */
static double cpu_us(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e6 + (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void die(const char *what) {
    fprintf(stderr, "udpbench: %s: %s\n", what, errno ? strerror(errno) : "failed");
    exit(1);
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

static int parse_addr(const char *s, struct sockaddr_in *a) {
    char host[64];
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof host) return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)atoi(colon + 1));
    return inet_pton(AF_INET, host, &a->sin_addr) == 1 ? 0 : -1;
}

/* Everything one way of sending needs. */
static int fd = -1, ctl = -1, native = 0, connected = 0;
static struct sockaddr_in target, relay;
static unsigned char txbuf[HDR + MAXLEN], rxbuf[HDR + MAXLEN + 64];
static size_t len = 64;
static uint64_t foreign = 0; /* datagrams from someone else, or with a wrong header */

/* UDP ASSOCIATE (RFC 1928): greeting, request DST 0.0.0.0:0, reply -> relay. */
static void associate(const struct sockaddr_in *proxy) {
    ctl = socket(AF_INET, SOCK_STREAM, 0);
    if (ctl < 0 || connect(ctl, (const struct sockaddr *)proxy, sizeof *proxy) != 0)
        die("connect to the proxy");
    int one = 1;
    setsockopt(ctl, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    unsigned char b[262];
    if (write(ctl, "\x05\x01\x00", 3) != 3 || read_exact(ctl, b, 2) || b[0] != 5 || b[1] != 0)
        die("SOCKS5 method selection");
    static const unsigned char req[10] = {5, 3, 0, 1, 0, 0, 0, 0, 0, 0};
    if (write(ctl, req, sizeof req) != (ssize_t)sizeof req || read_exact(ctl, b, 4) || b[0] != 5)
        die("SOCKS5 UDP ASSOCIATE request");
    if (b[1] != 0) {
        fprintf(stderr, "udpbench: the proxy refused UDP ASSOCIATE (REP %#04x)\n", b[1]);
        exit(1);
    }
    if (b[3] != 1 || read_exact(ctl, b, 6)) die("SOCKS5 reply (expected an IPv4 BND.ADDR)");
    memset(&relay, 0, sizeof relay);
    relay.sin_family = AF_INET;
    memcpy(&relay.sin_addr, b, 4);
    memcpy(&relay.sin_port, b + 4, 2);
    if (relay.sin_addr.s_addr == INADDR_ANY) relay.sin_addr = proxy->sin_addr;
    if (connect(fd, (struct sockaddr *)&relay, sizeof relay) != 0) die("connect to the relay");
    /* The header every datagram carries: RSV RSV FRAG=0 ATYP=1 DST.ADDR DST.PORT. */
    memset(txbuf, 0, 3);
    txbuf[3] = 1;
    memcpy(txbuf + 4, &target.sin_addr, 4);
    memcpy(txbuf + 8, &target.sin_port, 2);
}

static unsigned char *payload(void) { return native ? txbuf + HDR : txbuf; }

static void fill(uint64_t seq) {
    unsigned char *p = payload();
    memcpy(p, &seq, 8);
    for (size_t i = 8; i < len; i++) p[i] = (unsigned char)(seq * 31 + i);
}

static void send_one(uint64_t seq) {
    fill(seq);
    ssize_t w;
    do {
        if (native || connected)
            w = send(fd, txbuf, native ? HDR + len : len, 0);
        else
            w = sendto(fd, txbuf, len, 0, (struct sockaddr *)&target, sizeof target);
    } while (w < 0 && errno == EINTR);
    if (w < 0) die("send");
    if ((size_t)w != (native ? HDR + len : len)) {
        errno = 0;
        die("short send");
    }
}

/* Waits up to timeout_ms for an answer; returns 1 and its sequence number, 0 on timeout.
 * A datagram from anyone but the target, or with the wrong header, is counted and
 * skipped; a payload that is not what was sent for its sequence number is fatal. */
static int recv_one(int timeout_ms, uint64_t *seq) {
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, timeout_ms);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) die("poll");
        if (r == 0) return 0;
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        ssize_t n;
        if (native || connected)
            n = recv(fd, rxbuf, sizeof rxbuf, 0);
        else
            n = recvfrom(fd, rxbuf, sizeof rxbuf, 0, (struct sockaddr *)&from, &fl);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n < 0) die("recv");
        unsigned char *pl = rxbuf;
        if (native) {
            if (n < HDR || rxbuf[2] != 0 || rxbuf[3] != 1 || memcmp(rxbuf + 4, &target.sin_addr, 4) ||
                memcmp(rxbuf + 8, &target.sin_port, 2)) {
                foreign++;
                continue;
            }
            pl += HDR;
            n -= HDR;
        } else if (!connected && (fl < sizeof from || from.sin_family != AF_INET ||
                                  from.sin_addr.s_addr != target.sin_addr.s_addr ||
                                  from.sin_port != target.sin_port)) {
            foreign++;
            continue;
        }
        uint64_t s;
        if ((size_t)n != len) {
            fprintf(stderr, "udpbench: answer of %zd bytes, sent %zu\n", n, len);
            exit(1);
        }
        memcpy(&s, pl, 8);
        for (size_t i = 8; i < len; i++)
            if (pl[i] != (unsigned char)(s * 31 + i)) {
                fprintf(stderr, "udpbench: payload of datagram %llu differs at byte %zu\n",
                        (unsigned long long)s, i);
                exit(1);
            }
        *seq = s;
        return 1;
    }
}

int main(int argc, char **argv) {
    if (argc < 2) goto usage;
    const char *mode = argv[1];
    int lat = !strcmp(mode, "lat");
    if (!lat && strcmp(mode, "rate")) goto usage;
    long n = 5000, warm = 100, window = 16;
    double secs = 2.0;
    struct sockaddr_in proxy;
    int opt;
    optind = 2;
    while ((opt = getopt(argc, argv, "s:cn:l:W:t:w:")) != -1) {
        switch (opt) {
        case 's':
            if (parse_addr(optarg, &proxy)) goto usage;
            native = 1;
            break;
        case 'c': connected = 1; break;
        case 'n': n = atol(optarg); break;
        case 'l': len = (size_t)atol(optarg); break;
        case 'W': warm = atol(optarg); break;
        case 't': secs = atof(optarg); break;
        case 'w': window = atol(optarg); break;
        default: goto usage;
        }
    }
    if (argc - optind != 2 || n < 1 || n > 10000000 || len < 8 || len > MAXLEN || warm < 1 ||
        window < 1 || window > 4096 || secs <= 0 || secs > 600)
        goto usage;
    memset(&target, 0, sizeof target);
    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)atoi(argv[optind + 1]));
    if (inet_pton(AF_INET, argv[optind], &target.sin_addr) != 1) goto usage;
    alarm((unsigned)(lat ? 120 : secs + 60));

    fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) die("socket");
    int big = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    uint64_t t_assoc = now_ns();
    if (native) {
        associate(&proxy);
        t_assoc = now_ns() - t_assoc;
    } else if (connected) {
        if (connect(fd, (struct sockaddr *)&target, sizeof target) != 0) die("connect");
        struct sockaddr_in peer;
        socklen_t pl = sizeof peer;
        if (getpeername(fd, (struct sockaddr *)&peer, &pl) != 0 || peer.sin_addr.s_addr != target.sin_addr.s_addr ||
            peer.sin_port != target.sin_port) {
            errno = 0;
            die("getpeername does not give the target");
        }
    }

    /* Warm-up: the first round trip opens the session (for a layer: the ASSOCIATE). */
    uint64_t seq = 0, got, first_ns = 0, lost = 0, late = 0;
    for (long i = 0; i < warm; i++, seq++) {
        uint64_t t0 = now_ns();
        send_one(seq);
        for (;;) {
            if (!recv_one(2000, &got)) {
                fprintf(stderr, "udpbench: no answer to warm-up datagram %llu within 2 s\n",
                        (unsigned long long)seq);
                return 1;
            }
            if (got == seq) break;
        }
        if (i == 0) first_ns = now_ns() - t0 + (native ? t_assoc : 0);
    }

    double cpu0 = cpu_us();
    if (lat) {
        uint64_t *t = malloc((size_t)n * sizeof *t);
        long k = 0;
        double sum = 0;
        for (long i = 0; i < n; i++, seq++) {
            uint64_t t0 = now_ns();
            send_one(seq);
            for (;;) {
                if (!recv_one(1000, &got)) {
                    lost++;
                    break;
                }
                if (got == seq) {
                    t[k] = now_ns() - t0;
                    sum += (double)t[k++];
                    break;
                }
                late++;
            }
        }
        if (k == 0) {
            fprintf(stderr, "udpbench: every datagram was lost\n");
            return 1;
        }
        double cpu = (cpu_us() - cpu0) / (double)n;
        qsort(t, (size_t)k, sizeof *t, cmp_u64);
        printf("ok=1 mode=lat n=%ld len=%zu median_us=%.2f mean_us=%.2f min_us=%.2f p90_us=%.2f "
               "p99_us=%.2f max_us=%.2f cpu_us=%.2f first_us=%.1f lost=%llu late=%llu foreign=%llu\n",
               k, len, t[k / 2] / 1e3, sum / k / 1e3, t[0] / 1e3, t[k * 9 / 10] / 1e3, t[k * 99 / 100] / 1e3,
               t[k - 1] / 1e3, cpu, first_ns / 1e3, (unsigned long long)lost, (unsigned long long)late,
               (unsigned long long)foreign);
        return 0;
    }

    /* rate */
    uint64_t floor_seq = seq, sent = 0, recvd = 0, timeouts = 0;
    long inflight = 0;
    uint64_t t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9);
    for (; inflight < window; inflight++, sent++) send_one(seq++);
    while (now_ns() < end) {
        if (!recv_one(200, &got)) {
            timeouts++;
            lost += (uint64_t)inflight;
            floor_seq = seq;
            for (inflight = 0; inflight < window; inflight++, sent++) send_one(seq++);
            continue;
        }
        if (got < floor_seq) {
            late++;
            continue;
        }
        recvd++;
        send_one(seq++);
        sent++;
    }
    double el = (double)(now_ns() - t0) / 1e9;
    double cpu = recvd ? (cpu_us() - cpu0) / (double)recvd : 0;
    printf("ok=1 mode=rate len=%zu window=%ld secs=%.3f sent=%llu recv=%llu dps=%.0f cpu_us=%.2f lost=%llu "
           "late=%llu timeouts=%llu first_us=%.1f foreign=%llu\n",
           len, window, el, (unsigned long long)sent, (unsigned long long)recvd, recvd / el, cpu,
           (unsigned long long)lost, (unsigned long long)late, (unsigned long long)timeouts, first_ns / 1e3,
           (unsigned long long)foreign);
    return 0;

usage:
    fprintf(stderr, "usage: udpbench lat|rate [-s PROXY_IP:PORT] [-c] [-n N] [-t SECS] [-w WINDOW] "
                    "[-l LEN] [-W WARM] TARGET_IP PORT\n");
    return 2;
}
