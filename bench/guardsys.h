/* guardsys.h: what bench/guardcost.c and bench/guardconn.c share — a system call that
 * bypasses every libc function, and a monotonic clock in nanoseconds. */
#ifndef GUARDSYS_H
#define GUARDSYS_H

#include <errno.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

/* A system call made with the `syscall` instruction itself, as Go's runtime does: no libc
 * function (not even syscall(3), which a preload layer may interpose) is in the path.
 * Returns -1 with errno set on failure, like syscall(3). */
static long raw_syscall(long n, long a, long b, long c, long d, long e, long f)
{
#if defined(__x86_64__)
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    if (ret < 0 && ret > -4096) {
        errno = (int)-ret;
        return -1;
    }
    return ret;
#else
    return syscall(n, a, b, c, d, e, f);
#endif
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

#endif
