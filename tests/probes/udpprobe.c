/* udpprobe MODE HOST PORT [ARGS]: UDP through the layer, with output the tests match line
 * by line (tests/udp.rs). HOST goes through getaddrinfo (SOCK_DGRAM; names resolve to
 * placeholders under remote DNS); the socket has HOST's family unless said otherwise.
 * Every wait is bounded; every mode ends with `alive` on its success path.
 *
 *   mmsg HOST PORT         sendmmsg of 8 datagrams (msg_name set on each), then
 *                          recvmmsg until 8 replies: `sendmmsg=8`, `sendmmsg_lens=ok`,
 *                          one `reply i=K len=N from=ADDR data=…` line each, then
 *                          `recvmmsg_total=8`; one more round with 4-byte buffers gives
 *                          `recvmmsg_trunc len=4 flags=MSG_TRUNC` lines
 *   ancil HOST PORT        SO_TIMESTAMP and IP_PKTINFO / IPV6_RECVPKTINFO on, sendmsg,
 *                          recvmsg with a control buffer: `anc data=… from=ADDR`,
 *                          `anc_flags=0`, `anc_timestamp=ok|missing|off:SECS`,
 *                          `anc_pktinfo=ADDR|missing`
 *   mapped HOST PORT       an AF_INET6 socket (V6ONLY off) sending to ::ffff:HOST (an
 *                          IPv4 address): `mapped from=ADDR data=…`
 *   flags HOST PORT        readiness and recv flags: idle poll/epoll/MSG_DONTWAIT, then
 *                          poll, epoll, MSG_PEEK twice, a read, MSG_DONTWAIT, MSG_TRUNC,
 *                          recvmsg truncation, a short buffer, MSG_PEEK|MSG_TRUNC and a
 *                          non-blocking socket (see the code for the line names)
 *   stray HOST PORT LPORT [connect]
 *                          binds 0.0.0.0:LPORT (or [::]), connects to HOST if asked,
 *                          echoes `first`, then watches 1.5 s for anything else (the
 *                          test sends strays from the proxy host meanwhile):
 *                          `stray_poll=none|readable`, `stray_data=none|…`, then
 *                          echoes `second`
 *   rawmmsg HOST PORT      what libuv (node's dgram, BIND's dig) does: sendmmsg and
 *                          recvmmsg through syscall(2), on an unconnected socket (with
 *                          msg_name) and on a connected one (without):
 *                          `raw_unconnected sent=1 got=… from=ADDR` and
 *                          `raw_connected sent=1 got=… from=ADDR`
 *   flood HOST PORT COUNT  COUNT datagrams of a deterministic size sequence (1 byte up
 *                          to the largest that fits through the relay, `maxsize`), a
 *                          window of 16 datagrams / 96 KiB in flight, contents checked:
 *                          `flood sent=N received=N lost=N late=N bad=N maxsize=N
 *                          bytes=N ms=N`; the first bad datagram is described in a
 *                          `bad …` line
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
}

static const char *en(int e) { return e ? strerrorname_np(e) : "0"; }

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* "a.b.c.d:port" or "[v6]:port" */
static const char *fmt_addr(const struct sockaddr *sa, socklen_t len) {
    static char bufs[4][80];
    static int next;
    char *b = bufs[next++ % 4];
    char ip[INET6_ADDRSTRLEN] = "?";
    if (len == 0 || sa == NULL) {
        snprintf(b, 80, "none");
    } else if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *s = (const void *)sa;
        inet_ntop(AF_INET, &s->sin_addr, ip, sizeof ip);
        snprintf(b, 80, "%s:%u", ip, ntohs(s->sin_port));
    } else if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *s = (const void *)sa;
        inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof ip);
        snprintf(b, 80, "[%s]:%u", ip, ntohs(s->sin6_port));
    } else {
        snprintf(b, 80, "family%d/len%u", sa->sa_family, (unsigned)len);
    }
    return b;
}

static struct sockaddr_storage dst;
static socklen_t dstlen;
static int fam;
/* Use send() rather than sendto() in echo_once (the socket is connected). */
static int use_send;

static void resolve(const char *host, const char *port) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_DGRAM;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        out("getaddrinfo=%s", gai_strerror(rc));
        exit(2);
    }
    memcpy(&dst, res->ai_addr, res->ai_addrlen);
    dstlen = res->ai_addrlen;
    fam = res->ai_family;
    freeaddrinfo(res);
}

static int udp_socket(int family) {
    int s = socket(family, SOCK_DGRAM, 0);
    if (s < 0) {
        out("socket=%s", en(errno));
        exit(2);
    }
    return s;
}

/* Waits up to ms for POLLIN: 1 readable, 0 not. */
static int readable(int s, int ms) {
    struct pollfd p = {.fd = s, .events = POLLIN};
    int rc = poll(&p, 1, ms);
    return rc > 0 && (p.revents & POLLIN);
}

/* Sends msg to dst and reads one reply (5 s): returns its length, -1 on error (printed). */
static ssize_t echo_once(int s, const char *tag, const char *msg, char *buf, size_t cap,
                         struct sockaddr_storage *from, socklen_t *fromlen) {
    ssize_t k = use_send ? send(s, msg, strlen(msg), 0)
                         : sendto(s, msg, strlen(msg), 0, (struct sockaddr *)&dst, dstlen);
    if (k < 0) {
        out("%s_send=%s", tag, en(errno));
        return -1;
    }
    if (!readable(s, 5000)) {
        out("%s_recv=timeout", tag);
        return -1;
    }
    *fromlen = sizeof *from;
    ssize_t n = recvfrom(s, buf, cap - 1, 0, (struct sockaddr *)from, fromlen);
    if (n < 0) {
        out("%s_recv=%s", tag, en(errno));
        return -1;
    }
    buf[n] = 0;
    return n;
}

/* ---- mmsg ---- */

static int mode_mmsg(void) {
    int s = udp_socket(fam);
    enum { N = 8 };
    char data[N][32];
    struct mmsghdr m[N];
    struct iovec iov[N];
    memset(m, 0, sizeof m);
    for (int i = 0; i < N; i++) {
        snprintf(data[i], sizeof data[i], "mmsg-%d-%.*s", i, i, "xxxxxxxx");
        iov[i].iov_base = data[i];
        iov[i].iov_len = strlen(data[i]);
        m[i].msg_hdr.msg_iov = &iov[i];
        m[i].msg_hdr.msg_iovlen = 1;
        m[i].msg_hdr.msg_name = &dst;
        m[i].msg_hdr.msg_namelen = dstlen;
    }
    int sent = sendmmsg(s, m, N, 0);
    out("sendmmsg=%s", sent == N ? "8" : sent < 0 ? en(errno) : "short");
    if (sent != N)
        return 1;
    int lens_ok = 1;
    for (int i = 0; i < N; i++)
        lens_ok &= m[i].msg_len == strlen(data[i]);
    out("sendmmsg_lens=%s", lens_ok ? "ok" : "bad");

    char rbuf[N][64];
    struct sockaddr_storage from[N];
    int total = 0;
    double deadline = now_ms() + 5000;
    while (total < N && now_ms() < deadline) {
        if (!readable(s, (int)(deadline - now_ms()) + 1))
            break;
        struct mmsghdr r[N];
        struct iovec riov[N];
        memset(r, 0, sizeof r);
        for (int i = 0; i < N; i++) {
            riov[i].iov_base = rbuf[i];
            riov[i].iov_len = sizeof rbuf[i] - 1;
            r[i].msg_hdr.msg_iov = &riov[i];
            r[i].msg_hdr.msg_iovlen = 1;
            r[i].msg_hdr.msg_name = &from[i];
            r[i].msg_hdr.msg_namelen = sizeof from[i];
        }
        int got = recvmmsg(s, r, N - total, MSG_DONTWAIT, NULL);
        if (got < 0) {
            out("recvmmsg=%s", en(errno));
            break;
        }
        for (int i = 0; i < got; i++) {
            rbuf[i][r[i].msg_len] = 0;
            out("reply i=%d len=%u from=%s data=%s flags=%d", total + i, r[i].msg_len,
                fmt_addr((struct sockaddr *)&from[i], r[i].msg_hdr.msg_namelen), rbuf[i],
                r[i].msg_hdr.msg_flags);
        }
        total += got;
    }
    out("recvmmsg_total=%d", total);

    /* Truncation through recvmmsg: 4-byte buffers. */
    int tsent = sendmmsg(s, m, 2, 0);
    if (tsent != 2) {
        out("sendmmsg2=%s", tsent < 0 ? en(errno) : "short");
        return 1;
    }
    int ttotal = 0;
    deadline = now_ms() + 5000;
    while (ttotal < 2 && now_ms() < deadline) {
        if (!readable(s, (int)(deadline - now_ms()) + 1))
            break;
        struct mmsghdr r[2];
        struct iovec riov[2];
        char small[2][4];
        memset(r, 0, sizeof r);
        for (int i = 0; i < 2; i++) {
            riov[i].iov_base = small[i];
            riov[i].iov_len = sizeof small[i];
            r[i].msg_hdr.msg_iov = &riov[i];
            r[i].msg_hdr.msg_iovlen = 1;
        }
        int got = recvmmsg(s, r, 2 - ttotal, MSG_DONTWAIT, NULL);
        if (got < 0) {
            out("recvmmsg_trunc=%s", en(errno));
            break;
        }
        for (int i = 0; i < got; i++)
            out("recvmmsg_trunc len=%u flags=%s data=%.4s", r[i].msg_len,
                r[i].msg_hdr.msg_flags & MSG_TRUNC ? "MSG_TRUNC" : "0", small[i]);
        ttotal += got;
    }
    close(s);
    out("alive");
    return 0;
}

/* ---- ancil ---- */

static int mode_ancil(void) {
    int s = udp_socket(fam);
    int on = 1;
    if (setsockopt(s, SOL_SOCKET, SO_TIMESTAMP, &on, sizeof on) < 0)
        out("so_timestamp=%s", en(errno));
    if (fam == AF_INET) {
        if (setsockopt(s, IPPROTO_IP, IP_PKTINFO, &on, sizeof on) < 0)
            out("ip_pktinfo=%s", en(errno));
    } else if (setsockopt(s, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof on) < 0) {
        out("ipv6_recvpktinfo=%s", en(errno));
    }
    char msg[] = "ancillary";
    struct iovec iov = {.iov_base = msg, .iov_len = strlen(msg)};
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_name = &dst;
    mh.msg_namelen = dstlen;
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    ssize_t k = sendmsg(s, &mh, 0);
    out("sendmsg=%s", k == (ssize_t)strlen(msg) ? "ok" : k < 0 ? en(errno) : "short");
    if (k < 0)
        return 1;
    if (!readable(s, 5000)) {
        out("anc=timeout");
        return 1;
    }
    char buf[256];
    union {
        char b[512];
        struct cmsghdr align;
    } cbuf;
    struct sockaddr_storage from;
    struct iovec riov = {.iov_base = buf, .iov_len = sizeof buf - 1};
    memset(&mh, 0, sizeof mh);
    mh.msg_name = &from;
    mh.msg_namelen = sizeof from;
    mh.msg_iov = &riov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf.b;
    mh.msg_controllen = sizeof cbuf.b;
    ssize_t n = recvmsg(s, &mh, 0);
    if (n < 0) {
        out("anc=%s", en(errno));
        return 1;
    }
    buf[n] = 0;
    out("anc data=%s from=%s", buf, fmt_addr((struct sockaddr *)&from, mh.msg_namelen));
    out("anc_flags=%d", mh.msg_flags);
    const char *ts = "missing";
    char tsbuf[64];
    char pk[INET6_ADDRSTRLEN + 8] = "missing";
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMP) {
            struct timeval tv, now;
            memcpy(&tv, CMSG_DATA(c), sizeof tv);
            gettimeofday(&now, NULL);
            double off = (now.tv_sec - tv.tv_sec) + (now.tv_usec - tv.tv_usec) / 1e6;
            if (off >= -1 && off < 10) {
                ts = "ok";
            } else {
                snprintf(tsbuf, sizeof tsbuf, "off:%.3f", off);
                ts = tsbuf;
            }
        } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof pi);
            inet_ntop(AF_INET, &pi.ipi_addr, pk, sizeof pk);
        } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof pi);
            inet_ntop(AF_INET6, &pi.ipi6_addr, pk, sizeof pk);
        }
    }
    out("anc_timestamp=%s", ts);
    out("anc_pktinfo=%s", pk);
    close(s);
    out("alive");
    return 0;
}

/* ---- mapped ---- */

static int mode_mapped(void) {
    if (fam != AF_INET) {
        out("mapped=needs an IPv4 HOST");
        return 2;
    }
    struct sockaddr_in *v4 = (struct sockaddr_in *)&dst;
    struct sockaddr_in6 m;
    memset(&m, 0, sizeof m);
    m.sin6_family = AF_INET6;
    m.sin6_port = v4->sin_port;
    m.sin6_addr.s6_addr[10] = 0xff;
    m.sin6_addr.s6_addr[11] = 0xff;
    memcpy(&m.sin6_addr.s6_addr[12], &v4->sin_addr, 4);
    memcpy(&dst, &m, sizeof m);
    dstlen = sizeof m;
    int s = udp_socket(AF_INET6);
    int off = 0;
    setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    char buf[256];
    struct sockaddr_storage from;
    socklen_t fl;
    ssize_t n = echo_once(s, "mapped", "mapped-hello", buf, sizeof buf, &from, &fl);
    if (n < 0)
        return 1;
    out("mapped from=%s data=%s", fmt_addr((struct sockaddr *)&from, fl), buf);
    close(s);
    out("alive");
    return 0;
}

/* ---- flags ---- */

static void send_or_die(int s, const void *p, size_t n, const char *tag) {
    ssize_t k = sendto(s, p, n, 0, (struct sockaddr *)&dst, dstlen);
    if (k != (ssize_t)n) {
        out("%s_send=%s", tag, k < 0 ? en(errno) : "short");
        exit(1);
    }
}

static int mode_flags(void) {
    int s = udp_socket(fam);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = s}, got;
    epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
    char buf[512];
    struct sockaddr_storage from;
    socklen_t fl;
    ssize_t n;

    out("idle_poll=%d", readable(s, 0));
    out("idle_epoll=%d", epoll_wait(ep, &got, 1, 0));
    n = recv(s, buf, sizeof buf, MSG_DONTWAIT);
    out("idle_dontwait=%s", n < 0 ? en(errno) : "data");

    send_or_die(s, "peek-me", 7, "peek");
    out("poll=%d", readable(s, 5000));
    out("epoll=%d", epoll_wait(ep, &got, 1, 5000));
    fl = sizeof from;
    n = recvfrom(s, buf, sizeof buf, MSG_PEEK, (struct sockaddr *)&from, &fl);
    out("peek=%.*s from=%s", n < 0 ? 0 : (int)n, buf, n < 0 ? en(errno) : fmt_addr((void *)&from, fl));
    fl = sizeof from;
    n = recvfrom(s, buf, sizeof buf, MSG_PEEK, (struct sockaddr *)&from, &fl);
    out("peek2=%.*s from=%s", n < 0 ? 0 : (int)n, buf, n < 0 ? en(errno) : fmt_addr((void *)&from, fl));
    out("poll_after_peek=%d", readable(s, 0));
    fl = sizeof from;
    n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
    out("read=%.*s from=%s", n < 0 ? 0 : (int)n, buf, n < 0 ? en(errno) : fmt_addr((void *)&from, fl));
    n = recv(s, buf, sizeof buf, MSG_DONTWAIT);
    out("dontwait=%s", n < 0 ? en(errno) : "data");
    out("poll_empty=%d", readable(s, 0));
    out("epoll_empty=%d", epoll_wait(ep, &got, 1, 0));

    char hundred[100];
    for (int i = 0; i < 100; i++)
        hundred[i] = (char)('A' + i % 26);

    /* recv(MSG_TRUNC) returns the datagram's real length. */
    send_or_die(s, hundred, 100, "trunc");
    readable(s, 5000);
    memset(buf, 0, sizeof buf);
    n = recv(s, buf, 10, MSG_TRUNC);
    out("trunc_len=%s", n < 0 ? en(errno) : n == 100 ? "100" : "other");
    if (n >= 0)
        out("trunc_len_value=%zd", n);
    out("trunc_data=%s", memcmp(buf, hundred, 10) == 0 && buf[10] == 0 ? "ok" : "bad");

    /* recvmsg into a short buffer: MSG_TRUNC in msg_flags. */
    send_or_die(s, hundred, 100, "recvmsg");
    readable(s, 5000);
    struct iovec iov = {.iov_base = buf, .iov_len = 10};
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_name = &from;
    mh.msg_namelen = sizeof from;
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    n = recvmsg(s, &mh, 0);
    out("recvmsg_trunc len=%zd flags=%s from=%s", n, mh.msg_flags & MSG_TRUNC ? "MSG_TRUNC" : "0",
        fmt_addr((void *)&from, mh.msg_namelen));

    /* recvmsg(MSG_TRUNC) with a short buffer: real length and the flag. */
    send_or_die(s, hundred, 100, "recvmsg2");
    readable(s, 5000);
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    n = recvmsg(s, &mh, MSG_TRUNC);
    out("recvmsg_msgtrunc len=%zd flags=%s", n, mh.msg_flags & MSG_TRUNC ? "MSG_TRUNC" : "0");

    /* A short buffer without flags: 10 bytes, and the rest is gone. */
    send_or_die(s, hundred, 100, "short");
    readable(s, 5000);
    n = recvfrom(s, buf, 10, 0, NULL, NULL);
    out("short_len=%zd", n);
    n = recv(s, buf, sizeof buf, MSG_DONTWAIT);
    out("short_rest=%s", n < 0 ? en(errno) : "data");

    /* MSG_PEEK|MSG_TRUNC: the length without consuming. */
    send_or_die(s, hundred, 100, "peektrunc");
    readable(s, 5000);
    n = recv(s, buf, 1, MSG_PEEK | MSG_TRUNC);
    out("peektrunc_len=%zd", n);
    n = recv(s, buf, sizeof buf, 0);
    out("after_peektrunc_len=%zd", n);

    /* A zero-length datagram. */
    send_or_die(s, "", 0, "empty");
    out("empty_poll=%d", readable(s, 5000));
    fl = sizeof from;
    n = recvfrom(s, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
    out("empty_len=%s from=%s", n < 0 ? en(errno) : n == 0 ? "0" : "other",
        n < 0 ? "-" : fmt_addr((void *)&from, fl));

    /* Non-blocking socket. */
    fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK);
    n = recvfrom(s, buf, sizeof buf, 0, NULL, NULL);
    out("nb_empty=%s", n < 0 ? en(errno) : "data");
    n = sendto(s, "nb", 2, 0, (struct sockaddr *)&dst, dstlen);
    out("nb_send=%s", n < 0 ? en(errno) : n == 2 ? "2" : "short");
    out("nb_epoll=%d", epoll_wait(ep, &got, 1, 5000));
    fl = sizeof from;
    n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
    out("nb_read=%.*s from=%s", n < 0 ? 0 : (int)n, buf, n < 0 ? en(errno) : fmt_addr((void *)&from, fl));
    n = read(s, buf, sizeof buf);
    out("nb_read_empty=%s", n < 0 ? en(errno) : "data");
    close(ep);
    close(s);
    out("alive");
    return 0;
}

/* ---- stray ---- */

static int mode_stray(int lport, int do_connect) {
    int s = udp_socket(fam);
    struct sockaddr_storage me;
    memset(&me, 0, sizeof me);
    socklen_t ml;
    if (fam == AF_INET) {
        struct sockaddr_in *a = (void *)&me;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)lport);
        ml = sizeof *a;
    } else {
        struct sockaddr_in6 *a = (void *)&me;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)lport);
        ml = sizeof *a;
    }
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(s, (struct sockaddr *)&me, ml) < 0) {
        out("bind=%s", en(errno));
        return 1;
    }
    if (do_connect) {
        if (connect(s, (struct sockaddr *)&dst, dstlen) < 0) {
            out("connect=%s", en(errno));
            return 1;
        }
        use_send = 1;
    }
    char buf[512];
    struct sockaddr_storage from;
    socklen_t fl;
    if (echo_once(s, "first", "first", buf, sizeof buf, &from, &fl) < 0)
        return 1;
    out("first=%s from=%s", buf, fmt_addr((void *)&from, fl));
    struct sockaddr_storage bound;
    socklen_t bl = sizeof bound;
    getsockname(s, (struct sockaddr *)&bound, &bl);
    out("bound_port=%u", ntohs(((struct sockaddr_in *)&bound)->sin_port));
    out("watching");
    const char *poll_seen = "none";
    char data_seen[200] = "none";
    double end = now_ms() + 1500;
    while (now_ms() < end) {
        if (!readable(s, (int)(end - now_ms()) + 1))
            continue;
        poll_seen = "readable";
        fl = sizeof from;
        ssize_t n = recvfrom(s, buf, sizeof buf - 1, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
        if (n >= 0) {
            buf[n] = 0;
            snprintf(data_seen, sizeof data_seen, "%zd bytes from %s: %.40s", n,
                     fmt_addr((void *)&from, fl), buf);
            break;
        }
        /* Readable but nothing to read: spin a little less. */
        usleep(20000);
    }
    out("stray_poll=%s", poll_seen);
    out("stray_data=%s", data_seen);
    /* Whatever the strays did, the next reply is the real echo. */
    if (echo_once(s, "second", "second", buf, sizeof buf, &from, &fl) < 0)
        return 1;
    out("second=%s from=%s", buf, fmt_addr((void *)&from, fl));
    close(s);
    out("alive");
    return 0;
}

/* ---- rawmmsg ---- */

static void raw_round(const char *tag, int connected) {
    int s = udp_socket(fam);
    if (connected && connect(s, (struct sockaddr *)&dst, dstlen) < 0) {
        out("%s connect=%s", tag, en(errno));
        close(s);
        return;
    }
    char msg[64];
    snprintf(msg, sizeof msg, "%s-hello", tag);
    struct iovec iov = {.iov_base = msg, .iov_len = strlen(msg)};
    struct mmsghdr m;
    memset(&m, 0, sizeof m);
    m.msg_hdr.msg_iov = &iov;
    m.msg_hdr.msg_iovlen = 1;
    if (!connected) {
        m.msg_hdr.msg_name = &dst;
        m.msg_hdr.msg_namelen = dstlen;
    }
    long sent = syscall(SYS_sendmmsg, s, &m, 1, 0);
    int serr = errno;
    char buf[256] = "";
    struct sockaddr_storage from;
    struct iovec riov = {.iov_base = buf, .iov_len = sizeof buf - 1};
    struct mmsghdr r;
    memset(&r, 0, sizeof r);
    r.msg_hdr.msg_iov = &riov;
    r.msg_hdr.msg_iovlen = 1;
    r.msg_hdr.msg_name = &from;
    r.msg_hdr.msg_namelen = sizeof from;
    long got = -1;
    int rerr = 0;
    if (sent == 1 && readable(s, 3000)) {
        got = syscall(SYS_recvmmsg, s, &r, 1, MSG_DONTWAIT, NULL);
        rerr = errno;
    }
    if (got == 1)
        buf[r.msg_len] = 0;
    out("%s sent=%s got=%s from=%s", tag, sent == 1 ? "1" : sent < 0 ? en(serr) : "0",
        got == 1 ? buf : got < 0 && rerr ? en(rerr) : "nothing",
        got == 1 ? fmt_addr((void *)&from, r.msg_hdr.msg_namelen) : "-");
    close(s);
}

static int mode_rawmmsg(void) {
    raw_round("raw_unconnected", 0);
    raw_round("raw_connected", 1);
    out("alive");
    return 0;
}

/* ---- flood ---- */

static uint32_t max_size;

static uint32_t size_of(uint32_t i) {
    static const uint32_t edges[] = {1462, 1463, 1472, 1473, 1480, 4096, 8192, 9000,
                                     16384, 32768, 65000, 0 /* max */, 0};
    if (i < 64)
        return i + 1;
    if (i < 64 + sizeof edges / sizeof edges[0]) {
        uint32_t e = edges[i - 64];
        return e == 0 ? max_size : e;
    }
    if (i % 1000 == 999)
        return max_size;
    if (i % 100 == 50)
        return max_size - (i % 997);
    uint32_t r = i * 2654435761u;
    r ^= r >> 13;
    r *= 0x5bd1e995u;
    r ^= r >> 15;
    uint32_t p = r % 100;
    if (p < 80)
        return 4 + (r >> 8) % 1469;
    if (p < 95)
        return 1473 + (r >> 8) % 15000;
    return 16473 + (r >> 8) % (max_size - 16473 + 1);
}

static uint8_t byte_of(uint32_t i, uint32_t j) {
    uint32_t x = i * 0x9E3779B1u + j * 0x85EBCA77u;
    x ^= x >> 15;
    return (uint8_t)(x ^ (j >> 8));
}

/* Datagram i: its bytes, with the sequence number in the first 4 (if it has 4). */
static void fill(uint8_t *p, uint32_t i, uint32_t len) {
    for (uint32_t j = 0; j < len; j++)
        p[j] = byte_of(i, j);
    if (len >= 4)
        memcpy(p, &i, 4);
}

static int mode_flood(uint32_t count) {
    /* What fits through the relay: the largest UDP payload (65507 for IPv4, 65527 for
     * IPv6) minus the SOCKS5 header for the target's address type (10 / 22 bytes). */
    max_size = fam == AF_INET ? 65507 - 10 : 65527 - 22 - 20;
    int s = udp_socket(fam);
    int big = 4 << 20;
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    setsockopt(s, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    static uint8_t sbuf[65536], rbuf[65536 + 64], want[65536];
    enum { WIN = 16, WIN_BYTES = 96 * 1024 };
    uint32_t ring[WIN]; /* outstanding sequence numbers, oldest first */
    double sent_at[WIN];
    int head = 0, nout = 0;
    uint64_t out_bytes = 0, bytes = 0;
    uint32_t next = 0, received = 0, lost = 0, late = 0, bad = 0, biggest = 0;
    double start = now_ms(), limit = start + 25000;
    int timed_out = 0;
    while (next < count || nout > 0) {
        if (now_ms() > limit) {
            timed_out = 1;
            break;
        }
        /* The first 64 strictly one at a time (they are tiny and identified by order). */
        int win = next < 64 ? 1 : WIN;
        while (next < count && nout < win &&
               (nout == 0 || out_bytes + size_of(next) <= WIN_BYTES)) {
            uint32_t len = size_of(next);
            fill(sbuf, next, len);
            ssize_t k = sendto(s, sbuf, len, 0, (struct sockaddr *)&dst, dstlen);
            if (k != (ssize_t)len) {
                out("bad send i=%u len=%u: %s", next, len, k < 0 ? en(errno) : "short");
                return 1;
            }
            if (len > biggest)
                biggest = len;
            ring[(head + nout) % WIN] = next;
            sent_at[(head + nout) % WIN] = now_ms();
            nout++;
            out_bytes += len;
            next++;
        }
        if (!readable(s, 50)) {
            /* The oldest has had 300 ms: count it lost. */
            if (nout > 0 && now_ms() - sent_at[head] > 300) {
                lost++;
                out_bytes -= size_of(ring[head]);
                head = (head + 1) % WIN;
                nout--;
            }
            continue;
        }
        struct sockaddr_storage from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(s, rbuf, sizeof rbuf, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
        if (n < 0)
            continue;
        if (fl != dstlen || memcmp(&from, &dst, dstlen) != 0) {
            if (bad++ == 0)
                out("bad from=%s len=%zd", fmt_addr((void *)&from, fl), n);
            continue;
        }
        uint32_t seq;
        if (n >= 4)
            memcpy(&seq, rbuf, 4);
        else
            seq = nout > 0 ? ring[head] : UINT32_MAX;
        /* Find it among the outstanding ones. */
        int at = -1;
        for (int k = 0; k < nout; k++)
            if (ring[(head + k) % WIN] == seq) {
                at = k;
                break;
            }
        if (at < 0) {
            late++;
            continue;
        }
        uint32_t len = size_of(seq);
        fill(want, seq, len);
        if ((uint32_t)n != len || memcmp(rbuf, want, len) != 0) {
            if (bad++ == 0) {
                uint32_t j = 0;
                while (j < len && j < (uint32_t)n && rbuf[j] == want[j])
                    j++;
                out("bad i=%u want_len=%u got_len=%zd first_diff=%u", seq, len, n, j);
            }
        } else {
            received++;
            bytes += len;
        }
        /* Everything older than it is lost (the echo keeps order). */
        for (int k = 0; k <= at; k++) {
            if (k < at)
                lost++;
            out_bytes -= size_of(ring[head]);
            head = (head + 1) % WIN;
            nout--;
        }
    }
    out("flood sent=%u received=%u lost=%u late=%u bad=%u maxsize=%u bytes=%llu ms=%.0f%s",
        next, received, lost, late, bad, biggest, (unsigned long long)bytes,
        now_ms() - start, timed_out ? " timeout" : "");
    close(s);
    out("alive");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: udpprobe MODE HOST PORT [ARGS]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *mode = argv[1];
    resolve(argv[2], argv[3]);
    if (!strcmp(mode, "mmsg"))
        return mode_mmsg();
    if (!strcmp(mode, "ancil"))
        return mode_ancil();
    if (!strcmp(mode, "mapped"))
        return mode_mapped();
    if (!strcmp(mode, "rawmmsg"))
        return mode_rawmmsg();
    if (!strcmp(mode, "flags"))
        return mode_flags();
    if (!strcmp(mode, "stray") && argc > 4)
        return mode_stray(atoi(argv[4]), argc > 5 && !strcmp(argv[5], "connect"));
    if (!strcmp(mode, "flood") && argc > 4)
        return mode_flood((uint32_t)strtoul(argv[4], NULL, 10));
    fprintf(stderr, "udpprobe: bad mode %s\n", mode);
    return 2;
}
