/* guardcost: what a seccomp filter adds to system calls, trapped and untrapped.
 *
 *   guardcost N [M]
 *
 * Run bare, under `laysocks --no-guard` and under `laysocks` (the guard); the differences
 * between the runs are the cost of the filter (untrapped calls) and of a round trip to the
 * supervisor (trapped calls). The calls are made with the `syscall` instruction itself, so
 * no libc function or preload hook sits in the path and the --no-guard and guard runs
 * differ only by the filter.
 *
 * Untrapped (N calls each, batches of 4096 or 256):
 *   getppid   - getppid(2): the cheapest call there is (no arguments, no fd)
 *   read0     - a 0-byte read(2) of /dev/null
 *   write1    - a 1-byte write(2) to /dev/null
 *   send      - a 1-byte send(2) (sendto with a NULL address: the filter lets it through
 *               on the argument alone) on a unix datagram socketpair, drained by recv
 * Trapped (M calls each, default N / 50; every one is a notification to the supervisor):
 *   sendmsg   - a 1-byte sendmsg(2) on that socketpair (the filter cannot look inside the
 *               msghdr, so every sendmsg traps, and the supervisor lets it continue)
 *   getpeername - getpeername(2) on the socketpair (traps always; continued)
 *
 * Each figure is nanoseconds per call, timed with clock_gettime(CLOCK_MONOTONIC) (vDSO,
 * no system call, never trapped) around batches. On a shared 2-core VM the total moves by
 * +-20 % between runs (preemption, steal), which would drown a 10 ns difference, so each
 * line gives the fastest batch (the systematic cost, what the filter adds to every call)
 * and the median batch. Output: "NAME MIN_NS MEDIAN_NS" per line.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "guardsys.h"

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Prints the fastest and the median batch, in ns per call. */
static void report(const char *name, double *v, long k)
{
    qsort(v, (size_t)k, sizeof *v, cmp_d);
    printf("%s %.2f %.2f\n", name, v[0], v[k / 2]);
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

#define BIG 4096
/* Under the unix datagram queue limit (net.unix.max_dgram_qlen, 512 by default): a batch
 * of sends must never block waiting for the reader. */
#define SMALL 256

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    long m = argc > 2 ? atol(argv[2]) : n / 50;
    if (n < BIG || n > 100000000 || m < SMALL || m > n) {
        fprintf(stderr, "usage: guardcost N [M]   (%d <= N <= 1e8, %d <= M <= N)\n", BIG, SMALL);
        return 2;
    }
    alarm(120);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    int sp[2];
    if (null < 0)
        die("guardcost: /dev/null");
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sp) < 0)
        die("guardcost: socketpair");
    char c = 'x';
    long nb = n / BIG, ns = n / SMALL, ms = m / SMALL;
    double *v = calloc((size_t)nb + (size_t)ns, sizeof(double));
    double *w = calloc((size_t)ns, sizeof(double));
    if (!v || !w)
        return 1;

    for (long b = 0; b < nb; b++) {
        uint64_t t0 = now_ns();
        for (int i = 0; i < BIG; i++)
            raw_syscall(SYS_getppid, 0, 0, 0, 0, 0, 0);
        v[b] = (double)(now_ns() - t0) / BIG;
    }
    report("getppid", v, nb);

    for (long b = 0; b < nb; b++) {
        uint64_t t0 = now_ns();
        for (int i = 0; i < BIG; i++)
            if (raw_syscall(SYS_read, null, (long)&c, 0, 0, 0, 0) != 0)
                die("guardcost: read");
        v[b] = (double)(now_ns() - t0) / BIG;
    }
    report("read0", v, nb);

    for (long b = 0; b < nb; b++) {
        uint64_t t0 = now_ns();
        for (int i = 0; i < BIG; i++)
            if (raw_syscall(SYS_write, null, (long)&c, 1, 0, 0, 0) != 1)
                die("guardcost: write");
        v[b] = (double)(now_ns() - t0) / BIG;
    }
    report("write1", v, nb);

    /* send = sendto(fd, buf, len, flags, NULL, 0) */
    for (long b = 0; b < ns; b++) {
        uint64_t t0 = now_ns();
        for (int i = 0; i < SMALL; i++)
            if (raw_syscall(SYS_sendto, sp[0], (long)&c, 1, 0, 0, 0) != 1)
                die("guardcost: send");
        v[b] = (double)(now_ns() - t0) / SMALL;
        for (int i = 0; i < SMALL; i++)
            if (raw_syscall(SYS_recvfrom, sp[1], (long)&c, 1, 0, 0, 0) != 1)
                die("guardcost: recv");
    }
    report("send", v, ns);

    struct iovec iov = {.iov_base = &c, .iov_len = 1};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    for (long b = 0; b < ms; b++) {
        uint64_t t0 = now_ns();
        for (int i = 0; i < SMALL; i++)
            if (raw_syscall(SYS_sendmsg, sp[0], (long)&mh, 0, 0, 0, 0) != 1)
                die("guardcost: sendmsg");
        w[b] = (double)(now_ns() - t0) / SMALL;
        for (int i = 0; i < SMALL; i++)
            if (raw_syscall(SYS_recvfrom, sp[1], (long)&c, 1, 0, 0, 0) != 1)
                die("guardcost: recv");
    }
    report("sendmsg", w, ms);

    struct sockaddr_storage ss;
    for (long b = 0; b < ms; b++) {
        uint64_t t0 = now_ns();
        for (int i = 0; i < SMALL; i++) {
            socklen_t len = sizeof ss;
            if (raw_syscall(SYS_getpeername, sp[0], (long)&ss, (long)&len, 0, 0, 0) != 0)
                die("guardcost: getpeername");
        }
        w[b] = (double)(now_ns() - t0) / SMALL;
    }
    report("getpeername", w, ms);
    return 0;
}
