/* delayrelay: a TCP relay that holds every chunk for a fixed time, for the event-loop
 * section of bench/run.sh.
 *
 * The kernel on the bench VM has no netem, so a round trip to the proxy is made long
 * here instead: the relay listens in the proxy namespace, connects each client to the
 * real SOCKS5 server and forwards every chunk read in either direction DELAY ms after it
 * arrived (10 ms each way = a 20 ms round trip). The delay is per chunk, not per
 * connection: 1000 clients whose chunks arrive together are all forwarded together,
 * as on a long link, not one after another.
 *
 * Because the delay is the same for every chunk, the chunks become due in the order they
 * arrived, so one FIFO of pending chunks (all connections, both directions) is already
 * sorted by due time: the loop only ever looks at its head. A connection's EOF travels
 * the same FIFO, behind its data, and becomes shutdown(SHUT_WR) on the other side; the
 * pair is closed when both directions have delivered their EOF.
 *
 * One thread, epoll, epoll_pwait2 for a timer with microsecond resolution, listen backlog
 * 4096. TCP_NODELAY on both sides: Nagle against a delayed ACK would add ~40 ms to
 * exactly the small handshake writes this relay exists to time.
 *
 *   delayrelay DELAY_MS LISTEN_ADDR LISTEN_PORT UPSTREAM_ADDR UPSTREAM_PORT
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct conn {
    int fd[2];   /* 0: the client, 1: the upstream server */
    int shut[2]; /* EOF delivered to fd[i] */
};

struct chunk {
    uint64_t due_ns;
    struct conn *c;
    int to; /* deliver to c->fd[to] */
    size_t len; /* 0: EOF */
    struct chunk *next;
    char data[];
};

static struct chunk *head, *tail;
static int ep;

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + t.tv_nsec;
}

static int parse(const char *ip, const char *port, struct sockaddr_in *a)
{
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_port = htons(atoi(port));
    return inet_pton(AF_INET, ip, &a->sin_addr) == 1 ? 0 : -1;
}

static void watch(struct conn *c, int side)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)(uintptr_t)c | side};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd[side], &ev);
}

static void push(struct conn *c, int to, const char *data, size_t len, uint64_t due)
{
    struct chunk *k = malloc(sizeof *k + len);
    if (!k) {
        perror("delayrelay: malloc");
        exit(1);
    }
    k->due_ns = due;
    k->c = c;
    k->to = to;
    k->len = len;
    k->next = NULL;
    if (len)
        memcpy(k->data, data, len);
    if (tail)
        tail->next = k;
    else
        head = k;
    tail = k;
}

/* Writes all of it. The chunks are small and the peer reads promptly, so EAGAIN is rare;
 * when it happens we wait for room (bounded) rather than queue a second time. */
static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && errno == EAGAIN) {
            struct pollfd pf = {.fd = fd, .events = POLLOUT};
            if (poll(&pf, 1, 2000) <= 0)
                return;
        } else if (!(w < 0 && errno == EINTR)) {
            return; /* the peer is gone; its EOF or error reaches us by read */
        }
    }
}

static void deliver(struct chunk *k)
{
    struct conn *c = k->c;
    if (k->len) {
        write_all(c->fd[k->to], k->data, k->len);
        return;
    }
    shutdown(c->fd[k->to], SHUT_WR);
    c->shut[k->to] = 1;
    if (c->shut[0] && c->shut[1]) {
        /* Both directions have delivered their EOF, which is the last chunk of each:
         * nothing in the queue refers to c any more. */
        close(c->fd[0]);
        close(c->fd[1]);
        free(c);
    }
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: delayrelay DELAY_MS LISTEN_ADDR LISTEN_PORT UPSTREAM_ADDR UPSTREAM_PORT\n");
        return 2;
    }
    uint64_t delay = (uint64_t)(atof(argv[1]) * 1e6);
    struct sockaddr_in la, ua;
    if (parse(argv[2], argv[3], &la) || parse(argv[4], argv[5], &ua)) {
        fprintf(stderr, "delayrelay: bad address\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int one = 1;
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(ls, (struct sockaddr *)&la, sizeof la) || listen(ls, 4096)) {
        perror("delayrelay: bind/listen");
        return 1;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.u64 = 0};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &lev);
    static char buf[65536];
    struct epoll_event evs[256];
    for (;;) {
        uint64_t t = now_ns();
        while (head && head->due_ns <= t) {
            struct chunk *k = head;
            head = k->next;
            if (!head)
                tail = NULL;
            deliver(k);
            free(k);
        }
        struct timespec to, *top = NULL;
        if (head) {
            uint64_t d = head->due_ns - t;
            to.tv_sec = d / 1000000000u;
            to.tv_nsec = d % 1000000000u;
            top = &to;
        }
        int n = epoll_pwait2(ep, evs, 256, top, NULL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            perror("delayrelay: epoll_pwait2");
            return 1;
        }
        t = now_ns();
        for (int i = 0; i < n; i++) {
            uint64_t u = evs[i].data.u64;
            if (u == 0) {
                int cfd;
                while ((cfd = accept4(ls, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
                    /* The upstream is on this namespace's own address: a blocking
                     * connect is done in microseconds. */
                    int ufd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                    if (ufd < 0 || connect(ufd, (struct sockaddr *)&ua, sizeof ua)) {
                        perror("delayrelay: upstream connect");
                        close(cfd);
                        if (ufd >= 0)
                            close(ufd);
                        continue;
                    }
                    struct conn *c = calloc(1, sizeof *c);
                    c->fd[0] = cfd;
                    c->fd[1] = ufd;
                    for (int s = 0; s < 2; s++) {
                        setsockopt(c->fd[s], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                        fcntl(c->fd[s], F_SETFL, O_NONBLOCK);
                        watch(c, s);
                    }
                }
                continue;
            }
            struct conn *c = (struct conn *)(uintptr_t)(u & ~(uint64_t)1);
            int side = (int)(u & 1);
            ssize_t r = read(c->fd[side], buf, sizeof buf);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r > 0) {
                push(c, 1 - side, buf, (size_t)r, t + delay);
            } else {
                /* EOF or error: stop reading this side, pass the EOF on in order. */
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd[side], NULL);
                push(c, 1 - side, NULL, 0, t + delay);
            }
        }
    }
}
