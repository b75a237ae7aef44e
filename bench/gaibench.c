/* gaibench: getaddrinfo latency, throughput and the behaviour of a name table under
 * threads. See bench/README.md, section "DNS".
 *
 *   gaibench seq [-n N] [-w WARM] [-t SECS] [-m distinct|same] [-f 4|6|any] [-p SALT]
 *       N sequential getaddrinfo + freeaddrinfo calls in one thread, timed one by one,
 *       after WARM untimed ones (other names) that load NSS and read resolv.conf.
 *       distinct: every call a new name; same: one name every time.
 *
 *   gaibench threads [-T THREADS] [-n PER_THREAD] [-s SHARED] [-t SECS] [-f 4|6|any]
 *                    [-p SALT] [-N]
 *       own:    THREADS threads start together (barrier), each resolves PER_THREAD names
 *               of its own, once each;
 *       shared: all threads resolve the same SHARED names, in the same order;
 *       again:  every thread resolves its own names again; a name must keep its address
 *               (and a name that failed with EAI_MEMORY must still fail: else the table
 *               grew past its bound).
 *       It checks that the addresses are distinct between names and the same for a name
 *       across threads and phases, and with -N resolves numeric addresses with
 *       AI_NUMERICHOST instead (a reference with no name table: the machine's ceiling).
 *       If LAYSOCKS_LAYER names a table file (key `names=`), its size and allocated
 *       blocks are taken before, at the first EAI_MEMORY and after every phase.
 *
 * Every phase stops at SECS seconds (default 60) whatever it has done. Output: one line
 * of key=value per run (seq) or per phase plus a summary line (threads), for bench/dns.sh.
 * Names end in .gai.example (RFC 2606): if one ever leaked it could not resolve.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

#define NOT_CALLED (-100000) /* no getaddrinfo error code is this */

static int family = AF_INET;
static const char *fam_name = "4";
static const char *salt = "b";
static double cap_s = 60;

/* What one call returned: rc, the first IPv4 and first IPv6 address. */
struct answer {
    int rc;
    int has4, has6;
    uint32_t v4;          /* network order */
    unsigned char v6[16];
};

static int resolve(const char *name, int flags, struct answer *a)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = flags;
    int rc = getaddrinfo(name, "80", &hints, &res);
    if (a) {
        a->rc = rc;
        a->has4 = a->has6 = 0;
    }
    if (rc == 0) {
        for (struct addrinfo *p = res; p && a; p = p->ai_next) {
            if (p->ai_family == AF_INET && !a->has4) {
                a->v4 = ((struct sockaddr_in *)p->ai_addr)->sin_addr.s_addr;
                a->has4 = 1;
            } else if (p->ai_family == AF_INET6 && !a->has6) {
                memcpy(a->v6, &((struct sockaddr_in6 *)p->ai_addr)->sin6_addr, 16);
                a->has6 = 1;
            }
        }
        freeaddrinfo(res);
    }
    return rc;
}

static void fmt_answer(const struct answer *a, char *buf, size_t len)
{
    char s4[INET_ADDRSTRLEN] = "-", s6[INET6_ADDRSTRLEN] = "-";
    if (a->has4)
        inet_ntop(AF_INET, &a->v4, s4, sizeof s4);
    if (a->has6)
        inet_ntop(AF_INET6, a->v6, s6, sizeof s6);
    snprintf(buf, len, "%s,%s", s4, s6);
}

/* Latency statistics of n samples in ns (sorts them). */
static void stats(const char *pfx, uint32_t *ns, size_t n)
{
    if (n == 0) {
        printf(" %smedian_us=nan %sp99_us=nan %smax_us=nan", pfx, pfx, pfx);
        return;
    }
    qsort(ns, n, sizeof *ns, cmp_u32);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += ns[i];
    size_t i99 = (size_t)(n * 0.99);
    if (i99 >= n)
        i99 = n - 1;
    printf(" %smedian_us=%.3f %sp90_us=%.3f %sp99_us=%.3f %smean_us=%.3f %smin_us=%.3f %smax_us=%.3f",
           pfx, ns[n / 2] / 1e3, pfx, ns[n * 9 / 10] / 1e3, pfx, ns[i99] / 1e3,
           pfx, sum / n / 1e3, pfx, ns[0] / 1e3, pfx, ns[n - 1] / 1e3);
}

static uint32_t ns_since(double t0, double t1)
{
    double d = (t1 - t0) * 1e9;
    return d > 4e9 ? 4000000000u : (uint32_t)d;
}

/* ------------------------------------------------------------------ seq */
static int run_seq(long n, long warm, int same)
{
    char name[256];
    uint32_t *lat = malloc(n * sizeof *lat);
    if (!lat) {
        perror("malloc");
        return 1;
    }
    pid_t pid = getpid();
    for (long i = 0; i < warm; i++) {
        snprintf(name, sizeof name, "w%ld.%s-%d.gai.example", i, salt, (int)pid);
        resolve(name, 0, NULL);
    }
    struct answer a = {0}, first = {0};
    long done = 0, errs = 0;
    int first_err = 0;
    snprintf(name, sizeof name, "same.%s-%d.gai.example", salt, (int)pid);
    double t_start = now(), t_end = t_start + cap_s;
    for (long i = 0; i < n; i++) {
        if (!same)
            snprintf(name, sizeof name, "n%ld.%s-%d.gai.example", i, salt, (int)pid);
        double t0 = now();
        int rc = resolve(name, 0, &a);
        double t1 = now();
        lat[done++] = ns_since(t0, t1);
        if (rc != 0) {
            if (!errs)
                first_err = rc;
            errs++;
        } else if (i == 0) {
            first = a;
        }
        if (t1 > t_end)
            break;
    }
    double wall = now() - t_start;
    char addr[128];
    fmt_answer(&first, addr, sizeof addr);
    printf("ok=1 mode=%s family=%s n=%ld done=%ld errors=%ld first_error=%s wall_s=%.4f calls_per_s=%.1f addr=%s",
           same ? "same" : "distinct", fam_name, n, done, errs,
           errs ? gai_strerror(first_err) : "-", wall, done / wall, addr);
    stats("", lat, done);
    printf("\n");
    free(lat);
    return 0;
}

/* ------------------------------------------------------------------ threads */
static int nthreads = 16;
static long per_thread = 10000;
static long nshared = 1000;
static int numeric;
static int prefault;
static pthread_barrier_t barrier;
static struct answer *own;       /* [thread * per_thread + i] */
static struct answer *again;
static struct answer *shared;    /* [thread * nshared + i] */
static uint32_t *lat;            /* per phase: [thread * max(per_thread, nshared) + i] */
static long lat_stride;
static long *done;               /* per thread, calls made in the phase */
static double phase_t0, phase_t1[256];
static int phase;                /* 0 own, 1 shared, 2 again */
static char names_file[4096];
static atomic_int saw_full;
static struct stat st_full;
static atomic_long full_at_calls; /* calls made in phase own when the first EAI_MEMORY came back */
/* calls made so far in the phase, one cache line per thread (a shared counter would be
 * a contended cache line of the harness's own) */
static struct { _Atomic long n; char pad[56]; } *progress;

static void name_of(char *buf, size_t len, int t, long i, int is_shared)
{
    if (numeric) {
        /* distinct numeric addresses: 198.51.100.0/24 has only 256, so let the text
         * differ in a way inet_pton accepts: the same address every time is fine for a
         * reference that has no table. */
        snprintf(buf, len, "198.51.100.%ld", (i + t) % 256);
        return;
    }
    if (is_shared)
        snprintf(buf, len, "s%ld.%s.gai.example", i, salt);
    else
        snprintf(buf, len, "t%d-%ld.%s.gai.example", t, i, salt);
}

static void *worker(void *arg)
{
    int t = (int)(intptr_t)arg;
    char name[256];
    int flags = numeric ? AI_NUMERICHOST : 0;
    for (int ph = 0; ph < 3; ph++) {
        pthread_barrier_wait(&barrier); /* main sets phase, resets counters */
        pthread_barrier_wait(&barrier); /* everyone starts together */
        long n = ph == 1 ? nshared : per_thread;
        struct answer *out = ph == 0 ? own + t * per_thread : ph == 1 ? shared + t * nshared : again + t * per_thread;
        uint32_t *l = lat + t * lat_stride;
        double t_end = phase_t0 + cap_s;
        long k = 0;
        for (long i = 0; i < n; i++) {
            name_of(name, sizeof name, t, i, ph == 1);
            double a = now();
            int rc = resolve(name, flags, &out[i]);
            double b = now();
            l[k++] = ns_since(a, b);
            atomic_store_explicit(&progress[t].n, k, memory_order_relaxed);
            if (rc == EAI_MEMORY && ph == 0 && !atomic_exchange(&saw_full, 1)) {
                if (names_file[0])
                    stat(names_file, &st_full);
                long sum = 0; /* approximate: the other threads run on */
                for (int u = 0; u < nthreads; u++)
                    sum += atomic_load_explicit(&progress[u].n, memory_order_relaxed);
                atomic_store(&full_at_calls, sum);
            }
            if (b > t_end)
                break;
        }
        done[t] = k;
        phase_t1[t] = now();
        pthread_barrier_wait(&barrier); /* phase over */
    }
    return NULL;
}

static void file_stat(const char *key)
{
    struct stat st;
    if (!names_file[0])
        return;
    if (stat(names_file, &st) == 0)
        printf(" %s_size=%lld %s_blocks=%lld", key, (long long)st.st_size, key, (long long)st.st_blocks);
    else
        printf(" %s_size=error:%s", key, strerror(errno));
}

/* names=... from LAYSOCKS_LAYER, percent-decoded */
static void find_names_file(void)
{
    const char *l = getenv("LAYSOCKS_LAYER");
    if (!l)
        return;
    const char *p = l;
    while ((p = strstr(p, ";names=")) != NULL) {
        p += 7;
        size_t o = 0;
        while (*p && *p != ';' && o + 1 < sizeof names_file) {
            if (*p == '%' && p[1] && p[2]) {
                char hex[3] = {p[1], p[2], 0};
                names_file[o++] = (char)strtol(hex, NULL, 16);
                p += 3;
            } else {
                names_file[o++] = *p++;
            }
        }
        names_file[o] = 0;
        return;
    }
}

static int cmp_v6(const void *a, const void *b) { return memcmp(a, b, 16); }

static int in_pool4(uint32_t a) { return (ntohl(a) & 0xfffe0000u) == 0xc6120000u; } /* 198.18.0.0/15 */
static const unsigned char pool6[8] = {0xfd, 0x6c, 0x61, 0x79, 0x73, 0x6f, 0x63, 0x6b};

static int run_threads(void)
{
    if (nthreads < 1 || nthreads > 256) {
        fprintf(stderr, "gaibench: 1..256 threads\n");
        return 2;
    }
    find_names_file();
    long tot = nthreads * per_thread;
    lat_stride = per_thread > nshared ? per_thread : nshared;
    own = calloc(tot, sizeof *own);
    again = calloc(tot, sizeof *again);
    shared = calloc(nthreads * nshared, sizeof *shared);
    lat = malloc(nthreads * lat_stride * sizeof *lat);
    done = calloc(nthreads, sizeof *done);
    progress = aligned_alloc(64, nthreads * sizeof *progress);
    if (progress)
        memset(progress, 0, nthreads * sizeof *progress);
    uint32_t *all = malloc(nthreads * lat_stride * sizeof *all);
    if (!own || !again || !shared || !lat || !done || !all || !progress) {
        perror("malloc");
        return 1;
    }
    for (long i = 0; i < tot; i++)
        own[i].rc = again[i].rc = NOT_CALLED;
    for (long i = 0; i < nthreads * nshared; i++)
        shared[i].rc = NOT_CALLED;
    if (prefault && names_file[0]) {
        /* diagnostic (-F): allocate the table file's pages before the threads start,
         * as fallocate(2) does without changing a byte, so the inserts do not take the
         * first-touch page faults of a fresh tmpfs file */
        int fd = open(names_file, O_RDWR);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0 || fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, st.st_size) != 0)
            fprintf(stderr, "gaibench: -F: %s: %s\n", names_file, strerror(errno));
        if (fd >= 0)
            close(fd);
    }
    printf("phase=start threads=%d per_thread=%ld shared=%ld family=%s numeric=%d names_file=%s",
           nthreads, per_thread, nshared, fam_name, numeric, names_file[0] ? names_file : "-");
    file_stat("file");
    printf("\n");
    fflush(stdout);
    pthread_barrier_init(&barrier, NULL, nthreads + 1);
    pthread_t *th = calloc(nthreads, sizeof *th);
    for (int t = 0; t < nthreads; t++)
        if (pthread_create(&th[t], NULL, worker, (void *)(intptr_t)t) != 0) {
            perror("pthread_create");
            return 1;
        }
    static const char *pname[3] = {"own", "shared", "again"};
    for (int ph = 0; ph < 3; ph++) {
        phase = ph;
        struct rusage r0, r1;
        pthread_barrier_wait(&barrier);
        getrusage(RUSAGE_SELF, &r0);
        phase_t0 = now();
        pthread_barrier_wait(&barrier);
        pthread_barrier_wait(&barrier);
        double t_last = phase_t0;
        for (int t = 0; t < nthreads; t++)
            if (phase_t1[t] > t_last)
                t_last = phase_t1[t];
        getrusage(RUSAGE_SELF, &r1);
        double wall = t_last - phase_t0;
        long calls = 0, ok = 0, nomem = 0, other = 0;
        int other_rc = 0;
        long n = ph == 1 ? nshared : per_thread;
        struct answer *arr = ph == 0 ? own : ph == 1 ? shared : again;
        for (int t = 0; t < nthreads; t++) {
            memcpy(all + calls, lat + t * lat_stride, done[t] * sizeof *all);
            calls += done[t];
            for (long i = 0; i < done[t]; i++) {
                int rc = arr[t * n + i].rc;
                if (rc == 0)
                    ok++;
                else if (rc == EAI_MEMORY)
                    nomem++;
                else {
                    other++;
                    other_rc = rc;
                }
            }
        }
        double cpu = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) + (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) * 1e-6 +
                     (r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) + (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) * 1e-6;
        double sys = (r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) + (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) * 1e-6;
        printf("phase=%s threads=%d calls=%ld expected=%ld ok=%ld eai_memory=%ld other_errors=%ld other_error=%s "
               "wall_s=%.4f calls_per_s=%.1f cpu_s=%.4f sys_s=%.4f cpu_us_per_call=%.3f vcsw=%ld ivcsw=%ld",
               pname[ph], nthreads, calls, n * nthreads, ok, nomem, other, other ? gai_strerror(other_rc) : "-",
               wall, calls / wall, cpu, sys, calls ? cpu / calls * 1e6 : 0.0,
               r1.ru_nvcsw - r0.ru_nvcsw, r1.ru_nivcsw - r0.ru_nivcsw);
        stats("", all, calls);
        file_stat("file");
        if (!numeric && ph < 2) {
            /* A new name after the phase: its placeholder's slot number is how many slots
             * the table has handed out (slot i is pool4 + 1 + i, in order). */
            char pn[256];
            struct answer a;
            snprintf(pn, sizeof pn, "probe-%s.%s.gai.example", pname[ph], salt);
            resolve(pn, 0, &a);
            if (a.rc == 0 && a.has4 && in_pool4(a.v4))
                printf(" probe_slot=%ld", (long)(ntohl(a.v4) - 0xc6120000u - 1));
            else if (a.rc == 0 && a.has6 && memcmp(a.v6, pool6, 8) == 0)
                printf(" probe_slot=%ld", (long)(((uint32_t)a.v6[12] << 24 | a.v6[13] << 16 | a.v6[14] << 8 | a.v6[15]) - 1));
            else
                printf(" probe_slot=none probe_error=%s", a.rc ? gai_strerror(a.rc) : "not-a-placeholder");
        }
        printf("\n");
        fflush(stdout);
    }
    for (int t = 0; t < nthreads; t++)
        pthread_join(th[t], NULL);

    /* checks (numeric: only that the calls worked) */
    long own_ok = 0, own_nomem = 0, changed = 0, lost = 0, grew = 0, not_placeholder = 0;
    long v4n = 0, v6n = 0, dup4 = 0, dup6 = 0, shared_split = 0, shared_ok_names = 0;
    uint32_t *v4 = malloc(tot * sizeof *v4);
    unsigned char *v6 = malloc(tot * 16 + 16);
    for (int t = 0; t < nthreads; t++)
        for (long i = 0; i < per_thread; i++) {
            struct answer *a = &own[t * per_thread + i], *b = &again[t * per_thread + i];
            if (a->rc == NOT_CALLED)
                continue;
            if (a->rc == 0) {
                own_ok++;
                if (a->has4) {
                    v4[v4n++] = a->v4;
                    if (!numeric && !in_pool4(a->v4))
                        not_placeholder++;
                }
                if (a->has6) {
                    memcpy(v6 + 16 * v6n++, a->v6, 16);
                    if (!numeric && memcmp(a->v6, pool6, 8) != 0)
                        not_placeholder++;
                }
                if (b->rc == NOT_CALLED)
                    ;
                else if (b->rc != 0)
                    lost++;
                else if (a->has4 != b->has4 || a->has6 != b->has6 || (a->has4 && a->v4 != b->v4) ||
                         (a->has6 && memcmp(a->v6, b->v6, 16) != 0))
                    changed++;
            } else if (a->rc == EAI_MEMORY) {
                own_nomem++;
                if (b->rc == 0)
                    grew++;
            }
        }
    if (!numeric) {
        qsort(v4, v4n, sizeof *v4, cmp_u32);
        for (long i = 1; i < v4n; i++)
            dup4 += v4[i] == v4[i - 1];
        qsort(v6, v6n, 16, cmp_v6);
        for (long i = 1; i < v6n; i++)
            dup6 += memcmp(v6 + 16 * i, v6 + 16 * (i - 1), 16) == 0;
        for (long i = 0; i < nshared; i++) {
            struct answer *r = NULL;
            int split = 0;
            for (int t = 0; t < nthreads; t++) {
                struct answer *a = &shared[t * nshared + i];
                if (a->rc != 0) /* failed or not called */
                    continue;
                if (!r)
                    r = a;
                else if (a->has4 != r->has4 || a->has6 != r->has6 || (a->has4 && a->v4 != r->v4) ||
                         (a->has6 && memcmp(a->v6, r->v6, 16) != 0))
                    split = 1;
            }
            shared_ok_names += r != NULL;
            shared_split += split;
        }
    }
    char sample[128] = "-";
    if (tot)
        fmt_answer(&own[0], sample, sizeof sample);
    printf("phase=check own_ok=%ld own_eai_memory=%ld changed=%ld lost=%ld grew=%ld not_placeholder=%ld "
           "distinct_v4=%ld dup_v4=%ld distinct_v6=%ld dup_v6=%ld shared_names_ok=%ld shared_split=%ld "
           "calls_before_full=%ld sample=%s",
           own_ok, own_nomem, changed, lost, grew, not_placeholder, v4n - dup4, dup4, v6n - dup6, dup6,
           shared_ok_names, shared_split, atomic_load(&saw_full) ? atomic_load(&full_at_calls) : -1L, sample);
    if (atomic_load(&saw_full) && names_file[0])
        printf(" full_size=%lld full_blocks=%lld", (long long)st_full.st_size, (long long)st_full.st_blocks);
    printf("\n");
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: gaibench seq [-n N] [-w WARM] [-t SECS] [-m distinct|same] [-f 4|6|any] [-p SALT]\n"
                    "       gaibench threads [-T THREADS] [-n PER_THREAD] [-s SHARED] [-t SECS] [-f 4|6|any] [-p SALT] [-N]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    const char *cmd = argv[1];
    long n = 20000, warm = 100;
    int same = 0, opt;
    int seq = strcmp(cmd, "seq") == 0;
    if (!seq && strcmp(cmd, "threads") != 0)
        usage();
    optind = 2;
    if (!seq)
        n = per_thread;
    while ((opt = getopt(argc, argv, "n:w:t:m:f:p:T:s:NF")) != -1) {
        switch (opt) {
        case 'n': n = atol(optarg); break;
        case 'w': warm = atol(optarg); break;
        case 't': cap_s = atof(optarg); break;
        case 'm':
            if (strcmp(optarg, "same") == 0) same = 1;
            else if (strcmp(optarg, "distinct") == 0) same = 0;
            else usage();
            break;
        case 'f':
            fam_name = optarg;
            if (strcmp(optarg, "4") == 0) family = AF_INET;
            else if (strcmp(optarg, "6") == 0) family = AF_INET6;
            else if (strcmp(optarg, "any") == 0) family = AF_UNSPEC;
            else usage();
            break;
        case 'p': salt = optarg; break;
        case 'T': nthreads = atoi(optarg); break;
        case 's': nshared = atol(optarg); break;
        case 'N': numeric = 1; break;
        case 'F': prefault = 1; break;
        default: usage();
        }
    }
    if (n < 1 || n > 10000000 || warm < 0 || cap_s <= 0)
        usage();
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (seq)
        return run_seq(n, warm, same);
    per_thread = n;
    return run_threads();
}
