/* guard MODE ...: connects the preload layer cannot see, for tests/guard.rs.
 *
 * Built twice: `-static` (no loader, so no LD_PRELOAD: even glibc's syscall() and
 * connect() are invisible to the layer) and dynamic, where the `asm` modes use an inline
 * `syscall` instruction that no interposed function can catch. HOST is a numeric IPv4 or
 * IPv6 address of an echo server; every wait is bounded; the last line is `alive`.
 *
 *   raw HOST PORT MSG        syscall(SYS_connect) on a blocking socket of HOST's family,
 *                            then getpeername and a line echo:
 *                            `connect=0 peer=ADDR echo=ok`
 *   asm HOST PORT MSG        the same with an inline-asm syscall for connect
 *   v6sock HOST PORT MSG     raw connect of an AF_INET6 socket to the v4-mapped form of
 *                            the IPv4 HOST (the socket family differs from the target's)
 *   twice HOST PORT MSG      non-blocking socket: connect, poll, connect again, and a
 *                            third time, then getpeername and echo (the stream must be
 *                            intact: no second handshake may have been injected):
 *                            `connect1=.. connect2=.. connect3=.. peer=.. echo=ok`
 *   twice-asm HOST PORT MSG  the same with inline-asm connects
 *   iouring                  `io_uring_setup=ENOSYS` (or `=fd` when it works)
 *   nondumpable HOST PORT MSG  prctl(PR_SET_DUMPABLE, 0), then as `raw`
 *   signals HOST PORT N R    SIGALRM every 5 ms (setitimer; SA_RESTART if R is 1) during
 *                            N raw blocking connects, each handled as the kernel's
 *                            semantics require (EINTR: connect again; EALREADY: poll,
 *                            then connect again; EISCONN after that: connected), then
 *                            getpeername (EINTR retried and counted) and echo:
 *                            `signals ok=N bad=0 eintr=K peer_eintr=J alarms=A`
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *en(int e) { return e ? strerrorname_np(e) : "0"; }

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

static int finish(int rc) {
    out("alive");
    return rc;
}

/* HOST PORT into a sockaddr; returns its length, 0 if HOST is not numeric. */
static socklen_t parse(const char *host, const char *port, struct sockaddr_storage *ss) {
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((unsigned short)atoi(port));
        return sizeof *a4;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((unsigned short)atoi(port));
        return sizeof *a6;
    }
    return 0;
}

static void fmt_addr(const struct sockaddr_storage *ss, char *buf, size_t len) {
    char host[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        snprintf(buf, len, "%s:%d", host, ntohs(a->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        snprintf(buf, len, "[%s]:%d", host, ntohs(a->sin6_port));
    } else {
        snprintf(buf, len, "family%d", ss->ss_family);
    }
}

/* connect(2) without libc: the `syscall` instruction, returning -errno. */
static long asm_connect(int fd, const struct sockaddr *sa, socklen_t len) {
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"((long)SYS_connect), "D"((long)fd), "S"((long)sa), "d"((long)len)
                     : "rcx", "r11", "memory");
    return ret;
}

/* connect by the chosen route; 0 or an errno. */
static int do_connect(int use_asm, int fd, const struct sockaddr_storage *ss, socklen_t len) {
    if (use_asm) {
        long r = asm_connect(fd, (const struct sockaddr *)ss, len);
        return r < 0 ? (int)-r : 0;
    }
    long r = syscall(SYS_connect, fd, (const struct sockaddr *)ss, len);
    return r < 0 ? errno : 0;
}

/* `peer=ADDR` of fd into buf (or `peer=ERRNO`). */
static void peer_of(int fd, char *buf, size_t len) {
    struct sockaddr_storage p;
    socklen_t pl = sizeof p;
    memset(&p, 0, sizeof p);
    if (getpeername(fd, (struct sockaddr *)&p, &pl) != 0) {
        snprintf(buf, len, "%s", en(errno));
        return;
    }
    fmt_addr(&p, buf, len);
}

/* peer_of, retrying EINTR (counted in *eintr). Under the guard a trapped getpeername
 * that a signal interrupts before the supervisor has picked it up is restarted by the
 * kernel for an SA_RESTART handler and fails with EINTR for any other (the
 * notification wait is interruptible until received: seccomp_unotify(2)). */
static void peer_retrying(int fd, char *buf, size_t len, int *eintr) {
    for (int k = 0; k < 1000; k++) {
        peer_of(fd, buf, len);
        if (strcmp(buf, "EINTR") != 0)
            return;
        (*eintr)++;
    }
}

/* Sends MSG\n and reads the same line back (EINTR retried, 5 s); "ok" or what failed. */
static const char *echo(int fd, const char *msg) {
    static char why[64];
    char line[512], buf[512];
    snprintf(line, sizeof line, "%s\n", msg);
    size_t len = strlen(line), sent = 0, have = 0;
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    while (sent < len) {
        ssize_t w = write(fd, line + sent, len - sent);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            if (poll(&p, 1, 5000) == 1)
                continue;
        }
        if (w < 0) {
            snprintf(why, sizeof why, "write-%s", en(errno));
            return why;
        }
        sent += (size_t)w;
    }
    while (have < len) {
        ssize_t k = read(fd, buf + have, len - have);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && errno == EAGAIN) {
            struct pollfd p = {.fd = fd, .events = POLLIN};
            if (poll(&p, 1, 5000) == 1)
                continue;
        }
        if (k == 0)
            return "eof";
        if (k < 0) {
            snprintf(why, sizeof why, "read-%s", en(errno));
            return why;
        }
        have += (size_t)k;
    }
    return memcmp(buf, line, len) == 0 ? "ok" : "corrupt";
}

static int mode_raw(int use_asm, int v6sock, char **argv) {
    struct sockaddr_storage ss;
    socklen_t len = parse(argv[0], argv[1], &ss);
    if (!len) {
        out("usage: numeric HOST");
        return finish(2);
    }
    if (v6sock) {
        if (ss.ss_family != AF_INET) {
            out("usage: v6sock needs an IPv4 HOST");
            return finish(2);
        }
        struct sockaddr_in v4 = *(struct sockaddr_in *)&ss;
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
        memset(&ss, 0, sizeof ss);
        a6->sin6_family = AF_INET6;
        a6->sin6_port = v4.sin_port;
        a6->sin6_addr.s6_addr[10] = 0xff;
        a6->sin6_addr.s6_addr[11] = 0xff;
        memcpy(&a6->sin6_addr.s6_addr[12], &v4.sin_addr, 4);
        len = sizeof *a6;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (fd < 0) {
        out("socket=%s", en(errno));
        return finish(1);
    }
    int e = do_connect(use_asm, fd, &ss, len);
    if (e) {
        out("connect=%s", en(e));
        return finish(1);
    }
    char peer[128];
    peer_of(fd, peer, sizeof peer);
    out("connect=0 peer=%s echo=%s", peer, echo(fd, argv[2]));
    close(fd);
    return finish(0);
}

static int mode_twice(int use_asm, char **argv) {
    struct sockaddr_storage ss;
    socklen_t len = parse(argv[0], argv[1], &ss);
    if (!len) {
        out("usage: numeric HOST");
        return finish(2);
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int e1 = do_connect(use_asm, fd, &ss, len);
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int ready = poll(&p, 1, 15000);
    int soerr = -1;
    socklen_t sl = sizeof soerr;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    int e2 = do_connect(use_asm, fd, &ss, len);
    int e3 = do_connect(use_asm, fd, &ss, len);
    char peer[128];
    peer_of(fd, peer, sizeof peer);
    out("connect1=%s ready=%d revents=%d so_error=%s", en(e1), ready, p.revents, en(soerr));
    out("connect2=%s connect3=%s", en(e2), en(e3));
    out("peer=%s echo=%s", peer, echo(fd, argv[2]));
    close(fd);
    return finish(0);
}

static int mode_iouring(void) {
    char params[120]; /* struct io_uring_params, zeroed */
    memset(params, 0, sizeof params);
    long r = syscall(SYS_io_uring_setup, 4, params);
    if (r < 0)
        out("io_uring_setup=%s", en(errno));
    else
        out("io_uring_setup=fd");
    return finish(0);
}

static volatile sig_atomic_t alarms;
static void on_alarm(int sig) {
    (void)sig;
    alarms++;
}

/* One connect that survives signals, with the kernel's rules for an interrupted connect
 * (connect(2): EINTR leaves it in progress; the next connect says EALREADY while it is,
 * EISCONN or 0 once it is done). Returns 0 or the errno; counts the EINTRs. */
static int connect_through_signals(int fd, const struct sockaddr_storage *ss, socklen_t len,
                                   int *eintr) {
    for (int tries = 0; tries < 1000; tries++) {
        int e = do_connect(0, fd, ss, len);
        if (e == 0 || (e == EISCONN && tries > 0))
            return 0;
        if (e == EINTR) {
            (*eintr)++;
            continue;
        }
        if (e == EALREADY || e == EINPROGRESS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int n = poll(&p, 1, 15000);
            if (n < 0 && errno == EINTR)
                continue;
            if (n != 1)
                return ETIMEDOUT;
            continue;
        }
        return e;
    }
    return ELOOP;
}

static int mode_signals(char **argv) {
    struct sockaddr_storage ss;
    socklen_t len = parse(argv[0], argv[1], &ss);
    int n = atoi(argv[2]), restart = atoi(argv[3]);
    if (!len || n <= 0 || n > 10000) {
        out("usage: signals HOST PORT N R");
        return finish(2);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {.it_interval = {.tv_usec = 5000}, .it_value = {.tv_usec = 5000}};
    setitimer(ITIMER_REAL, &it, NULL);
    char want[128];
    fmt_addr(&ss, want, sizeof want);
    int ok = 0, bad = 0, eintr = 0, peer_eintr = 0;
    char first[256] = "";
    for (int i = 0; i < n; i++) {
        int fd = socket(ss.ss_family, SOCK_STREAM, 0);
        int e = connect_through_signals(fd, &ss, len, &eintr);
        char peer[128] = "";
        const char *ech = "none";
        if (!e) {
            peer_retrying(fd, peer, sizeof peer, &peer_eintr);
            char msg[64];
            snprintf(msg, sizeof msg, "signal-round-%d", i);
            ech = echo(fd, msg);
        }
        if (!e && strcmp(peer, want) == 0 && strcmp(ech, "ok") == 0) {
            ok++;
        } else {
            bad++;
            if (!first[0])
                snprintf(first, sizeof first, "round=%d connect=%s peer=%s echo=%s", i, en(e),
                         peer, ech);
        }
        close(fd);
    }
    struct itimerval off;
    memset(&off, 0, sizeof off);
    setitimer(ITIMER_REAL, &off, NULL);
    /* A signal still pending must not interrupt the report's writes (no SA_RESTART). */
    sigset_t alrm;
    sigemptyset(&alrm);
    sigaddset(&alrm, SIGALRM);
    sigprocmask(SIG_BLOCK, &alrm, NULL);
    out("signals ok=%d bad=%d eintr=%d peer_eintr=%d alarms=%d", ok, bad, eintr, peer_eintr,
        (int)alarms);
    if (first[0])
        out("first_bad %s", first);
    return finish(bad ? 1 : 0);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODE ...\n", argv[0]);
        return 2;
    }
    const char *m = argv[1];
    char **a = argv + 2;
    int na = argc - 2;
    if ((strcmp(m, "raw") == 0 || strcmp(m, "asm") == 0 || strcmp(m, "v6sock") == 0) && na == 3)
        return mode_raw(strcmp(m, "asm") == 0, strcmp(m, "v6sock") == 0, a);
    if (strcmp(m, "twice") == 0 && na == 3)
        return mode_twice(0, a);
    if (strcmp(m, "twice-asm") == 0 && na == 3)
        return mode_twice(1, a);
    if (strcmp(m, "iouring") == 0)
        return mode_iouring();
    if (strcmp(m, "nondumpable") == 0 && na == 3) {
        int rc = prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        out("dumpable=%d rc=%d", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), rc);
        return mode_raw(0, 0, a);
    }
    if (strcmp(m, "signals") == 0 && na == 4)
        return mode_signals(a);
    fprintf(stderr, "usage: %s raw|asm|v6sock|twice|twice-asm|iouring|nondumpable|signals ...\n",
            argv[0]);
    return 2;
}
