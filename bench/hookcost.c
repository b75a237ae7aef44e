/* hookcost: what a preload layer adds to calls on fds that are not its own.
 *
 *   hookcost N
 *
 * Each figure is nanoseconds per call, timed with clock_gettime(CLOCK_MONOTONIC) (vDSO,
 * never hooked) around batches, so the clock's own cost is spread over many calls.
 * On a shared 2-core VM the sum over all batches moves by +-20 % from run to run
 * (preemption, steal), which drowns a 15 ns difference; so each line gives the fastest
 * batch (min: the systematic cost, what a hook adds on every call) and the median batch:
 *   write  - 1-byte write to a pipe (batches of 4096, under the 64 KiB pipe buffer)
 *   read   - 1-byte read from that pipe (the bytes the write batch left)
 *   poll   - poll() on the empty pipe's read end, timeout 0 (returns 0)
 *   dup    - dup() of the pipe's read end (batches of 256 fds)
 *   close  - close() of those dup'd fds
 * Run it with and without LD_PRELOAD; the difference is the hook's cost.
 * Output: "NAME MIN_NS MEDIAN_NS" per line.
 */
#include <poll.h>
#include <string.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

#define PIPE_BATCH 4096
#define FD_BATCH 256

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Prints the fastest and the median batch, in ns per call. */
static void report(const char *name, double *v, long k) {
    qsort(v, (size_t)k, sizeof *v, cmp_d);
    printf("%s %.2f %.2f\n", name, v[0], v[k / 2]);
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    if (n < PIPE_BATCH || n > 100000000) {
        fprintf(stderr, "usage: hookcost N   (%d <= N <= 1e8)\n", PIPE_BATCH);
        return 2;
    }
    alarm(120);
    int p[2];
    if (pipe(p) < 0) { perror("hookcost: pipe"); return 1; }
    char c = 'x';

    long batches = n / PIPE_BATCH;
    long fbatches = n / FD_BATCH;
    double *vw = calloc((size_t)batches, sizeof(double));
    double *vr = calloc((size_t)batches, sizeof(double));
    double *vp = calloc((size_t)batches, sizeof(double));
    double *vd = calloc((size_t)fbatches, sizeof(double));
    double *vc = calloc((size_t)fbatches, sizeof(double));
    if (!vw || !vr || !vp || !vd || !vc) return 1;

    for (long b = 0; b < batches; b++) {
        uint64_t t0 = now_ns();
        for (int i = 0; i < PIPE_BATCH; i++)
            if (write(p[1], &c, 1) != 1) { perror("hookcost: write"); return 1; }
        uint64_t t1 = now_ns();
        for (int i = 0; i < PIPE_BATCH; i++)
            if (read(p[0], &c, 1) != 1) { perror("hookcost: read"); return 1; }
        uint64_t t2 = now_ns();
        vw[b] = (double)(t1 - t0) / PIPE_BATCH;
        vr[b] = (double)(t2 - t1) / PIPE_BATCH;
    }

    struct pollfd pfd = {.fd = p[0], .events = POLLIN};
    for (long b = 0; b < batches; b++) {
        uint64_t t0 = now_ns();
        for (int i = 0; i < PIPE_BATCH; i++)
            if (poll(&pfd, 1, 0) != 0) { perror("hookcost: poll"); return 1; }
        vp[b] = (double)(now_ns() - t0) / PIPE_BATCH;
    }

    int fds[FD_BATCH];
    for (long b = 0; b < fbatches; b++) {
        uint64_t a = now_ns();
        for (int i = 0; i < FD_BATCH; i++)
            if ((fds[i] = dup(p[0])) < 0) { perror("hookcost: dup"); return 1; }
        uint64_t m = now_ns();
        for (int i = 0; i < FD_BATCH; i++)
            if (close(fds[i]) != 0) { perror("hookcost: close"); return 1; }
        uint64_t e = now_ns();
        vd[b] = (double)(m - a) / FD_BATCH;
        vc[b] = (double)(e - m) / FD_BATCH;
    }

    report("write", vw, batches);
    report("read", vr, batches);
    report("poll", vp, batches);
    report("dup", vd, fbatches);
    report("close", vc, fbatches);
    return 0;
}
