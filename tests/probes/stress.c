/* stress MODE ...: the layer under fire from the rest of the process (tests/stress.rs).
 *
 *   stress kernel
 *       No layer, no proxy: what the kernel itself does when a signal interrupts a
 *       blocking connect. A listener on 127.0.0.1 with listen(fd, 0) and one queued
 *       connection has a full accept queue, so the next SYN is dropped and the connect
 *       waits in SYN_SENT until the retransmit ~1 s later (the queue is freed after
 *       300 ms). Cases (one line each, `CASE key=value ...`):
 *         norestart   handler without SA_RESTART, one SIGALRM after SIG_MS: first
 *                     connect, then a second blocking connect, then a third
 *         nonblock    as norestart, then O_NONBLOCK: connect while still in SYN_SENT,
 *                     poll for POLLOUT, SO_ERROR, connect, connect
 *         restart     handler with SA_RESTART, SIGALRM every 5 ms: one connect
 *         sndtimeo    as restart, but SO_SNDTIMEO 5 s on the socket
 *         repeat      no SA_RESTART, SIGALRM every 2 ms: connect until it returns 0
 *
 *   stress signals HOST PORT SIG_MS N
 *       The same cases through whatever makes connect slow (the layer and a slow proxy),
 *       with the same output, SIG_MS being when the one-shot signal comes; then N
 *       connects with a SIGALRM every 1-5 ms, without and with SA_RESTART (`loop_*`
 *       lines), each followed by getpeername and an echo. The HOST:PORT is an echo
 *       server; every connection writes a line and must read the same line back.
 *
 *   stress storm HOST PORT SECONDS
 *       8 "strict" threads connect sockets created before the storm (fds >= 4000 that
 *       nothing else touches), 8 "victim" threads connect sockets created as they go,
 *       while other threads fork (the child connects and exits), fork+exec this program
 *       in `child` mode, and close / close_range / dup2 / dup3 over the victims' fds
 *       (/dev/null or a fresh unconnected socket put over them). Strict connections must
 *       all succeed with getpeername = HOST:PORT and an intact echo; victims may fail
 *       only with errnos the fd games explain and must never read bytes that are not
 *       the probe's own (SOCKS5 bytes in a stream would be). Then every fd the run made
 *       is closed and /proc/self/fd must hold what it did at the start.
 *
 *   stress replace HOST PORT
 *       A blocking connect through a slow proxy while another thread, 60 ms in, puts an
 *       established connection (to the same echo server) on its fd number with dup2, then
 *       echoes a line on that connection. The interrupted connect must fail (EBADF) and
 *       must not have written to or read from the connection now on its number: the
 *       line comes back whole (`replace connect=EBADF other_echo=0`).
 *
 *   stress child HOST PORT
 *       One blocking connect and echo; exit status 0 on success.
 *
 * Every wait is bounded (poll with timeouts, alarm watchdogs); output is key=value lines.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *en(int e) { return e ? strerrorname_np(e) : "0"; }
static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static struct sockaddr_in dst;
static char self_path[4096];

/* "fd=link,fd=link..." of the open fds (the directory's own fd left out) */
static void list_fds(char *out, size_t cap) {
    out[0] = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d)) continue;
        char p[64], link[128];
        snprintf(p, sizeof p, "/proc/self/fd/%d", atoi(e->d_name));
        ssize_t l = readlink(p, link, sizeof link - 1);
        link[l > 0 ? l : 0] = 0;
        size_t n = strlen(out);
        if (n + 64 < cap) snprintf(out + n, cap - n, "%s%s=%.40s", n ? "," : "", e->d_name, link);
    }
    closedir(d);
}

static int count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the directory's own fd */
}

/* ------------------------------------------------------------------ signals */

static volatile sig_atomic_t hits;
static void on_alrm(int s) { (void)s; hits++; }

static void handler(int restart) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alrm;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
}

static void itimer(int first_us, int every_us) {
    struct itimerval it = {{every_us / 1000000, every_us % 1000000},
                           {first_us / 1000000, first_us % 1000000}};
    setitimer(ITIMER_REAL, &it, NULL);
}

static int conn_rc(int fd) {
    int rc = connect(fd, (struct sockaddr *)&dst, sizeof dst);
    return rc == 0 ? 0 : errno;
}

/* write `line` and read it back (EINTR retried, 5 s bound): 0 or an errno / -1 for
 * wrong bytes. */
static int echo(int fd, const char *line) {
    size_t len = strlen(line), off = 0;
    double end = now_ms() + 5000;
    while (off < len) {
        ssize_t w = write(fd, line + off, len - off);
        if (w < 0 && (errno == EINTR || errno == EAGAIN)) {
            struct pollfd p = {fd, POLLOUT, 0};
            if (now_ms() > end) return ETIMEDOUT;
            poll(&p, 1, 100);
            continue;
        }
        if (w <= 0) return w < 0 ? errno : EPIPE;
        off += (size_t)w;
    }
    char buf[256];
    off = 0;
    while (off < len) {
        if (now_ms() > end) return ETIMEDOUT;
        struct pollfd p = {fd, POLLIN, 0};
        int pr = poll(&p, 1, 100);
        if (pr <= 0) continue;
        ssize_t r = read(fd, buf + off, len - off);
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (r < 0) return errno;
        if (r == 0) return ECONNRESET;
        off += (size_t)r;
    }
    return memcmp(buf, line, len) == 0 ? 0 : -1;
}

static int peer_is_dst(int fd) {
    struct sockaddr_in p;
    socklen_t l = sizeof p;
    if (getpeername(fd, (struct sockaddr *)&p, &l) != 0) return errno;
    return (p.sin_addr.s_addr == dst.sin_addr.s_addr && p.sin_port == dst.sin_port) ? 0 : -1;
}

/* The one-shot and periodic cases shared by `kernel` and `signals`. `before` runs
 * between socket() and the first connect (the kernel mode fills the accept queue). */
static void cases(int sig_ms, void (*before)(void), void (*after)(void)) {
    int fd, e, e2, e3;
    double t0;

    /* norestart: EINTR, then a second blocking connect waits, then EISCONN */
    handler(0);
    hits = 0;
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (before) before();
    itimer(sig_ms * 1000, 0);
    t0 = now_ms();
    e = conn_rc(fd);
    double t1 = now_ms() - t0;
    itimer(0, 0);
    e2 = e ? conn_rc(fd) : -1;
    double t2 = now_ms() - t0;
    e3 = conn_rc(fd);
    printf("norestart first=%s first_ms=%.0f second=%s second_ms=%.0f third=%s hits=%d peer=%s\n",
           en(e), t1, e2 == -1 ? "none" : en(e2), t2, en(e3), (int)hits, en(peer_is_dst(fd)));
    if (after) after();
    close(fd);

    /* nonblock: EINTR, then O_NONBLOCK: EALREADY while connecting, POLLOUT, SO_ERROR,
     * connect twice */
    handler(0);
    hits = 0;
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (before) before();
    itimer(sig_ms * 1000, 0);
    e = conn_rc(fd);
    itimer(0, 0);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    e2 = conn_rc(fd);
    struct pollfd p = {fd, POLLOUT, 0};
    int pr = poll(&p, 1, 5000);
    int soerr = -1;
    socklen_t sl = sizeof soerr;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    e3 = conn_rc(fd);
    int e4 = conn_rc(fd);
    printf("nonblock first=%s second=%s poll=%d revents=%x soerr=%s third=%s fourth=%s peer=%s\n",
           en(e), en(e2), pr, p.revents, en(soerr), en(e3), en(e4), en(peer_is_dst(fd)));
    if (after) after();
    close(fd);

    /* restart: SA_RESTART and a signal every 5 ms: connect is restarted, returns 0 */
    handler(1);
    hits = 0;
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (before) before();
    itimer(5000, 5000);
    e = conn_rc(fd);
    itimer(0, 0);
    printf("restart first=%s hits=%d second=%s peer=%s\n", en(e), (int)hits, en(conn_rc(fd)),
           en(peer_is_dst(fd)));
    if (after) after();
    close(fd);

    /* sndtimeo: SA_RESTART, but a socket with SO_SNDTIMEO is never restarted */
    handler(1);
    hits = 0;
    fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (before) before();
    itimer(sig_ms * 1000, 0);
    e = conn_rc(fd);
    itimer(0, 0);
    e2 = e ? conn_rc(fd) : -1;
    printf("sndtimeo first=%s second=%s third=%s hits=%d peer=%s\n", en(e),
           e2 == -1 ? "none" : en(e2), en(conn_rc(fd)), (int)hits, en(peer_is_dst(fd)));
    if (after) after();
    close(fd);

    /* repeat: no SA_RESTART, a signal every 2 ms: EINTR ... EINTR 0, then EISCONN */
    handler(0);
    hits = 0;
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (before) before();
    itimer(2000, 2000);
    int calls = 0, eintr = 0, other = 0, last = -1;
    for (calls = 1; calls <= 5000; calls++) {
        last = conn_rc(fd);
        if (last == EINTR) eintr++;
        else if (last) other++;
        if (last != EINTR) break;
    }
    itimer(0, 0);
    printf("repeat calls=%d eintr=%d other=%d last=%s then=%s hits=%d peer=%s\n", calls, eintr,
           other, en(last), en(conn_rc(fd)), (int)hits, en(peer_is_dst(fd)));
    if (after) after();
    close(fd);
    signal(SIGALRM, SIG_IGN);
}

/* kernel mode: a listener whose accept queue is full */
static int klisten, kfill;
static void *kaccept(void *arg) {
    (void)arg;
    usleep(300000);
    int c = accept(klisten, NULL, NULL);
    if (c >= 0) close(c);
    return NULL;
}
static pthread_t kthr;
static void kernel_before(void) {
    klisten = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(klisten, (struct sockaddr *)&a, sizeof a);
    listen(klisten, 0);
    socklen_t l = sizeof dst;
    getsockname(klisten, (struct sockaddr *)&dst, &l);
    kfill = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(kfill, (struct sockaddr *)&dst, sizeof dst) != 0) {
        printf("fill connect failed: %s\n", en(errno));
        exit(1);
    }
    pthread_create(&kthr, NULL, kaccept, NULL);
}
static void kernel_after(void) {
    pthread_join(kthr, NULL);
    close(kfill);
    close(klisten);
}

/* signals mode: the loops */
static void signal_loop(const char *name, int restart, int n) {
    handler(restart);
    hits = 0;
    unsigned seed = 12345;
    int ok = 0, eintr = 0, bad = 0, max_calls = 0;
    char badwhat[200] = "";
    for (int i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        int us = 1000 + (int)(rand_r(&seed) % 4000);
        itimer(us, us);
        int calls, last = -1, seen_other = 0;
        for (calls = 1; calls <= 5000; calls++) {
            last = conn_rc(fd);
            if (last == EINTR) { eintr++; continue; }
            break;
        }
        if (last != 0 && !seen_other && !bad)
            snprintf(badwhat, sizeof badwhat, "conn %d: connect=%s after %d calls", i, en(last), calls);
        if (last != 0) { bad++; itimer(0, 0); close(fd); continue; }
        if (restart && calls != 1 && !bad) {
            snprintf(badwhat, sizeof badwhat, "conn %d: %d calls with SA_RESTART", i, calls);
            bad++;
        }
        int again = conn_rc(fd);
        int peer = peer_is_dst(fd);
        char line[64];
        snprintf(line, sizeof line, "sig-%s-%d-%u\n", name, i, rand_r(&seed));
        int ee = echo(fd, line);
        itimer(0, 0);
        if (again != EISCONN || peer != 0 || ee != 0) {
            if (!bad)
                snprintf(badwhat, sizeof badwhat, "conn %d: again=%s peer=%s echo=%s", i, en(again),
                         en(peer), ee == -1 ? "WRONG-BYTES" : en(ee));
            bad++;
        } else {
            ok++;
        }
        if (calls > max_calls) max_calls = calls;
        close(fd);
    }
    signal(SIGALRM, SIG_IGN);
    printf("loop_%s n=%d ok=%d bad=%d eintr=%d max_calls=%d hits=%d%s%s\n", name, n, ok, bad,
           eintr, max_calls, (int)hits, bad ? " first_bad=" : "", badwhat);
}

/* ------------------------------------------------------------------ storm */

#define STRICT 8
#define VICTIMS 8
#define PER_STRICT 12
#define STRICT_BASE 4000

static atomic_int stop_flag;
static int strict_fd[STRICT][PER_STRICT];
static int strict_nb[STRICT][PER_STRICT];
static pthread_mutex_t vlock[VICTIMS];
static int vfd[VICTIMS]; /* published fd of each victim, -1 when none */
static int devnull;
/* Victims create sockets under the read side, the games run under the write side and
 * put /dev/null on every number they closed before letting go: a number is never
 * reused by another victim while its owner still uses it (that would be the program
 * sharing one socket between two threads, not the layer's doing). */
static pthread_rwlock_t fdlock = PTHREAD_RWLOCK_INITIALIZER;

/* results */
static atomic_int strict_ok, strict_bad, victim_ok, victim_garbled, victim_hang;
static atomic_int victim_err[200];
static atomic_int forks_ok, forks_bad, execs_ok, execs_bad, games;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

/* Connects fd (blocking or not) and echoes `line`. 0: success with the right peer and
 * bytes; >0 errno; -1 wrong bytes; -2 a wait ran past its bound (hang); -3 the peer
 * is wrong. Reads that carry bytes no message has count as -1. */
static int full_conn(int fd, int nb, const char *line) {
    int e = conn_rc(fd);
    if (e == EINPROGRESS && nb) {
        struct pollfd p = {fd, POLLOUT, 0};
        int pr = poll(&p, 1, 8000);
        if (pr == 0) return -2;
        if (pr < 0) return errno;
        if (p.revents & POLLNVAL) return EBADF;
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0) return errno;
        if (soerr) return soerr;
        e = 0;
    }
    if (e) return e;
    int peer = peer_is_dst(fd);
    if (peer > 0) return peer;
    if (peer < 0) return -3;
    size_t len = strlen(line), off = 0;
    double end = now_ms() + 8000;
    while (off < len) {
        ssize_t w = send(fd, line + off, len - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EAGAIN) {
            struct pollfd p = {fd, POLLOUT, 0};
            if (now_ms() > end) return -2;
            poll(&p, 1, 100);
            continue;
        }
        if (w < 0) return errno;
        off += (size_t)w;
    }
    char buf[128];
    off = 0;
    while (off < len) {
        if (now_ms() > end) return -2;
        struct pollfd p = {fd, POLLIN, 0};
        int pr = poll(&p, 1, 100);
        if (pr < 0) return errno;
        if (pr == 0) continue;
        if (p.revents & POLLNVAL) return EBADF;
        ssize_t r = recv(fd, buf + off, len - off, MSG_DONTWAIT);
        if (r < 0 && errno == EAGAIN) continue;
        if (r < 0) return errno;
        if (r == 0) return ECONNRESET;
        for (ssize_t i = 0; i < r; i++) {
            unsigned char c = (unsigned char)buf[off + i];
            /* messages are [A-Za-z0-9-] and '\n'; SOCKS5 bytes are not */
            if (!(c == '\n' || c == '-' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                  (c >= 'A' && c <= 'Z')))
                return -1;
        }
        off += (size_t)r;
    }
    return memcmp(buf, line, len) == 0 ? 0 : -4; /* -4: another connection's bytes */
}

static void *strict_thread(void *arg) {
    int t = (int)(long)arg;
    for (int i = 0; i < PER_STRICT; i++) {
        char line[64];
        snprintf(line, sizeof line, "S%d-%d-%ld\n", t, i, random());
        int r = full_conn(strict_fd[t][i], strict_nb[t][i], line);
        if (r == 0) {
            strict_ok++;
        } else {
            strict_bad++;
            pthread_mutex_lock(&out_lock);
            printf("strict_fail thread=%d conn=%d nonblock=%d result=%s\n", t, i, strict_nb[t][i],
                   r > 0 ? en(r) : r == -1 ? "GARBLED" : r == -2 ? "HANG" : r == -3 ? "WRONG-PEER" : "FOREIGN");
            pthread_mutex_unlock(&out_lock);
        }
        close(strict_fd[t][i]);
        strict_fd[t][i] = -1;
    }
    return NULL;
}

static void *victim_thread(void *arg) {
    int t = (int)(long)arg;
    for (int i = 0; !atomic_load(&stop_flag) && i < 100000; i++) {
        int nb = i % 2;
        pthread_rwlock_rdlock(&fdlock);
        int fd = socket(AF_INET, SOCK_STREAM | (nb ? SOCK_NONBLOCK : 0), 0);
        if (fd < 0) { pthread_rwlock_unlock(&fdlock); victim_err[errno % 200]++; continue; }
        pthread_mutex_lock(&vlock[t]);
        vfd[t] = fd;
        pthread_mutex_unlock(&vlock[t]);
        pthread_rwlock_unlock(&fdlock);
        char line[64];
        snprintf(line, sizeof line, "V%d-%d-%ld\n", t, i, random());
        int r = full_conn(fd, nb, line);
        if (r == 0 || r == -4) victim_ok++;
        else if (r == -1) victim_garbled++;
        else if (r == -2) victim_hang++;
        else if (r == -3) victim_err[0]++; /* wrong peer: counted as errno 0 */
        else victim_err[r % 200]++;
        pthread_mutex_lock(&vlock[t]);
        vfd[t] = -1;
        close(fd);
        pthread_mutex_unlock(&vlock[t]);
    }
    return NULL;
}

static void *chaos_thread(void *arg) {
    (void)arg;
    unsigned seed = 777;
    while (!atomic_load(&stop_flag)) {
        usleep(2000 + rand_r(&seed) % 8000);
        int t = (int)(rand_r(&seed) % VICTIMS);
        pthread_rwlock_wrlock(&fdlock);
        pthread_mutex_lock(&vlock[t]);
        int fd = vfd[t];
        if (fd >= 0) {
            games++;
            switch (rand_r(&seed) % 5) {
            case 0: close(fd); dup2(devnull, fd); break;
            case 1: close_range((unsigned)fd, (unsigned)fd, 0); dup2(devnull, fd); break;
            case 2: dup2(devnull, fd); break;
            case 3: {
                int s = socket(AF_INET, SOCK_STREAM, 0);
                if (s >= 0) { dup3(s, fd, O_CLOEXEC); close(s); }
                break;
            }
            case 4: {
                /* a range over this victim and the next-numbered fds of other victims */
                int hi = fd;
                for (int k = 0; k < VICTIMS; k++)
                    if (k != t && vfd[k] > fd && vfd[k] <= fd + 3) hi = vfd[k] > hi ? vfd[k] : hi;
                /* only numbers every one of which is a victim's, or the victim's alone */
                int all = 1;
                for (int n = fd + 1; n <= hi; n++) {
                    int mine = 0;
                    for (int k = 0; k < VICTIMS; k++) if (vfd[k] == n) mine = 1;
                    if (!mine) all = 0;
                }
                if (!all) hi = fd;
                close_range((unsigned)fd, (unsigned)hi, 0);
                for (int n = fd; n <= hi; n++) dup2(devnull, n);
                break;
            }
            }
        }
        pthread_mutex_unlock(&vlock[t]);
        pthread_rwlock_unlock(&fdlock);
    }
    return NULL;
}

static int child_conn(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 2;
    char line[64];
    snprintf(line, sizeof line, "C%d-%ld\n", (int)getpid(), (long)time(NULL));
    int r = full_conn(fd, 0, line);
    close(fd);
    return r == 0 ? 0 : 1;
}

static int reap(pid_t pid) {
    int st = 0;
    for (int i = 0; i < 1000; i++) { /* 10 s */
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return 99;
}

static void *fork_thread(void *arg) {
    (void)arg;
    while (!atomic_load(&stop_flag)) {
        pid_t pid = fork();
        if (pid == 0) {
            alarm(10);
            _exit(child_conn());
        }
        if (pid < 0) { forks_bad++; usleep(10000); continue; }
        int rc = reap(pid);
        if (rc == 0) forks_ok++;
        else {
            forks_bad++;
            pthread_mutex_lock(&out_lock);
            printf("fork_child_exit=%d\n", rc);
            pthread_mutex_unlock(&out_lock);
        }
    }
    return NULL;
}

static char *host_arg, *port_arg;
extern char **environ;
static void *exec_thread(void *arg) {
    (void)arg;
    while (!atomic_load(&stop_flag)) {
        pid_t pid = fork();
        if (pid == 0) {
            char *argv[] = {self_path, "child", host_arg, port_arg, NULL};
            execve(self_path, argv, environ);
            _exit(3);
        }
        if (pid < 0) { execs_bad++; usleep(10000); continue; }
        int rc = reap(pid);
        if (rc == 0) execs_ok++;
        else {
            execs_bad++;
            pthread_mutex_lock(&out_lock);
            printf("exec_child_exit=%d\n", rc);
            pthread_mutex_unlock(&out_lock);
        }
    }
    return NULL;
}

static int storm(int seconds) {
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < STRICT_BASE + 200 && rl.rlim_max >= STRICT_BASE + 200) {
        rl.rlim_cur = STRICT_BASE + 200;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int before = count_fds();
    static int open_before[65536];
    {
        DIR *d0 = opendir("/proc/self/fd");
        struct dirent *e0;
        while (d0 && (e0 = readdir(d0)))
            if (e0->d_name[0] != '.' && atoi(e0->d_name) < 65536) open_before[atoi(e0->d_name)] = 1;
        if (d0) closedir(d0);
    }
    static char list_before[4096], list_after[4096];
    list_fds(list_before, sizeof list_before);
    devnull = open("/dev/null", O_RDWR);
    for (int t = 0; t < STRICT; t++)
        for (int i = 0; i < PER_STRICT; i++) {
            strict_nb[t][i] = (t + i) % 2;
            int s = socket(AF_INET, SOCK_STREAM | (strict_nb[t][i] ? SOCK_NONBLOCK : 0), 0);
            int target = STRICT_BASE + t * PER_STRICT + i;
            if (s < 0 || dup2(s, target) != target) {
                printf("setup failed: %s\n", en(errno));
                return 1;
            }
            close(s);
            strict_fd[t][i] = target;
        }
    for (int t = 0; t < VICTIMS; t++) {
        pthread_mutex_init(&vlock[t], NULL);
        vfd[t] = -1;
    }
    pthread_t th[STRICT + VICTIMS + 3];
    int n = 0;
    double t0 = now_ms();
    pthread_create(&th[n++], NULL, chaos_thread, NULL);
    pthread_create(&th[n++], NULL, fork_thread, NULL);
    pthread_create(&th[n++], NULL, exec_thread, NULL);
    for (long t = 0; t < VICTIMS; t++) pthread_create(&th[n++], NULL, victim_thread, (void *)t);
    pthread_t st[STRICT];
    /* the strict threads start when the storm is under way */
    usleep(200000);
    for (long t = 0; t < STRICT; t++) pthread_create(&st[t], NULL, strict_thread, (void *)t);
    for (int t = 0; t < STRICT; t++) pthread_join(st[t], NULL);
    double strict_ms = now_ms() - t0;
    while (now_ms() - t0 < seconds * 1000.0) usleep(20000);
    atomic_store(&stop_flag, 1);
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    double total_ms = now_ms() - t0;
    /* Sweep what the games left (a dup2 onto a number its victim had just closed):
     * each must be /dev/null or a socket, i.e. made by this program, not the layer. */
    close(devnull);
    int swept = 0, strange = 0;
    char strange_what[256] = "";
    DIR *d = opendir("/proc/self/fd");
    int dfd = d ? dirfd(d) : -1;
    struct dirent *e;
    int list[4096], nl = 0;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.' && atoi(e->d_name) > 2 && atoi(e->d_name) != dfd && nl < 4096)
            list[nl++] = atoi(e->d_name);
    if (d) closedir(d);
    (void)list;
    int after_raw = count_fds();
    printf("rawfds before=%d after=%d\n", before, after_raw);
    for (int i = 0; i < nl; i++) {
        /* fds that existed before the storm are < devnull's number */
        char p[64], link[256];
        snprintf(p, sizeof p, "/proc/self/fd/%d", list[i]);
        ssize_t l = readlink(p, link, sizeof link - 1);
        if (l < 0) continue;
        link[l] = 0;
        if (list[i] < 65536 && open_before[list[i]] && list[i] != devnull) continue;
        if (strncmp(link, "socket:", 7) == 0 || strcmp(link, "/dev/null") == 0) {
            close(list[i]);
            swept++;
        } else {
            strange++;
            if (strlen(strange_what) < 180)
                snprintf(strange_what + strlen(strange_what), sizeof strange_what - strlen(strange_what),
                         " %d=%.40s", list[i], link);
        }
    }
    int after = count_fds();
    printf("storm seconds=%.1f strict_ms=%.0f strict_ok=%d strict_bad=%d victim_ok=%d victim_garbled=%d "
           "victim_hang=%d games=%d forks_ok=%d forks_bad=%d execs_ok=%d execs_bad=%d swept=%d strange=%d%s\n",
           total_ms / 1e3, strict_ms, strict_ok, strict_bad, victim_ok, victim_garbled, victim_hang, games,
           forks_ok, forks_bad, execs_ok, execs_bad, swept, strange, strange_what);
    printf("victim_errors");
    for (int i = 0; i < 200; i++)
        if (victim_err[i]) printf(" %s=%d", i ? en(i) : "WRONG-PEER", victim_err[i]);
    list_fds(list_after, sizeof list_after);
    printf("\nfds before=%d after=%d\nfdlist before=%s\nfdlist after=%s\n", before, after, list_before,
           list_after);
    return 0;
}

/* ------------------------------------------------------------------ replace */

static int rep_victim, rep_other, rep_echo = -9;
static void *replacer(void *arg) {
    (void)arg;
    usleep(60000);
    dup2(rep_other, rep_victim);
    usleep(100000);
    rep_echo = echo(rep_other, "line-on-the-other-connection\n");
    return NULL;
}

static int replace_mode(void) {
    rep_other = socket(AF_INET, SOCK_STREAM, 0);
    if (conn_rc(rep_other) != 0) { printf("other connect failed: %s\n", en(errno)); return 1; }
    rep_victim = socket(AF_INET, SOCK_STREAM, 0);
    pthread_t th;
    pthread_create(&th, NULL, replacer, NULL);
    int e = conn_rc(rep_victim);
    pthread_join(th, NULL);
    printf("replace connect=%s other_echo=%s\n", en(e), rep_echo == -1 ? "WRONG-BYTES" : en(rep_echo));
    return 0;
}

/* ------------------------------------------------------------------ main */

static int parse_dst(const char *host, const char *port) {
    memset(&dst, 0, sizeof dst);
    dst.sin_family = AF_INET;
    dst.sin_port = htons((unsigned short)atoi(port));
    return inet_pton(AF_INET, host, &dst.sin_addr) == 1 ? 0 : -1;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    ssize_t l = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (l > 0) self_path[l] = 0;
    if (argc >= 2 && strcmp(argv[1], "kernel") == 0) {
        alarm(60);
        cases(100, kernel_before, kernel_after);
        printf("alive\n");
        return 0;
    }
    if (argc == 6 && strcmp(argv[1], "signals") == 0) {
        if (parse_dst(argv[2], argv[3])) return 2;
        /* SIGALRM is the test's own: the run's time bound is the caller's */
        cases(atoi(argv[4]), NULL, NULL);
        signal_loop("norestart", 0, atoi(argv[5]));
        signal_loop("restart", 1, atoi(argv[5]));
        printf("alive\n");
        return 0;
    }
    if (argc == 5 && strcmp(argv[1], "storm") == 0) {
        if (parse_dst(argv[2], argv[3])) return 2;
        host_arg = argv[2];
        port_arg = argv[3];
        alarm(atoi(argv[4]) + 40);
        int rc = storm(atoi(argv[4]));
        printf("alive\n");
        return rc;
    }
    if (argc == 4 && strcmp(argv[1], "replace") == 0) {
        if (parse_dst(argv[2], argv[3])) return 2;
        alarm(20);
        int rc = replace_mode();
        printf("alive\n");
        return rc;
    }
    if (argc == 4 && strcmp(argv[1], "child") == 0) {
        if (parse_dst(argv[2], argv[3])) return 2;
        alarm(10);
        return child_conn();
    }
    fprintf(stderr, "usage: stress kernel | signals HOST PORT SIG_MS N | storm HOST PORT SECONDS | child HOST PORT\n");
    return 2;
}
