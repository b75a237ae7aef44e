/* resolvers MODE ARGS...: every resolver API a program can call, with output the tests
 * match line by line (tests/remote_dns.rs). Every wait is bounded; every mode ends with
 * `alive` on success paths, so a crash (a bad free, a NULL list) shows as a missing line.
 *
 *   dump HOST...           getaddrinfo over a grid of hints (services, families,
 *                          socktypes, protocols, flag sets) for each HOST ("-" = NULL):
 *                          `HOST h`, then per query `Q serv=.. fam=.. st=.. proto=.. flags=..`
 *                          followed by `rc=EAI_…` or one `  E …` line per entry
 *   placeholders NAME      `ph4=ADDR` and `ph6=ADDR` (getaddrinfo AF_INET / AF_INET6)
 *   apis NAME PORT MSG     getaddrinfo, gethostbyname(2)(_r), getaddrinfo_a (GAI_WAIT;
 *                          GAI_NOWAIT with SIGEV_SIGNAL, SIGEV_THREAD, SIGEV_NONE +
 *                          gai_suspend), gethostbyaddr(_r), getnameinfo, freeaddrinfo
 *                          on our and glibc's lists, then connects (v4 and v6) and echoes
 *   lookup NAME [FAMILY]   getaddrinfo(NAME, SOCK_STREAM), FAMILY 0|4|6: `gai=ADDR`… or
 *                          `gai_error=EAI_…`
 *   reverse ADDR           getnameinfo (flags 0, NI_NAMEREQD, NI_NUMERICHOST) and
 *                          gethostbyaddr(_r) of a numeric address
 *   res NAME               the res_* family (and __res_* via dlsym) for an A record
 *   dns53 ADDR NAME        UDP connect and sendto to ADDR:53, then a TCP connect to
 *                          ADDR:53 and, if it connects, a DNS-over-TCP query for NAME
 *   fork NAME PORT MSG     the parent resolves, the child connects to the numeric
 *                          placeholder; the child resolves a new name, the parent
 *                          resolves another and then the child's, and connects to it
 *   exec NAME PORT MSG     resolves, then execs itself as `connect ADDR PORT MSG`
 *   connect ADDR PORT MSG  numeric connect, echo, getpeername, getnameinfo of the peer
 *   fill N                 getaddrinfo of fill0.test … fill(N-1).test, then fill0.test
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *prefix = "";

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%s", prefix);
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
}

static const char *en(int e) { return e ? strerrorname_np(e) : "0"; }

static const char *eai(int rc) {
    switch (rc) {
    case 0: return "0";
    case EAI_BADFLAGS: return "EAI_BADFLAGS";
    case EAI_NONAME: return "EAI_NONAME";
    case EAI_AGAIN: return "EAI_AGAIN";
    case EAI_FAIL: return "EAI_FAIL";
    case EAI_FAMILY: return "EAI_FAMILY";
    case EAI_SOCKTYPE: return "EAI_SOCKTYPE";
    case EAI_SERVICE: return "EAI_SERVICE";
    case EAI_MEMORY: return "EAI_MEMORY";
    case EAI_SYSTEM: return "EAI_SYSTEM";
    case EAI_OVERFLOW: return "EAI_OVERFLOW";
    case EAI_NODATA: return "EAI_NODATA";
    case EAI_ADDRFAMILY: return "EAI_ADDRFAMILY";
    case EAI_INPROGRESS: return "EAI_INPROGRESS";
    case EAI_CANCELED: return "EAI_CANCELED";
    case EAI_NOTCANCELED: return "EAI_NOTCANCELED";
    case EAI_ALLDONE: return "EAI_ALLDONE";
    case EAI_INTR: return "EAI_INTR";
    case EAI_IDN_ENCODE: return "EAI_IDN_ENCODE";
    default: {
        static char buf[32];
        snprintf(buf, sizeof buf, "EAI_%d", rc);
        return buf;
    }
    }
}

static const char *herr(int h) {
    switch (h) {
    case 0: return "0";
    case HOST_NOT_FOUND: return "HOST_NOT_FOUND";
    case TRY_AGAIN: return "TRY_AGAIN";
    case NO_RECOVERY: return "NO_RECOVERY";
    case NO_DATA: return "NO_DATA";
    case NETDB_INTERNAL: return "NETDB_INTERNAL";
    default: return "H_OTHER";
    }
}

static const char *famname(int f) {
    switch (f) {
    case AF_UNSPEC: return "UNSPEC";
    case AF_INET: return "INET";
    case AF_INET6: return "INET6";
    case AF_PACKET: return "PACKET";
    default: return "FAM?";
    }
}

static const char *stname(int t) {
    switch (t) {
    case 0: return "0";
    case SOCK_STREAM: return "STREAM";
    case SOCK_DGRAM: return "DGRAM";
    case SOCK_RAW: return "RAW";
    case SOCK_SEQPACKET: return "SEQPACKET";
    default: return "ST?";
    }
}

/* "ADDR" of a sockaddr, into buf. */
static const char *ntop(const struct sockaddr *sa, char *buf, size_t n) {
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, n);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf, n);
    else
        snprintf(buf, n, "family%d", sa->sa_family);
    return buf;
}

static unsigned port_of(const struct sockaddr *sa) {
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}

/* One line per entry, every field a program can see. */
static void print_entries(const char *label, const struct addrinfo *ai) {
    for (; ai; ai = ai->ai_next) {
        char a[INET6_ADDRSTRLEN + 8] = "-";
        char extra[64] = "";
        if (ai->ai_addr) {
            ntop(ai->ai_addr, a, sizeof a);
            if (ai->ai_addr->sa_family == AF_INET6) {
                const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ai->ai_addr;
                snprintf(extra, sizeof extra, " scope=%u flow=%u", s6->sin6_scope_id,
                         s6->sin6_flowinfo);
            } else if (ai->ai_addr->sa_family == AF_INET) {
                const struct sockaddr_in *s4 = (const struct sockaddr_in *)ai->ai_addr;
                int zero = 1;
                for (size_t i = 0; i < sizeof s4->sin_zero; i++)
                    zero &= s4->sin_zero[i] == 0;
                snprintf(extra, sizeof extra, " zero=%d", zero);
            }
        }
        out("%s fam=%s st=%s proto=%d addr=%s port=%u len=%u safam=%s flags=%x canon=%s%s",
            label, famname(ai->ai_family), stname(ai->ai_socktype), ai->ai_protocol, a,
            ai->ai_addr ? port_of(ai->ai_addr) : 0, (unsigned)ai->ai_addrlen,
            ai->ai_addr ? famname(ai->ai_addr->sa_family) : "-", (unsigned)ai->ai_flags,
            ai->ai_canonname ? ai->ai_canonname : "-", extra);
    }
}

/* ---- dump ---- */

struct flagset {
    int flags;
    const char *name;
};

static const struct flagset FLAGSETS[] = {
    {0, "0"},
    {AI_PASSIVE, "PASSIVE"},
    {AI_CANONNAME, "CANONNAME"},
    {AI_NUMERICHOST, "NUMERICHOST"},
    {AI_NUMERICSERV, "NUMERICSERV"},
    {AI_ADDRCONFIG, "ADDRCONFIG"},
    {AI_V4MAPPED, "V4MAPPED"},
    {AI_ALL, "ALL"},
    {AI_V4MAPPED | AI_ALL, "V4MAPPED|ALL"},
    {AI_CANONNAME | AI_NUMERICHOST, "CANONNAME|NUMERICHOST"},
    {AI_PASSIVE | AI_NUMERICHOST, "PASSIVE|NUMERICHOST"},
    {AI_CANONNAME | AI_ADDRCONFIG, "CANONNAME|ADDRCONFIG"},
    {AI_ADDRCONFIG | AI_V4MAPPED, "ADDRCONFIG|V4MAPPED"},
    {AI_ADDRCONFIG | AI_V4MAPPED | AI_ALL, "ADDRCONFIG|V4MAPPED|ALL"},
    {AI_NUMERICSERV | AI_CANONNAME, "NUMERICSERV|CANONNAME"},
    {AI_PASSIVE | AI_CANONNAME | AI_NUMERICSERV | AI_V4MAPPED | AI_ALL | AI_ADDRCONFIG,
     "PASSIVE|CANONNAME|NUMERICSERV|V4MAPPED|ALL|ADDRCONFIG"},
    {AI_IDN, "IDN"},
    {AI_CANONNAME | AI_CANONIDN, "CANONNAME|CANONIDN"},
    {0x8000, "BAD"},
};

static void dump(int n, char **hosts) {
    const char *servs[] = {"80", "http", "tftp", NULL, "65536"};
    const int fams[] = {AF_UNSPEC, AF_INET, AF_INET6, AF_PACKET};
    const int sts[] = {0, SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, SOCK_SEQPACKET};
    const int protos[] = {0, IPPROTO_TCP, IPPROTO_UDP};
    for (int h = 0; h < n; h++) {
        const char *host = strcmp(hosts[h], "-") == 0 ? NULL : hosts[h];
        out("HOST %s", host ? host : "-");
        for (size_t s = 0; s < sizeof servs / sizeof *servs; s++)
            for (size_t f = 0; f < sizeof fams / sizeof *fams; f++)
                for (size_t t = 0; t < sizeof sts / sizeof *sts; t++)
                    for (size_t p = 0; p < sizeof protos / sizeof *protos; p++)
                        for (size_t fl = 0; fl < sizeof FLAGSETS / sizeof *FLAGSETS; fl++) {
                            struct addrinfo hints, *res = NULL;
                            memset(&hints, 0, sizeof hints);
                            hints.ai_family = fams[f];
                            hints.ai_socktype = sts[t];
                            hints.ai_protocol = protos[p];
                            hints.ai_flags = FLAGSETS[fl].flags;
                            out("Q serv=%s fam=%s st=%s proto=%d flags=%s",
                                servs[s] ? servs[s] : "-", famname(fams[f]), stname(sts[t]),
                                protos[p], FLAGSETS[fl].name);
                            int rc = getaddrinfo(host, servs[s], &hints, &res);
                            if (rc != 0) {
                                out("rc=%s", eai(rc));
                                continue;
                            }
                            print_entries(" E", res);
                            freeaddrinfo(res);
                        }
    }
}

/* ---- lookups ---- */

/* getaddrinfo(name, NULL, family, STREAM): the first address into buf, "" on error. */
static int first_addr(const char *name, int family, char *buf, size_t n) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    buf[0] = 0;
    int rc = getaddrinfo(name, NULL, &hints, &res);
    if (rc == 0) {
        ntop(res->ai_addr, buf, n);
        freeaddrinfo(res);
    }
    return rc;
}

static int lookup(const char *name, int family) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(name, NULL, &hints, &res);
    if (rc != 0) {
        out("gai_error=%s", eai(rc));
        return 1;
    }
    char a[INET6_ADDRSTRLEN];
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
        out("gai=%s", ntop(ai->ai_addr, a, sizeof a));
    freeaddrinfo(res);
    return 0;
}

static void print_hostent(const char *label, const struct hostent *he) {
    if (!he) {
        out("%s=NULL h_errno=%s", label, herr(h_errno));
        return;
    }
    char addrs[512] = "";
    for (char **p = he->h_addr_list; p && *p; p++) {
        char a[INET6_ADDRSTRLEN];
        inet_ntop(he->h_addrtype, *p, a, sizeof a);
        if (addrs[0])
            strncat(addrs, ",", sizeof addrs - strlen(addrs) - 1);
        strncat(addrs, a, sizeof addrs - strlen(addrs) - 1);
    }
    int aliases = 0;
    for (char **p = he->h_aliases; p && *p; p++)
        aliases++;
    out("%s name=%s type=%s len=%d aliases=%d addrs=%s", label, he->h_name,
        famname(he->h_addrtype), he->h_length, aliases, addrs);
}

/* getnameinfo on a numeric address (port 7), with flags. */
static void nameinfo(const char *label, const char *addr, int flags) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_flags = AI_NUMERICHOST;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(addr, "7", &hints, &res);
    if (rc != 0) {
        out("%s=bad-address %s", label, eai(rc));
        return;
    }
    char host[NI_MAXHOST] = "", serv[NI_MAXSERV] = "";
    rc = getnameinfo(res->ai_addr, res->ai_addrlen, host, sizeof host, serv, sizeof serv,
                     flags | NI_NUMERICSERV);
    if (rc != 0)
        out("%s=%s", label, eai(rc));
    else
        out("%s=%s serv=%s", label, host, serv);
    freeaddrinfo(res);
}

static void byaddr(const char *label, const char *addr) {
    unsigned char bin[16];
    int fam = strchr(addr, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(fam, addr, bin) != 1) {
        out("%s=bad-address", label);
        return;
    }
    socklen_t len = fam == AF_INET6 ? 16 : 4;
    h_errno = 0;
    print_hostent(label, gethostbyaddr(bin, len, fam));
    struct hostent he, *result = NULL;
    char buf[2048];
    int herrno = 0;
    int rc = gethostbyaddr_r(bin, len, fam, &he, buf, sizeof buf, &result, &herrno);
    char l2[64];
    snprintf(l2, sizeof l2, "%s_r", label);
    if (rc != 0 || !result)
        out("%s=NULL rc=%s h_errno=%s", l2, en(rc), herr(herrno));
    else
        print_hostent(l2, result);
}

static int reverse(const char *addr) {
    nameinfo("getnameinfo", addr, 0);
    nameinfo("getnameinfo_namereqd", addr, NI_NAMEREQD);
    nameinfo("getnameinfo_numerichost", addr, NI_NUMERICHOST);
    byaddr("gethostbyaddr", addr);
    return 0;
}

/* ---- connect and echo ---- */

/* Connects to numeric ADDR:PORT, prints `LABEL peer=…` (getpeername), sends MSG and
 * prints `LABEL recv=…` (what came back, one line), or `LABEL errno=…`. */
static int connect_numeric(const char *label, const char *addr, const char *port,
                           const char *msg) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(addr, port, &hints, &res);
    if (rc != 0) {
        out("%s bad-address=%s", label, eai(rc));
        return 1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM, 0);
    if (connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        out("%s errno=%s", label, en(errno));
        close(fd);
        freeaddrinfo(res);
        return 1;
    }
    freeaddrinfo(res);
    struct sockaddr_storage peer;
    socklen_t plen = sizeof peer;
    char a[INET6_ADDRSTRLEN] = "?";
    if (getpeername(fd, (struct sockaddr *)&peer, &plen) == 0)
        out("%s peer=%s:%u", label, ntop((struct sockaddr *)&peer, a, sizeof a),
            port_of((struct sockaddr *)&peer));
    else
        out("%s getpeername=%s", label, en(errno));
    char host[NI_MAXHOST] = "";
    rc = getnameinfo((struct sockaddr *)&peer, plen, host, sizeof host, NULL, 0, NI_NAMEREQD);
    out("%s peer_name=%s", label, rc == 0 ? host : eai(rc));
    char line[1024];
    snprintf(line, sizeof line, "%s\n", msg);
    if (write(fd, line, strlen(line)) != (ssize_t)strlen(line)) {
        out("%s write=%s", label, en(errno));
        close(fd);
        return 1;
    }
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[1024];
    size_t have = 0;
    while (have < sizeof buf - 1) {
        ssize_t k = read(fd, buf + have, sizeof buf - 1 - have);
        if (k <= 0)
            break;
        have += (size_t)k;
        if (memchr(buf, '\n', have))
            break;
    }
    buf[have] = 0;
    char *nl = strchr(buf, '\n');
    if (nl)
        *nl = 0;
    out("%s recv=%s", label, buf);
    close(fd);
    return 0;
}

/* ---- getaddrinfo_a ---- */

static sem_t thread_done;
static void on_thread(union sigval v) {
    (void)v;
    sem_post(&thread_done);
}

static void gai_a_result(const char *label, struct gaicb *cb) {
    int e = gai_error(cb);
    if (e != 0) {
        out("%s gai_error=%s", label, eai(e));
        return;
    }
    char a[INET6_ADDRSTRLEN] = "-";
    if (cb->ar_result)
        ntop(cb->ar_result->ai_addr, a, sizeof a);
    out("%s gai_error=0 addr=%s", label, a);
}

static struct timespec deadline_in(int secs) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += secs;
    return ts;
}

static void gai_async(const char *name, const char *port) {
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;

    /* GAI_WAIT, two requests: the name and a numeric address. */
    struct gaicb w1 = {.ar_name = name, .ar_service = port, .ar_request = &hints};
    struct gaicb w2 = {.ar_name = "203.0.113.2", .ar_service = port, .ar_request = &hints};
    struct gaicb *wl[] = {&w1, &w2};
    int rc = getaddrinfo_a(GAI_WAIT, wl, 2, NULL);
    out("gai_a_wait rc=%s", eai(rc));
    gai_a_result("gai_a_wait name", &w1);
    gai_a_result("gai_a_wait numeric", &w2);
    out("gai_cancel_done=%s", eai(gai_cancel(&w1)));
    freeaddrinfo(w1.ar_result);
    freeaddrinfo(w2.ar_result);

    /* GAI_NOWAIT + SIGEV_SIGNAL. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGRTMIN);
    sigprocmask(SIG_BLOCK, &set, NULL);
    struct gaicb s1 = {.ar_name = name, .ar_service = port, .ar_request = &hints};
    struct gaicb *sl[] = {&s1};
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGRTMIN;
    sev.sigev_value.sival_ptr = &s1;
    rc = getaddrinfo_a(GAI_NOWAIT, sl, 1, &sev);
    out("gai_a_signal rc=%s", eai(rc));
    struct timespec five = {.tv_sec = 5};
    siginfo_t si;
    int sig = sigtimedwait(&set, &si, &five);
    out("gai_a_signal signal=%s value=%s", sig == SIGRTMIN ? "SIGRTMIN" : en(errno),
        sig == SIGRTMIN && si.si_value.sival_ptr == &s1 ? "ours" : "other");
    gai_a_result("gai_a_signal", &s1);
    freeaddrinfo(s1.ar_result);

    /* GAI_NOWAIT + SIGEV_THREAD. */
    sem_init(&thread_done, 0, 0);
    struct gaicb t1 = {.ar_name = name, .ar_service = port, .ar_request = &hints};
    struct gaicb *tl[] = {&t1};
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD;
    sev.sigev_notify_function = on_thread;
    rc = getaddrinfo_a(GAI_NOWAIT, tl, 1, &sev);
    out("gai_a_thread rc=%s", eai(rc));
    struct timespec until = deadline_in(5);
    int got = sem_timedwait(&thread_done, &until);
    out("gai_a_thread notified=%s", got == 0 ? "yes" : en(errno));
    gai_a_result("gai_a_thread", &t1);
    freeaddrinfo(t1.ar_result);

    /* GAI_NOWAIT + SIGEV_NONE, then gai_suspend until done. */
    struct gaicb n1 = {.ar_name = name, .ar_service = port, .ar_request = &hints};
    struct gaicb *nl[] = {&n1};
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_NONE;
    rc = getaddrinfo_a(GAI_NOWAIT, nl, 1, &sev);
    out("gai_a_none rc=%s", eai(rc));
    const struct gaicb *cl[] = {&n1};
    int tries = 0, srs = 0;
    while (gai_error(&n1) == EAI_INPROGRESS && tries++ < 10) {
        struct timespec one = {.tv_sec = 1};
        srs = gai_suspend(cl, 1, &one);
    }
    out("gai_a_none suspend=%s", srs == 0 || srs == EAI_ALLDONE ? "ok" : eai(srs));
    gai_a_result("gai_a_none", &n1);
    freeaddrinfo(n1.ar_result);
}

static int apis(const char *name, const char *port, const char *msg) {
    /* getaddrinfo, AF_UNSPEC and per family. */
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(name, port, &hints, &res);
    if (rc != 0) {
        out("getaddrinfo=%s", eai(rc));
        return 1;
    }
    print_entries("getaddrinfo", res);
    char ph4[INET6_ADDRSTRLEN] = "", ph6[INET6_ADDRSTRLEN] = "";
    first_addr(name, AF_INET, ph4, sizeof ph4);
    first_addr(name, AF_INET6, ph6, sizeof ph6);
    out("ph4=%s", ph4);
    out("ph6=%s", ph6);
    freeaddrinfo(res);
    /* glibc's own list (numeric) through the same freeaddrinfo. */
    rc = getaddrinfo("203.0.113.2", port, &hints, &res);
    out("numeric_getaddrinfo=%s", eai(rc));
    if (rc == 0)
        freeaddrinfo(res);

    /* gethostbyname family. */
    h_errno = 0;
    print_hostent("gethostbyname", gethostbyname(name));
    print_hostent("gethostbyname2_inet", gethostbyname2(name, AF_INET));
    print_hostent("gethostbyname2_inet6", gethostbyname2(name, AF_INET6));
    struct hostent he, *result = NULL;
    char buf[2048];
    int herrno = 0;
    rc = gethostbyname_r(name, &he, buf, sizeof buf, &result, &herrno);
    if (rc != 0 || !result)
        out("gethostbyname_r=NULL rc=%s h_errno=%s", en(rc), herr(herrno));
    else
        print_hostent("gethostbyname_r", result);
    char tiny[8];
    result = &he;
    rc = gethostbyname_r(name, &he, tiny, sizeof tiny, &result, &herrno);
    out("gethostbyname_r_small rc=%s result=%s", en(rc), result ? "set" : "NULL");
    for (int f = 0; f < 2; f++) {
        int fam = f ? AF_INET6 : AF_INET;
        const char *l = f ? "gethostbyname2_r_inet6" : "gethostbyname2_r_inet";
        result = NULL;
        rc = gethostbyname2_r(name, fam, &he, buf, sizeof buf, &result, &herrno);
        if (rc != 0 || !result)
            out("%s=NULL rc=%s h_errno=%s", l, en(rc), herr(herrno));
        else
            print_hostent(l, result);
    }

    gai_async(name, port);

    /* Back from placeholder to name. */
    nameinfo("getnameinfo4", ph4, 0);
    nameinfo("getnameinfo4_namereqd", ph4, NI_NAMEREQD);
    nameinfo("getnameinfo4_numerichost", ph4, NI_NUMERICHOST);
    nameinfo("getnameinfo6", ph6, 0);
    byaddr("gethostbyaddr4", ph4);
    byaddr("gethostbyaddr6", ph6);

    /* And connect to each family's placeholder. */
    connect_numeric("connect4", ph4, port, msg);
    connect_numeric("connect6", ph6, port, msg);
    return 0;
}

/* ---- res_* ---- */

/* The A records in a DNS answer, comma-separated, into out_buf. */
static void a_records(const unsigned char *m, int n, char *out_buf, size_t cap) {
    out_buf[0] = 0;
    if (n < 12)
        return;
    int qd = m[4] << 8 | m[5], an = m[6] << 8 | m[7];
    int i = 12;
    /* skip a (possibly compressed) name */
#define SKIPNAME()                                                                         \
    do {                                                                                   \
        while (i < n) {                                                                    \
            unsigned l = m[i];                                                             \
            if (l == 0) { i++; break; }                                                    \
            if ((l & 0xC0) == 0xC0) { i += 2; break; }                                     \
            i += 1 + (int)l;                                                               \
        }                                                                                  \
    } while (0)
    for (int q = 0; q < qd; q++) {
        SKIPNAME();
        i += 4;
    }
    for (int a = 0; a < an && i < n; a++) {
        SKIPNAME();
        if (i + 10 > n)
            return;
        int type = m[i] << 8 | m[i + 1];
        int rdlen = m[i + 8] << 8 | m[i + 9];
        i += 10;
        if (type == ns_t_a && rdlen == 4 && i + 4 <= n) {
            char s[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, m + i, s, sizeof s);
            if (out_buf[0])
                strncat(out_buf, ",", cap - strlen(out_buf) - 1);
            strncat(out_buf, s, cap - strlen(out_buf) - 1);
        }
        i += rdlen;
    }
#undef SKIPNAME
}

static void res_report(const char *label, int n, const unsigned char *ans) {
    if (n < 0) {
        out("%s=-1 h_errno=%s", label, herr(h_errno));
        return;
    }
    char recs[256];
    a_records(ans, n, recs, sizeof recs);
    out("%s=ok rcode=%d a=%s", label, n >= 4 ? (ans[3] & 0x0F) : -1, recs[0] ? recs : "-");
}

typedef int (*query_fn)(const char *, int, int, unsigned char *, int);
typedef int (*send_fn)(const unsigned char *, int, unsigned char *, int);

static int res(const char *name) {
    unsigned char ans[4096];
    int n;
    res_init();
    h_errno = 0;
    n = res_query(name, ns_c_in, ns_t_a, ans, sizeof ans);
    res_report("res_query", n, ans);
    h_errno = 0;
    n = res_search(name, ns_c_in, ns_t_a, ans, sizeof ans);
    res_report("res_search", n, ans);
    /* "dns-only" + "test" */
    char host[256];
    snprintf(host, sizeof host, "%s", name);
    char *dot = strchr(host, '.');
    const char *domain = dot ? dot + 1 : "";
    if (dot)
        *dot = 0;
    h_errno = 0;
    n = res_querydomain(host, domain, ns_c_in, ns_t_a, ans, sizeof ans);
    res_report("res_querydomain", n, ans);
    unsigned char q[512];
    int ql = res_mkquery(ns_o_query, name, ns_c_in, ns_t_a, NULL, 0, NULL, q, sizeof q);
    out("res_mkquery=%s", ql > 0 ? "ok" : "-1");
    h_errno = 0;
    n = ql > 0 ? res_send(q, ql, ans, sizeof ans) : -1;
    res_report("res_send", n, ans);

    struct __res_state st;
    memset(&st, 0, sizeof st);
    out("res_ninit=%d", res_ninit(&st));
    h_errno = 0;
    n = res_nquery(&st, name, ns_c_in, ns_t_a, ans, sizeof ans);
    res_report("res_nquery", n, ans);
    h_errno = 0;
    n = res_nsearch(&st, name, ns_c_in, ns_t_a, ans, sizeof ans);
    res_report("res_nsearch", n, ans);
    h_errno = 0;
    n = res_nquerydomain(&st, host, domain, ns_c_in, ns_t_a, ans, sizeof ans);
    res_report("res_nquerydomain", n, ans);
    ql = res_nmkquery(&st, ns_o_query, name, ns_c_in, ns_t_a, NULL, 0, NULL, q, sizeof q);
    h_errno = 0;
    n = ql > 0 ? res_nsend(&st, q, ql, ans, sizeof ans) : -1;
    res_report("res_nsend", n, ans);
    res_nclose(&st);

    /* The old names binaries built against glibc < 2.34 call. */
    const char *qnames[] = {"__res_query", "__res_search"};
    for (int k = 0; k < 2; k++) {
        query_fn f = (query_fn)dlsym(RTLD_DEFAULT, qnames[k]);
        if (!f) {
            out("%s=missing", qnames[k]);
            continue;
        }
        h_errno = 0;
        n = f(name, ns_c_in, ns_t_a, ans, sizeof ans);
        res_report(qnames[k], n, ans);
    }
    send_fn sf = (send_fn)dlsym(RTLD_DEFAULT, "__res_send");
    ql = res_mkquery(ns_o_query, name, ns_c_in, ns_t_a, NULL, 0, NULL, q, sizeof q);
    if (!sf) {
        out("__res_send=missing");
    } else {
        h_errno = 0;
        n = sf(q, ql, ans, sizeof ans);
        res_report("__res_send", n, ans);
    }
    return 0;
}

/* ---- a program's own resolver traffic ---- */

static int dns53(const char *addr, const char *name) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    hints.ai_socktype = SOCK_DGRAM;
    int rc = getaddrinfo(addr, "53", &hints, &res);
    if (rc != 0) {
        out("bad-address=%s", eai(rc));
        return 2;
    }
    unsigned char q[512];
    int ql = res_mkquery(ns_o_query, name, ns_c_in, ns_t_a, NULL, 0, NULL, q, sizeof q);

    int u = socket(res->ai_family, SOCK_DGRAM, 0);
    rc = connect(u, res->ai_addr, res->ai_addrlen);
    out("udp_connect=%s", rc == 0 ? "0" : en(errno));
    close(u);

    u = socket(res->ai_family, SOCK_DGRAM, 0);
    ssize_t k = sendto(u, q, (size_t)ql, 0, res->ai_addr, res->ai_addrlen);
    out("udp_sendto=%s", k >= 0 ? "sent" : en(errno));
    if (k >= 0) {
        struct timeval tv = {.tv_sec = 2};
        setsockopt(u, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        unsigned char a[512];
        ssize_t r = recv(u, a, sizeof a, 0);
        out("udp_recv=%s", r >= 0 ? "answer" : en(errno));
    }
    close(u);

    int t = socket(res->ai_family, SOCK_STREAM, 0);
    rc = connect(t, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    out("tcp_connect=%s", rc == 0 ? "0" : en(errno));
    if (rc == 0) {
        unsigned char msg[514];
        msg[0] = (unsigned char)(ql >> 8);
        msg[1] = (unsigned char)ql;
        memcpy(msg + 2, q, (size_t)ql);
        if (write(t, msg, (size_t)ql + 2) != ql + 2) {
            out("tcp_write=%s", en(errno));
        } else {
            struct timeval tv = {.tv_sec = 5};
            setsockopt(t, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            unsigned char a[4096];
            size_t have = 0;
            while (have < sizeof a) {
                ssize_t r = read(t, a + have, sizeof a - have);
                if (r <= 0)
                    break;
                have += (size_t)r;
                if (have >= 2 && have >= (size_t)((a[0] << 8 | a[1]) + 2))
                    break;
            }
            if (have < 2) {
                out("tcp_answer=none");
            } else {
                char recs[256];
                a_records(a + 2, (int)have - 2, recs, sizeof recs);
                out("tcp_answer=%s", recs[0] ? recs : "-");
            }
        }
    }
    close(t);
    return 0;
}

/* ---- fork, exec, fill ---- */

static int fork_mode(const char *name, const char *port, const char *msg) {
    char ph[INET6_ADDRSTRLEN];
    int rc = first_addr(name, AF_INET, ph, sizeof ph);
    if (rc != 0) {
        out("resolve_error=%s", eai(rc));
        return 1;
    }
    out("parent resolved=%s", ph);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        out("fork=%s", en(errno));
        return 1;
    }
    if (pid == 0) {
        prefix = "child: ";
        int c = connect_numeric("connect", ph, port, msg);
        char mine[INET6_ADDRSTRLEN];
        rc = first_addr("child-new.test", AF_INET, mine, sizeof mine);
        out("new=%s", rc == 0 ? mine : eai(rc));
        out("alive");
        _exit(c);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    out("child_exit=%d", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    char other[INET6_ADDRSTRLEN], childs[INET6_ADDRSTRLEN];
    rc = first_addr("parent-new.test", AF_INET, other, sizeof other);
    out("parent new=%s", rc == 0 ? other : eai(rc));
    rc = first_addr("child-new.test", AF_INET, childs, sizeof childs);
    out("parent child-new=%s", rc == 0 ? childs : eai(rc));
    if (rc == 0)
        connect_numeric("parent connect", childs, port, msg);
    return 0;
}

static int exec_mode(char *self, const char *name, const char *port, const char *msg) {
    char ph[INET6_ADDRSTRLEN];
    int rc = first_addr(name, AF_INET, ph, sizeof ph);
    if (rc != 0) {
        out("resolve_error=%s", eai(rc));
        return 1;
    }
    out("before exec resolved=%s", ph);
    fflush(stdout);
    char *argv[] = {self, "connect", ph, (char *)port, (char *)msg, NULL};
    execv("/proc/self/exe", argv);
    out("execv=%s", en(errno));
    return 1;
}

static int fill(int n) {
    char name[64], a[INET6_ADDRSTRLEN];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "fill%d.test", i);
        int rc = first_addr(name, AF_INET, a, sizeof a);
        out("fill%d=%s", i, rc == 0 ? a : eai(rc));
    }
    int rc = first_addr("fill0.test", AF_INET, a, sizeof a);
    out("again fill0=%s", rc == 0 ? a : eai(rc));
    rc = first_addr("203.0.113.2", AF_INET, a, sizeof a);
    out("numeric=%s", rc == 0 ? a : eai(rc));
    rc = first_addr("localhost", AF_INET, a, sizeof a);
    out("localhost=%s", rc == 0 ? a : eai(rc));
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODE ARGS...\n", argv[0]);
        return 2;
    }
    const char *m = argv[1];
    int rc = 2;
    if (strcmp(m, "dump") == 0) {
        dump(argc - 2, argv + 2);
        rc = 0;
    } else if (strcmp(m, "placeholders") == 0 && argc == 3) {
        char a[INET6_ADDRSTRLEN];
        int r4 = first_addr(argv[2], AF_INET, a, sizeof a);
        out("ph4=%s", r4 == 0 ? a : eai(r4));
        int r6 = first_addr(argv[2], AF_INET6, a, sizeof a);
        out("ph6=%s", r6 == 0 ? a : eai(r6));
        rc = r4 || r6;
    } else if (strcmp(m, "apis") == 0 && argc == 5) {
        rc = apis(argv[2], argv[3], argv[4]);
    } else if (strcmp(m, "lookup") == 0 && (argc == 3 || argc == 4)) {
        int f = argc == 4 ? atoi(argv[3]) : 0;
        rc = lookup(argv[2], f == 4 ? AF_INET : f == 6 ? AF_INET6 : AF_UNSPEC);
    } else if (strcmp(m, "reverse") == 0 && argc == 3) {
        rc = reverse(argv[2]);
    } else if (strcmp(m, "res") == 0 && argc == 3) {
        rc = res(argv[2]);
    } else if (strcmp(m, "dns53") == 0 && argc == 4) {
        rc = dns53(argv[2], argv[3]);
    } else if (strcmp(m, "fork") == 0 && argc == 5) {
        rc = fork_mode(argv[2], argv[3], argv[4]);
    } else if (strcmp(m, "exec") == 0 && argc == 5) {
        rc = exec_mode(argv[0], argv[2], argv[3], argv[4]);
    } else if (strcmp(m, "connect") == 0 && argc == 5) {
        rc = connect_numeric("connect", argv[2], argv[3], argv[4]);
    } else if (strcmp(m, "fill") == 0 && argc == 3) {
        rc = fill(atoi(argv[2]));
    } else {
        fprintf(stderr, "%s: bad mode or arguments: %s\n", argv[0], m);
        return 2;
    }
    out("alive");
    fflush(stdout);
    return rc;
}
