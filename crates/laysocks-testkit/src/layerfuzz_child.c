/* layerfuzz_child: the program side of the layer harness (layerfuzz.rs). It runs under
 * the real layer and lives for the whole fuzzing session, so one process sees thousands
 * of connects: what one connect leaves behind (an fd, a stuck record) shows up in the
 * next ones.
 *
 * One command per stdin line, one answer per stdout line:
 *   in:  MODE FAMILY PORT WANT LIMIT_MS
 *        MODE   b (blocking socket) | n (SOCK_NONBLOCK, EINPROGRESS, poll, SO_ERROR)
 *        FAMILY 4 (AF_INET to 203.0.113.2) | 6 (AF_INET6 to 2001:db8:2::2)
 *               | n (getaddrinfo("remote.test"), which only the proxy can resolve)
 *        WANT   -1: read until EOF or an error; N >= 0: read N bytes, then 20 ms more
 *        LIMIT_MS  our own bound on the connect and on the reads
 *   out: rc=<0|errno|-1: no answer within LIMIT_MS> ms=<connect time>
 *        again=<SO_ERROR after the failure was reported, else -1>
 *        peer=<getpeername after connect: ADDR,PORT | e<errno> | ->
 *        end=<eof|e<errno>|idle|limit|-> fds=<open fds after close>
 *        data=<hex of what arrived after connect>
 * EOF on stdin ends the program.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
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

static int remaining(double deadline) {
    double left = deadline - now_ms();
    return left <= 0 ? 0 : (int)left + 1;
}

static unsigned char data[65536];

int main(void) {
    char line[256];
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (fgets(line, sizeof line, stdin)) {
        char mode, fam;
        int port, want, limit;
        if (sscanf(line, " %c %c %d %d %d", &mode, &fam, &port, &want, &limit) != 5) {
            printf("bad-command\n");
            continue;
        }
        struct sockaddr_storage ss;
        socklen_t sl;
        memset(&ss, 0, sizeof ss);
        int af = AF_INET;
        if (fam == '6') {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            a->sin6_family = af = AF_INET6;
            a->sin6_port = htons(port);
            inet_pton(AF_INET6, "2001:db8:2::2", &a->sin6_addr);
            sl = sizeof *a;
        } else if (fam == 'n') {
            struct addrinfo hints = {0}, *res = NULL;
            hints.ai_family = AF_INET;
            hints.ai_socktype = SOCK_STREAM;
            char p[16];
            snprintf(p, sizeof p, "%d", port);
            int g = getaddrinfo("remote.test", p, &hints, &res);
            if (g != 0 || !res) {
                printf("rc=gai%d again=-1 ms=0 peer=- end=- fds=%d data=\n", g, count_fds());
                continue;
            }
            memcpy(&ss, res->ai_addr, res->ai_addrlen);
            sl = res->ai_addrlen;
            freeaddrinfo(res);
        } else {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            a->sin_family = AF_INET;
            a->sin_port = htons(port);
            inet_pton(AF_INET, "203.0.113.2", &a->sin_addr);
            sl = sizeof *a;
        }
        double t0 = now_ms(), deadline = t0 + limit;
        int fd = socket(af, SOCK_STREAM | (mode == 'n' ? SOCK_NONBLOCK : 0), 0);
        if (fd < 0) {
            printf("rc=socket%d again=-1 ms=0 peer=- end=- fds=%d data=\n", errno, count_fds());
            continue;
        }
        int rc = connect(fd, (struct sockaddr *)&ss, sl) == 0 ? 0 : errno;
        int again = -1;
        if (mode == 'n' && rc == EINPROGRESS) {
            struct pollfd p = {fd, POLLOUT, 0};
            int n;
            do n = poll(&p, 1, remaining(deadline));
            while (n < 0 && errno == EINTR);
            if (n <= 0) {
                rc = -1; /* no answer within our own limit: reported as a hang */
            } else {
                int e = 0;
                socklen_t el = sizeof e;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el);
                rc = e;
            }
        }
        /* The errno is reported once (by connect or by SO_ERROR); then SO_ERROR is clear,
         * as after a refused direct connect (DESIGN §3.4). */
        if (rc > 0) {
            int e = 0;
            socklen_t el = sizeof e;
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el);
            again = e;
        }
        double ms = now_ms() - t0;
        /* getpeername: the target (or the name's placeholder), never the proxy. */
        char peer[INET6_ADDRSTRLEN + 8] = "-";
        if (rc == 0) {
            struct sockaddr_storage pa;
            socklen_t pl = sizeof pa;
            char ip[INET6_ADDRSTRLEN];
            if (getpeername(fd, (struct sockaddr *)&pa, &pl) == 0) {
                if (pa.ss_family == AF_INET6) {
                    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&pa;
                    inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
                    snprintf(peer, sizeof peer, "%s,%d", ip, ntohs(a->sin6_port));
                } else {
                    struct sockaddr_in *a = (struct sockaddr_in *)&pa;
                    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
                    snprintf(peer, sizeof peer, "%s,%d", ip, ntohs(a->sin_port));
                }
            } else {
                snprintf(peer, sizeof peer, "e%d", errno);
            }
        }
        size_t got = 0;
        const char *end = "-";
        char endbuf[64];
        if (rc == 0) {
            double idle_until = 0;
            end = "limit";
            while (got < sizeof data) {
                if (want >= 0 && (int)got >= want && idle_until == 0)
                    idle_until = now_ms() + 20;
                double until = idle_until ? idle_until : deadline;
                struct pollfd p = {fd, POLLIN, 0};
                int n = poll(&p, 1, remaining(until));
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) {
                    if (idle_until) end = "idle";
                    break;
                }
                ssize_t r = read(fd, data + got, sizeof data - got);
                if (r == 0) { end = "eof"; break; }
                if (r < 0) {
                    if (errno == EAGAIN || errno == EINTR) continue;
                    snprintf(endbuf, sizeof endbuf, "e%d", errno);
                    end = endbuf;
                    break;
                }
                got += r;
            }
        }
        close(fd);
        printf("rc=%d again=%d ms=%.1f peer=%s end=%s fds=%d data=", rc, again, ms, peer, end,
               count_fds());
        for (size_t i = 0; i < got; i++) printf("%02x", data[i]);
        printf("\n");
    }
    return 0;
}
