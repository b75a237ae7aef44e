/* edges MODE [ARG] HOST PORT: fds and processes at the edges of the layer's view.
 *
 * HOST:PORT is an echo server. Modes print `key=value` lines the tests match; every
 * wait is bounded (poll timeouts, loop counts), and the last line is `alive`.
 *
 *   dup-pending KIND       duplicate a socket whose handshake is running
 *   dup-pending-close KIND the same, then close the original while still pending
 *   dup-established KIND   duplicate a connected socket
 *       KIND: dup dup2 dup3 fdupfd fdupfd-cloexec
 *   dup-pending-epoll      a duplicate of a pending socket, waited for with epoll (ET)
 *   dup2-onto-pending      dup2 a plain socket over a pending one
 *   close-pending KIND     close a pending socket (close close_range close_range-unshare
 *                          closefrom), reuse the number; close_range-cloexec keeps it
 *   close-established KIND the same on a connected socket
 *   vfork N / spawn N      N children (vfork+execve / posix_spawn with file actions)
 *                          each connecting through the layer, while two threads connect
 *   exec-clearenv / exec-keepenv   execve the child with an environment without / with
 *                          LD_PRELOAD (keepenv also sets a variable and uses execvp)
 *   child                  one blocking connect + echo; says whether the layer is loaded
 *   syscall-block / syscall-nonblock   connect with syscall(SYS_connect, ...)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static struct sockaddr_in dst;
static char target[64];

static const char *en(int e) { return e ? strerrorname_np(e) : "0"; }

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) if (e->d_name[0] != '.') n++;
    if (d) closedir(d);
    return n - 1; /* the directory's own fd */
}

/* TCP sockets of this network namespace that are connecting or connected
 * (SYN_SENT, ESTABLISHED): the probe is the only client in its namespace. */
static int tcp_live(void) {
    int n = 0;
    for (int v6 = 0; v6 < 2; v6++) {
        FILE *f = fopen(v6 ? "/proc/net/tcp6" : "/proc/net/tcp", "r");
        char line[512];
        if (!f) continue;
        while (fgets(line, sizeof line, f)) {
            unsigned st;
            if (sscanf(line, " %*d: %*s %*s %x", &st) == 1 && (st == 1 || st == 2)) n++;
        }
        fclose(f);
    }
    return n;
}

static const char *peer(int fd) {
    static char buf[2][80];
    static int k;
    char *b = buf[k++ & 1];
    struct sockaddr_in a;
    socklen_t l = sizeof a;
    if (getpeername(fd, (void *)&a, &l)) { snprintf(b, 80, "%s", en(errno)); return b; }
    char ip[32];
    inet_ntop(AF_INET, &a.sin_addr, ip, sizeof ip);
    snprintf(b, 80, "%s:%d", ip, ntohs(a.sin_port));
    return b;
}

static int nb_socket(void) { return socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0); }

/* A non-blocking connect that is left in progress. */
static int start(void) {
    int s = nb_socket();
    int rc = connect(s, (void *)&dst, sizeof dst);
    if (rc == 0 || errno != EINPROGRESS) { printf("connect=%s\n", rc ? en(errno) : "0"); exit(4); }
    return s;
}

/* Waits (bounded) for fd to be reported writable; returns revents and the wait. */
static unsigned wait_out(int fd, int ms, double *took) {
    struct pollfd p = {fd, POLLOUT, 0};
    double t = now_ms();
    int n = poll(&p, 1, ms);
    if (took) *took = now_ms() - t;
    return n > 0 ? p.revents : 0;
}

/* Sends a tagged line and reads it back; waits at most 5 s. 1 if it came back intact. */
static int echo(int fd, const char *tag) {
    char msg[64], got[64];
    int len = snprintf(msg, sizeof msg, "%s-%d-%08lx\n", tag, fd, random());
    int off = 0;
    double end = now_ms() + 5000;
    while (off < len && now_ms() < end) {
        ssize_t w = write(fd, msg + off, len - off);
        if (w > 0) off += w;
        else if (w < 0 && errno != EAGAIN && errno != EINTR) return 0;
        else { struct pollfd p = {fd, POLLOUT, 0}; poll(&p, 1, 100); }
    }
    off = 0;
    while (off < len && now_ms() < end) {
        ssize_t r = read(fd, got + off, len - off);
        if (r > 0) off += r;
        else if (r == 0) return 0;
        else if (errno != EAGAIN && errno != EINTR) return 0;
        else { struct pollfd p = {fd, POLLIN, 0}; poll(&p, 1, 100); }
    }
    return off == len && !memcmp(msg, got, len);
}

static const char *ok(int b) { return b ? "ok" : "BAD"; }

static int make_dup(const char *kind, int s) {
    if (!strcmp(kind, "dup")) return dup(s);
    if (!strcmp(kind, "dup2")) return dup2(s, 100);
    if (!strcmp(kind, "dup3")) return dup3(s, 101, O_CLOEXEC);
    if (!strcmp(kind, "fdupfd")) return fcntl(s, F_DUPFD, 200);
    if (!strcmp(kind, "fdupfd-cloexec")) return fcntl(s, F_DUPFD_CLOEXEC, 300);
    printf("unknown kind %s\n", kind);
    exit(2);
}

static void do_close(const char *kind, int s) {
    if (!strcmp(kind, "close")) close(s);
    else if (!strcmp(kind, "close_range")) close_range(s, s, 0);
    else if (!strcmp(kind, "close_range-unshare")) close_range(s, ~0U, CLOSE_RANGE_UNSHARE);
    else if (!strcmp(kind, "closefrom")) closefrom(s);
    else if (!strcmp(kind, "close_range-cloexec")) close_range(s, s, CLOSE_RANGE_CLOEXEC);
    else { printf("unknown kind %s\n", kind); exit(2); }
}

/* Waits for the kernel to tear closed connections down, bounded. */
static int settle_tcp(int want) {
    int n = tcp_live();
    for (int i = 0; i < 40 && n > want; i++) { usleep(50000); n = tcp_live(); }
    return n;
}

static int dup_mode(const char *kind, int established, int close_first) {
    int fds0 = count_fds();
    int s = established ? -1 : start();
    if (established) {
        s = start();
        wait_out(s, 10000, 0);
    }
    int d = make_dup(kind, s);
    printf("dup=%s\n", d < 0 ? en(errno) : "fd");
    if (d < 0) return 1;
    if (!strcmp(kind, "dup3") || !strcmp(kind, "fdupfd-cloexec"))
        printf("dup-cloexec=%d\n", !!(fcntl(d, F_GETFD) & FD_CLOEXEC));
    if (!established) {
        /* Still pending through both numbers. */
        char b[4];
        int r = read(d, b, 1);
        printf("pending dup-peer=%s dup-read=%s\n", peer(d), r < 0 ? en(errno) : "data");
    }
    if (close_first) close(s);
    double took;
    unsigned ev = wait_out(d, 10000, &took);
    printf("dup-ready=%x\n", ev);
    if (!established) printf("dup-wait-ms=%.0f\n", took);
    if (!close_first) {
        unsigned ev2 = wait_out(s, 10000, 0);
        printf("orig-ready=%x\n", ev2);
        printf("peer-orig=%s peer-dup=%s\n", peer(s), peer(d));
        int e1 = echo(d, "dup"), e2 = echo(s, "orig");
        printf("echo-dup=%s echo-orig=%s\n", ok(e1), ok(e2));
        close(s);
        printf("after-close-orig peer-dup=%s echo-dup=%s\n", peer(d), ok(echo(d, "dup2nd")));
    } else {
        printf("peer-dup=%s echo-dup=%s\n", peer(d), ok(echo(d, "dup")));
    }
    close(d);
    printf("fds-leaked=%d tcp-live=%d\n", count_fds() - fds0, settle_tcp(0));
    return 0;
}

/* A fresh socket on a reused number must start clean: no peer, no pending state,
 * and a blocking connect goes through the proxy as a new connection. */
static void reuse_check(int num) {
    int t = socket(AF_INET, SOCK_STREAM, 0);
    int n = fcntl(t, F_DUPFD, num); /* the lowest free number from `num` up: `num` */
    close(t);
    printf("reused=%d\n", n == num);
    char b[4];
    int r = read(n, b, 1);
    int soerr = -1; socklen_t sl = sizeof soerr;
    getsockopt(n, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    printf("fresh peer=%s read=%s soerr=%s\n", peer(n), r < 0 ? en(errno) : "data", en(soerr));
    int rc = connect(n, (void *)&dst, sizeof dst);
    printf("fresh connect=%s peer=%s echo=%s\n", rc ? en(errno) : "0", peer(n), ok(echo(n, "fresh")));
    close(n);
}

/* A pending connect on a number above every fd the program inherited, so that
 * "close everything from here up" closes only this socket. */
static int start_high(void) {
    int t = nb_socket();
    int s = fcntl(t, F_DUPFD, 900);
    close(t);
    int rc = connect(s, (void *)&dst, sizeof dst);
    if (rc == 0 || errno != EINPROGRESS) { printf("connect=%s\n", rc ? en(errno) : "0"); exit(4); }
    return s;
}

static int close_mode(const char *kind, int established) {
    int fds0 = count_fds();
    int s = start_high();
    if (established) printf("established-ready=%x\n", wait_out(s, 10000, 0));
    do_close(kind, s);
    if (!strcmp(kind, "close_range-cloexec")) {
        printf("cloexec=%d\n", !!(fcntl(s, F_GETFD) & FD_CLOEXEC));
        printf("ready=%x peer=%s echo=%s\n", wait_out(s, 10000, 0), peer(s), ok(echo(s, "cloexec")));
        close(s);
    } else {
        printf("closed fcntl=%s\n", fcntl(s, F_GETFD) < 0 ? en(errno) : "open");
        printf("tcp-after-close=%d\n", settle_tcp(0));
        reuse_check(s);
    }
    printf("fds-leaked=%d tcp-live=%d\n", count_fds() - fds0, settle_tcp(0));
    return 0;
}

/* The duplicate of a pending socket in an edge-triggered epoll set: the program's
 * event and data arrive once, after the proxy's reply. */
static int dup_epoll(void) {
    int fds0 = count_fds();
    int s = start();
    int d = dup(s);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {EPOLLOUT | EPOLLET, {.u64 = 0x1234}};
    printf("add=%d\n", epoll_ctl(ep, EPOLL_CTL_ADD, d, &ev));
    struct epoll_event out[4];
    double t = now_ms();
    int n = epoll_wait(ep, out, 4, 10000);
    printf("epoll n=%d events=%x data=%llx\n", n, n > 0 ? out[0].events : 0,
           n > 0 ? (unsigned long long)out[0].data.u64 : 0ULL);
    printf("dup-wait-ms=%.0f\n", now_ms() - t);
    printf("peer-dup=%s echo-dup=%s\n", peer(d), ok(echo(d, "ep")));
    n = epoll_wait(ep, out, 4, 0);
    printf("again n=%d\n", n);
    close(ep);
    close(s);
    close(d);
    printf("fds-leaked=%d tcp-live=%d\n", count_fds() - fds0, settle_tcp(0));
    return 0;
}

static int dup2_onto_pending(void) {
    int fds0 = count_fds();
    int p = start();                          /* pending */
    int plain = socket(AF_INET, SOCK_STREAM, 0);
    int rc = dup2(plain, p);                  /* the pending socket is closed by dup2 */
    printf("dup2=%s\n", rc == p ? "ok" : en(errno));
    close(plain);
    char b[4];
    int r = read(p, b, 1);
    printf("onto peer=%s read=%s\n", peer(p), r < 0 ? en(errno) : "data");
    rc = connect(p, (void *)&dst, sizeof dst); /* blocking: `plain` was blocking */
    printf("onto connect=%s peer=%s echo=%s\n", rc ? en(errno) : "0", peer(p), ok(echo(p, "onto")));
    close(p);
    printf("fds-leaked=%d tcp-live=%d\n", count_fds() - fds0, settle_tcp(0));
    return 0;
}

static int child_mode(void) {
    int layer = 0;
    FILE *m = fopen("/proc/self/maps", "r");
    char line[512];
    while (m && fgets(line, sizeof line, m)) if (strstr(line, "liblaysocks")) layer = 1;
    if (m) fclose(m);
    printf("child layer=%s preload=%s\n", layer ? "present" : "absent",
           getenv("LD_PRELOAD") ? "set" : "unset");
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int rc = connect(s, (void *)&dst, sizeof dst);
    int e = rc ? errno : 0;
    printf("child connect=%s peer=%s echo=%s\n", en(e), peer(s), rc ? "none" : ok(echo(s, "child")));
    close(s);
    return rc ? 1 : 0;
}

/* Threads that sit inside the layer's hooks (connect, poll on a pending socket, close)
 * while the main thread starts children. */
static volatile int stop;
static int thread_ok, thread_bad;
static pthread_mutex_t cnt = PTHREAD_MUTEX_INITIALIZER;
static void *busy(void *arg) {
    (void)arg;
    for (int i = 0; i < 10000 && !stop; i++) {
        int s = nb_socket();
        /* 0 is fine too: on a fast link the handshake can end inside connect(). */
        if (connect(s, (void *)&dst, sizeof dst) && errno != EINPROGRESS) {
            close(s);
            pthread_mutex_lock(&cnt); thread_bad++; pthread_mutex_unlock(&cnt);
            continue;
        }
        unsigned ev = wait_out(s, 10000, 0);
        int good = ev == POLLOUT && echo(s, "thr");
        close(s);
        pthread_mutex_lock(&cnt);
        if (good) thread_ok++; else thread_bad++;
        pthread_mutex_unlock(&cnt);
    }
    return 0;
}

static int children_mode(const char *self, int use_spawn, int n, char **argv) {
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], 0, busy, 0);
    char *cargv[] = {(char *)self, "child", argv[0], argv[1], 0};
    int good = 0, bad = 0;
    double end = now_ms() + 20000;
    for (int i = 0; i < n && now_ms() < end; i++) {
        pid_t pid;
        if (use_spawn) {
            posix_spawn_file_actions_t fa;
            posix_spawn_file_actions_init(&fa);
            /* File actions make the child run dup2/close in the parent's memory. */
            posix_spawn_file_actions_adddup2(&fa, 1, 1);
            posix_spawn_file_actions_addclose(&fa, 250);
            posix_spawn_file_actions_adddup2(&fa, 2, 250);
            posix_spawn_file_actions_addclose(&fa, 250);
            int rc = posix_spawn(&pid, self, &fa, 0, cargv, environ);
            posix_spawn_file_actions_destroy(&fa);
            if (rc) { printf("posix_spawn=%s\n", en(rc)); bad++; continue; }
        } else {
            pid = vfork();
            if (pid == 0) { execve(self, cargv, environ); _exit(127); }
            if (pid < 0) { printf("vfork=%s\n", en(errno)); bad++; continue; }
        }
        int st = 0;
        /* Bounded: a child stuck in the parent's memory would hang here; the test's
         * own 30 s limit ends it. */
        waitpid(pid, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) good++; else bad++;
    }
    stop = 1;
    for (int i = 0; i < 2; i++) pthread_join(th[i], 0);
    printf("children ok=%d bad=%d of=%d\n", good, bad, n);
    printf("threads ok=%d bad=%d\n", thread_ok, thread_bad);
    return 0;
}

static int exec_mode(const char *self, int keep, char **argv) {
    char *cargv[] = {(char *)self, "child", argv[0], argv[1], 0};
    if (keep) {
        /* Other variables change, LD_PRELOAD stays: the layer must follow. */
        setenv("EDGES_SOMETHING", "x", 1);
        unsetenv("HOME");
        execvp(self, cargv);
    } else {
        /* The program's own choice: an environment with nothing of ours. */
        char *envp[] = {"PATH=/usr/bin:/bin", "EDGES_SOMETHING=x", 0};
        execve(self, cargv, envp);
    }
    printf("exec=%s\n", en(errno));
    return 1;
}

static int syscall_mode(int nonblock) {
    int s = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
    long rc = syscall(SYS_connect, s, (void *)&dst, (socklen_t)sizeof dst);
    printf("syscall connect=%s\n", rc ? en(errno) : "0");
    if (nonblock) {
        if (rc && errno != EINPROGRESS) return 1;
        printf("pending peer=%s\n", peer(s));
        unsigned ev = wait_out(s, 10000, 0);
        int soerr = -1; socklen_t sl = sizeof soerr;
        getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        printf("ready=%x soerr=%s\n", ev, en(soerr));
    }
    printf("peer=%s echo=%s\n", peer(s), ok(echo(s, "sys")));
    close(s);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: edges MODE [ARG] HOST PORT\n"); return 2; }
    setvbuf(stdout, 0, _IONBF, 0);
    srandom(getpid());
    const char *mode = argv[1];
    int has_arg = argc >= 5;
    const char *arg = has_arg ? argv[2] : "";
    char **hp = argv + (has_arg ? 3 : 2);
    memset(&dst, 0, sizeof dst);
    dst.sin_family = AF_INET;
    dst.sin_port = htons(atoi(hp[1]));
    inet_pton(AF_INET, hp[0], &dst.sin_addr);
    snprintf(target, sizeof target, "%s:%s", hp[0], hp[1]);
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    self[sl > 0 ? sl : 0] = 0;

    int rc = 2;
    if (!strcmp(mode, "dup-pending")) rc = dup_mode(arg, 0, 0);
    else if (!strcmp(mode, "dup-pending-close")) rc = dup_mode(arg, 0, 1);
    else if (!strcmp(mode, "dup-established")) rc = dup_mode(arg, 1, 0);
    else if (!strcmp(mode, "dup2-onto-pending")) rc = dup2_onto_pending();
    else if (!strcmp(mode, "dup-pending-epoll")) rc = dup_epoll();
    else if (!strcmp(mode, "close-pending")) rc = close_mode(arg, 0);
    else if (!strcmp(mode, "close-established")) rc = close_mode(arg, 1);
    else if (!strcmp(mode, "vfork")) rc = children_mode(self, 0, atoi(arg), hp);
    else if (!strcmp(mode, "spawn")) rc = children_mode(self, 1, atoi(arg), hp);
    else if (!strcmp(mode, "exec-clearenv")) rc = exec_mode(self, 0, hp);
    else if (!strcmp(mode, "exec-keepenv")) rc = exec_mode(self, 1, hp);
    else if (!strcmp(mode, "child")) return child_mode();
    else if (!strcmp(mode, "syscall-block")) rc = syscall_mode(0);
    else if (!strcmp(mode, "syscall-nonblock")) rc = syscall_mode(1);
    else printf("unknown mode %s\n", mode);
    printf("alive\n");
    return rc;
}
