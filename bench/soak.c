/* soak: many proxied connections in one process, and what they leave behind.
 *
 *   soak seq  [-s PROXY_IP:PORT] [-n N] [-w WARM] [-f CLOSED_PORT] TARGET_IP PORT
 *   soak conc [-s PROXY_IP:PORT] [-n N] [-r ROUNDS] [-f CLOSED_PORT] TARGET_IP PORT
 *   soak silent LISTEN_IP PORT        (a "proxy" that accepts and never answers)
 *
 * seq: N connections one after another: blocking socket, connect, write 16 bytes, read
 * them back, compare, close. conc: ROUNDS rounds of N non-blocking sockets connected all
 * at once and driven by one epoll loop (EPOLLOUT, SO_ERROR, write, EPOLLIN, read,
 * compare, close), all N open together. Without -s the program only connect()s to the
 * target: the layer (or proxychains4) does the proxying. With -s it is the native
 * reference: it speaks SOCKS5 itself (RFC 1928 §3 greeting without authentication, §4
 * CONNECT to an IPv4 address, §6 reply), one message at a time; in conc mode as a state
 * machine in the same epoll loop.
 *
 * -f PORT: every second connection goes to PORT on the target instead (closed there),
 * so half the handshakes fail (the proxy answers "connection refused", RFC 1928 §6
 * REP 5); those must fail with ECONNREFUSED and the others succeed.
 *
 * Prints one line of key=value figures:
 *   ok, fail, errs (failures by errno), fds_before/fds_after (entries of /proc/self/fd
 *   before the first socket and after the last close), rss_warm_kib (VmRSS after WARM
 *   connections, or after the first round) and rss_end_kib, hs_max_us/hs_p99_us/
 *   hs_median_us (handshake time: connect() until connected or failed; in conc mode
 *   until EPOLLOUT/EPOLLERR, or the native handshake's reply), total_ms, hang (conc:
 *   sockets still open when the 60 s bound of a round ran out).
 * Exits 1 if a connection that should have succeeded failed or echoed wrong bytes, or
 * one that should have failed succeeded. Bounded: alarm(300), 60 s per conc round.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000;
}

static int count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the directory's own */
}

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &v) == 1) break;
    if (f) fclose(f);
    return v;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int parse(const char *ip, int port, struct sockaddr_in *a) {
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_port = htons((unsigned short)port);
    return inet_pton(AF_INET, ip, &a->sin_addr) == 1 ? 0 : -1;
}

static struct sockaddr_in target, closed_target, proxy;
static int native, fault_port;
static int errs[256];
static long ok_n, fail_n, wrong_n;
static uint64_t *hs;
static long hs_n;

static const struct sockaddr_in *dest_of(long i) {
    return fault_port && (i % 2) ? &closed_target : &target;
}

static void fail(long i, int e) {
    fail_n++;
    errs[e & 255]++;
    if (!(fault_port && (i % 2) && e == ECONNREFUSED)) wrong_n++;
}

/* ---------------------------------------------------------------- native SOCKS5 */

static int read_exact(int fd, unsigned char *b, size_t n) {
    while (n) {
        ssize_t r = read(fd, b, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

static void request(unsigned char *req, const struct sockaddr_in *d) {
    req[0] = 5, req[1] = 1, req[2] = 0, req[3] = 1;
    memcpy(req + 4, &d->sin_addr, 4);
    memcpy(req + 8, &d->sin_port, 2);
}

/* RFC 1928 §6 REP → errno, as the layer maps it */
static int rep_errno(unsigned char rep) {
    switch (rep) {
    case 2: return EACCES;
    case 3: return ENETUNREACH;
    case 4: return EHOSTUNREACH;
    case 5: return ECONNREFUSED;
    case 6: return ETIMEDOUT;
    default: return EPROTO;
    }
}

/* blocking native handshake: 0 or an errno */
static int socks_blocking(int fd, const struct sockaddr_in *d) {
    unsigned char b[32] = {5, 1, 0};
    if (write(fd, b, 3) != 3 || read_exact(fd, b, 2) || b[0] != 5 || b[1] != 0) return EPROTO;
    request(b, d);
    if (write(fd, b, 10) != 10 || read_exact(fd, b, 4) || b[0] != 5) return EPROTO;
    if (b[1] != 0) return rep_errno(b[1]);
    size_t rest = b[3] == 1 ? 6 : b[3] == 4 ? 18 : 0;
    if (b[3] == 3) {
        if (read_exact(fd, b, 1)) return EPROTO;
        rest = (size_t)b[0] + 2;
    }
    return rest && !read_exact(fd, b, rest) ? 0 : EPROTO;
}

/* ---------------------------------------------------------------- seq */

static const char MSG[16] = "soak-0123456789\n";

static int echo_blocking(int fd) {
    char b[16];
    if (write(fd, MSG, 16) != 16) return errno ? errno : EPIPE;
    if (read_exact(fd, (unsigned char *)b, 16)) return ECONNRESET;
    return memcmp(b, MSG, 16) ? -1 : 0;
}

static long rss_warm = -1;

static void run_seq(long n, long warm) {
    for (long i = 0; i < n; i++) {
        if (i == warm) rss_warm = rss_kib();
        const struct sockaddr_in *d = dest_of(i);
        uint64_t t0 = now_us();
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) { fail(i, errno); continue; }
        int e = 0;
        if (native) {
            if (connect(fd, (const struct sockaddr *)&proxy, sizeof proxy)) e = errno;
            else e = socks_blocking(fd, d);
        } else if (connect(fd, (const struct sockaddr *)d, sizeof *d)) {
            e = errno;
        }
        hs[hs_n++] = now_us() - t0;
        if (e) {
            fail(i, e);
            close(fd);
            continue;
        }
        if (fault_port && (i % 2)) wrong_n++; /* should have failed */
        int r = echo_blocking(fd);
        if (r) { wrong_n++; fail_n++; errs[r > 0 ? r & 255 : 0]++; }
        else ok_n++;
        close(fd);
    }
}

/* ---------------------------------------------------------------- conc */

enum { S_CONNECT, S_GREET, S_GREET_REPLY, S_REQ_REPLY, S_ECHO, S_DONE };
struct conn {
    int fd, state;
    long idx;
    uint64_t t0;
    unsigned char buf[32];
    int have;
};

static long hang_n;

static void conc_round(long n, long round) {
    struct conn *c = calloc((size_t)n, sizeof *c);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    long open_n = 0;
    for (long i = 0; i < n; i++) {
        c[i].idx = round * n + i;
        c[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (c[i].fd < 0) { fail(c[i].idx, errno); c[i].state = S_DONE; continue; }
        c[i].t0 = now_us();
        const struct sockaddr_in *to = native ? &proxy : dest_of(c[i].idx);
        int rc = connect(c[i].fd, (const struct sockaddr *)to, sizeof *to);
        if (rc && errno != EINPROGRESS) {
            hs[hs_n++] = now_us() - c[i].t0;
            fail(c[i].idx, errno);
            close(c[i].fd);
            c[i].state = S_DONE;
            continue;
        }
        c[i].state = S_CONNECT;
        struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = (uint64_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, c[i].fd, &ev);
        open_n++;
    }
    uint64_t end = now_us() + 60 * 1000000u;
    struct epoll_event evs[256];
    while (open_n > 0 && now_us() < end) {
        int k = epoll_wait(ep, evs, 256, 1000);
        if (k < 0 && errno == EINTR) continue;
        for (int j = 0; j < k; j++) {
            struct conn *x = &c[evs[j].data.u64];
            int e = 0, done = 0;
            struct epoll_event ev = {.data.u64 = evs[j].data.u64};
            switch (x->state) {
            case S_CONNECT: {
                socklen_t sl = sizeof e;
                getsockopt(x->fd, SOL_SOCKET, SO_ERROR, &e, &sl);
                if (e) break;
                if (native) {
                    unsigned char g[3] = {5, 1, 0};
                    if (write(x->fd, g, 3) != 3) { e = EPROTO; break; }
                    x->state = S_GREET_REPLY;
                    x->have = 0;
                    ev.events = EPOLLIN;
                } else {
                    hs[hs_n++] = now_us() - x->t0;
                    if (write(x->fd, MSG, 16) != 16) { e = errno ? errno : EPIPE; break; }
                    if (fault_port && (x->idx % 2)) wrong_n++;
                    x->state = S_ECHO;
                    x->have = 0;
                    ev.events = EPOLLIN;
                }
                epoll_ctl(ep, EPOLL_CTL_MOD, x->fd, &ev);
                break;
            }
            case S_GREET_REPLY:
            case S_REQ_REPLY:
            case S_ECHO: {
                int want = x->state == S_GREET_REPLY ? 2 : x->state == S_REQ_REPLY ? 10 : 16;
                ssize_t r = read(x->fd, x->buf + x->have, (size_t)(want - x->have));
                if (r < 0 && errno == EAGAIN) break;
                if (r <= 0) { e = r < 0 ? errno : ECONNRESET; break; }
                x->have += (int)r;
                if (x->have < want) break;
                x->have = 0;
                if (x->state == S_GREET_REPLY) {
                    if (x->buf[0] != 5 || x->buf[1] != 0) { e = EPROTO; break; }
                    unsigned char q[10];
                    request(q, dest_of(x->idx));
                    if (write(x->fd, q, 10) != 10) { e = EPROTO; break; }
                    x->state = S_REQ_REPLY;
                } else if (x->state == S_REQ_REPLY) {
                    /* microsocks and danted answer with an IPv4 BND (10 bytes) */
                    if (x->buf[0] != 5) { e = EPROTO; break; }
                    if (x->buf[1] != 0) { hs[hs_n++] = now_us() - x->t0; e = rep_errno(x->buf[1]); break; }
                    hs[hs_n++] = now_us() - x->t0;
                    if (fault_port && (x->idx % 2)) wrong_n++;
                    if (write(x->fd, MSG, 16) != 16) { e = EPIPE; break; }
                    x->state = S_ECHO;
                } else {
                    if (memcmp(x->buf, MSG, 16)) { e = -1; wrong_n++; break; }
                    ok_n++;
                    done = 1;
                }
                break;
            }
            }
            if (e || done) {
                if (e) {
                    if (x->state == S_CONNECT) hs[hs_n++] = now_us() - x->t0;
                    if (e > 0) fail(x->idx, e);
                    else fail_n++;
                }
                epoll_ctl(ep, EPOLL_CTL_DEL, x->fd, NULL);
                close(x->fd);
                x->state = S_DONE;
                open_n--;
            }
        }
    }
    for (long i = 0; i < n; i++)
        if (c[i].state != S_DONE) {
            hang_n++;
            close(c[i].fd);
        }
    close(ep);
    free(c);
}

/* ---------------------------------------------------------------- silent */

static int run_silent(const char *ip, int port) {
    struct sockaddr_in a;
    if (parse(ip, port, &a)) return 2;
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 4096)) {
        perror("soak silent: bind/listen");
        return 1;
    }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    /* accept and hold; drop the oldest when out of fds */
    for (;;) {
        int c = accept(l, NULL, NULL);
        if (c < 0 && (errno == EMFILE || errno == ENFILE)) { sleep(1); continue; }
    }
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "silent") == 0 && argc == 4) return run_silent(argv[2], atoi(argv[3]));
    if (argc < 2 || (strcmp(argv[1], "seq") && strcmp(argv[1], "conc"))) {
        fprintf(stderr, "usage: soak seq|conc [-s PROXY] [-n N] [-w WARM] [-r ROUNDS] [-f PORT] TARGET PORT | soak silent IP PORT\n");
        return 2;
    }
    int conc = strcmp(argv[1], "conc") == 0;
    long n = 1000, warm = 1000, rounds = 3;
    int opt;
    optind = 2;
    while ((opt = getopt(argc, argv, "s:n:w:r:f:")) != -1) {
        if (opt == 's') {
            char host[64];
            const char *colon = strrchr(optarg, ':');
            if (!colon || (size_t)(colon - optarg) >= sizeof host) return 2;
            memcpy(host, optarg, (size_t)(colon - optarg));
            host[colon - optarg] = 0;
            if (parse(host, atoi(colon + 1), &proxy)) return 2;
            native = 1;
        } else if (opt == 'n') n = atol(optarg);
        else if (opt == 'w') warm = atol(optarg);
        else if (opt == 'r') rounds = atol(optarg);
        else if (opt == 'f') fault_port = atoi(optarg);
        else return 2;
    }
    if (argc - optind != 2 || n < 1 || n > 100000 || rounds < 1 || rounds > 20) return 2;
    if (parse(argv[optind], atoi(argv[optind + 1]), &target)) return 2;
    parse(argv[optind], fault_port, &closed_target);
    signal(SIGPIPE, SIG_IGN);
    alarm(300);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < (rlim_t)n + 64) {
        rl.rlim_cur = rl.rlim_max < (rlim_t)n + 64 ? rl.rlim_max : (rlim_t)n + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    long total = conc ? n * rounds : n;
    hs = calloc((size_t)total, sizeof *hs);
    int fds_before = count_fds();
    long rss_start = rss_kib();
    uint64_t t0 = now_us();
    if (conc) {
        for (long r = 0; r < rounds; r++) {
            conc_round(n, r);
            if (r == 0) rss_warm = rss_kib();
        }
    } else {
        run_seq(n, warm < n ? warm : n / 2);
    }
    uint64_t t1 = now_us();
    int fds_after = count_fds();
    long rss_end = rss_kib();
    qsort(hs, (size_t)hs_n, sizeof *hs, cmp_u64);
    printf("mode=%s native=%d n=%ld ok=%ld fail=%ld wrong=%ld hang=%ld fds_before=%d fds_after=%d "
           "rss_start_kib=%ld rss_warm_kib=%ld rss_end_kib=%ld rss_growth_kib=%ld hs_n=%ld "
           "hs_median_us=%llu hs_p99_us=%llu hs_max_us=%llu total_ms=%.1f errs=",
           conc ? "conc" : "seq", native, total, ok_n, fail_n, wrong_n, hang_n, fds_before, fds_after,
           rss_start, rss_warm, rss_end, rss_end - rss_warm, hs_n,
           hs_n ? (unsigned long long)hs[hs_n / 2] : 0ull,
           hs_n ? (unsigned long long)hs[hs_n * 99 / 100] : 0ull,
           hs_n ? (unsigned long long)hs[hs_n - 1] : 0ull, (double)(t1 - t0) / 1e3);
    int any = 0;
    for (int i = 0; i < 256; i++)
        if (errs[i]) { printf("%s%s:%d", any ? "," : "", i ? strerrorname_np(i) : "WRONG-BYTES", errs[i]); any = 1; }
    printf("%s\n", any ? "" : "none");
    return wrong_n || hang_n || fds_after != fds_before ? 1 : 0;
}
