//! Small C programs for checks no off-the-shelf client makes precisely: which errno a
//! `connect()` returned, what `getpeername()` and `SO_ERROR` say, and that the program
//! is still alive afterwards. Compiled with `cc` at test time, cached by content hash in
//! `target/laysocks-testkit/c/`, so each source is compiled once per change.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use crate::util::{require, target_dir};

/// Compiles `source` into an executable named after `name` and its content hash and
/// returns its path. Safe to call from parallel tests and processes (atomic rename).
pub fn compile_c(name: &str, source: &str) -> PathBuf {
    compile_c_with(name, source, &[])
}

/// [`compile_c`] with extra compiler flags (e.g. `-O2 -D_FORTIFY_SOURCE=2`, which makes
/// glibc route `poll` with a runtime count through `__poll_chk`).
pub fn compile_c_with(name: &str, source: &str, flags: &[&str]) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let cc = require("cc", "gcc");
    let mut h = DefaultHasher::new();
    source.hash(&mut h);
    flags.hash(&mut h);
    let dir = target_dir().join("laysocks-testkit").join("c");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    let exe = dir.join(format!("{name}-{:016x}", h.finish()));
    if exe.is_file() {
        return exe;
    }
    let src = dir.join(format!(
        "{name}-{:016x}.{}.c",
        h.finish(),
        std::process::id()
    ));
    fs::write(&src, source).expect("write C source");
    let tmp = dir.join(format!("{name}.{}.tmp", std::process::id()));
    let out = Command::new(&cc)
        .args(["-std=gnu11", "-O1", "-Wall", "-Werror"])
        .args(flags)
        .arg("-o")
        .arg(&tmp)
        .arg(&src)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run cc (Debian package gcc): {e}"));
    let _ = fs::remove_file(&src);
    assert!(
        out.status.success(),
        "cc failed for {name}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::rename(&tmp, &exe).expect("move the compiled program into place");
    exe
}

/// The connect probe (see [`PROBE_SRC`]).
pub fn probe() -> PathBuf {
    compile_c("connect_probe", PROBE_SRC)
}

/// `connect_probe MODE HOST PORT [MESSAGE]`
///
/// MODE is `block` (blocking socket), `nonblock` (`SOCK_NONBLOCK`, `EINPROGRESS`, `poll`
/// for POLLOUT, then `SO_ERROR`, then back to blocking with `fcntl` for the exchange, as
/// OpenSSH's `timeout_connect` does), `nbpoll` (like `nonblock` but stays non-blocking
/// and exchanges with `poll` + `read`/`write`, like an event loop), `mapped` (blocking `AF_INET6` socket to the
/// `::ffff:a.b.c.d` form of an IPv4 HOST), or `fork` (the child connects as in `block`,
/// the parent waits for it). HOST goes through `getaddrinfo`.
///
/// Prints, one per line: `errno=NAME` when the connect fails (then exit status 1), or
/// `ok peer=ADDR:PORT` (from `getpeername`) and `so_error=0`; with MESSAGE, sends
/// `MESSAGE\n` and prints each line received as `recv=LINE` until it sees MESSAGE again
/// (or EOF, or 5 s). Always ends with `alive`, which proves the program survived.
/// In `fork` mode the child's lines are prefixed `child: ` and the parent adds
/// `child_exit=N`.
///
/// A connect MODE may end in `+drain` or `+talk` for a byte-exact raw exchange instead of
/// the line echo: `+drain` reads until EOF, an error or 5 s quiet, prints `data_len=N`,
/// `data=BYTES` (printable ASCII but `\` as is, any other byte as `\xNN`) and then
/// `recv_eof`, `recv_errno=NAME` or `recv_timeout`, and after that sends MESSAGE if
/// given (so it can talk after the peer's half-close), printing `sent=N` and
/// `write_errno=NAME` if a write failed; `+talk` sends MESSAGE first, then drains.
/// Here MESSAGE is sent as is without a newline, and `@N` stands for N bytes of the
/// pattern `byte[i] = (i * 131 + 7) mod 256`, which has every byte value (NUL, 0xFF).
///
/// MODE `pending` makes a non-blocking connect and, while it is still in progress, prints
/// what `connect`, `getpeername`, a second `connect`, `SO_ERROR`, `read`, `write` and a
/// 300 ms `poll` return: `connect=EINPROGRESS`, `getpeername=ENOTCONN`, … `poll=0`.
pub const PROBE_SRC: &str = r#"
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
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

static const char *errname(int e) {
    switch (e) {
    case ECONNREFUSED: return "ECONNREFUSED";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case ENETUNREACH: return "ENETUNREACH";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case ETIMEDOUT: return "ETIMEDOUT";
    case ECONNRESET: return "ECONNRESET";
    case ECONNABORTED: return "ECONNABORTED";
    case EPROTO: return "EPROTO";
    case EINPROGRESS: return "EINPROGRESS";
    case EALREADY: return "EALREADY";
    case EISCONN: return "EISCONN";
    case ENOTCONN: return "ENOTCONN";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case EINVAL: return "EINVAL";
    case EINTR: return "EINTR";
    case EAGAIN: return "EAGAIN";
    case EPIPE: return "EPIPE";
    case EBADF: return "EBADF";
    default: return "EOTHER";
    }
}

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

static void print_addr(const char *label, const struct sockaddr_storage *ss) {
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        port = ntohs(a->sin_port);
        out("%s=%s:%d", label, host, port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        port = ntohs(a->sin6_port);
        out("%s=[%s]:%d", label, host, port);
    } else {
        out("%s=family%d", label, ss->ss_family);
    }
}

/* MESSAGE as bytes: "@N" is N bytes of a pattern with every byte value. */
static unsigned char *message_bytes(const char *msg, size_t *len) {
    unsigned char *data;
    if (msg[0] == '@') {
        *len = (size_t)strtoul(msg + 1, NULL, 10);
        data = malloc(*len + 1);
        for (size_t i = 0; data && i < *len; i++)
            data[i] = (unsigned char)((i * 131 + 7) & 0xff);
    } else {
        *len = strlen(msg);
        data = (unsigned char *)strdup(msg);
    }
    if (!data) {
        out("oom");
        exit(3);
    }
    return data;
}

static int wait_ready(int fd, short events) {
    struct pollfd p = {.fd = fd, .events = events};
    return poll(&p, 1, 5000) == 1;
}

/* The +talk / +drain half of the probe: send MESSAGE exactly. */
static void send_raw(int fd, int nb, const char *msg) {
    size_t len, sent = 0;
    unsigned char *data = message_bytes(msg, &len);
    while (sent < len) {
        ssize_t w = write(fd, data + sent, len - sent);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN && nb) {
            if (!wait_ready(fd, POLLOUT)) {
                out("write_timeout");
                break;
            }
            continue;
        }
        if (w < 0) {
            out("write_errno=%s", errname(errno));
            break;
        }
        sent += (size_t)w;
    }
    out("sent=%zu", sent);
    free(data);
}

/* Reads until EOF, an error or 5 s of quiet (at most 8 MiB), then prints it escaped. */
static void drain_raw(int fd, int nb) {
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    size_t cap = 1 << 16, have = 0;
    unsigned char *buf = malloc(cap);
    char end[64] = "recv_timeout";
    while (buf && have < (8u << 20)) {
        if (have == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            if (!buf)
                break;
        }
        ssize_t k = read(fd, buf + have, cap - have);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && errno == EAGAIN && nb) {
            if (wait_ready(fd, POLLIN))
                continue;
            break;
        }
        if (k == 0) {
            snprintf(end, sizeof end, "recv_eof");
            break;
        }
        if (k < 0) {
            if (errno != EAGAIN)
                snprintf(end, sizeof end, "recv_errno=%s", errname(errno));
            break;
        }
        have += (size_t)k;
    }
    if (!buf) {
        out("oom");
        exit(3);
    }
    char *text = malloc(have * 4 + 1), *t = text;
    if (!text) {
        out("oom");
        exit(3);
    }
    for (size_t i = 0; i < have; i++) {
        unsigned char c = buf[i];
        if (c > 0x20 && c < 0x7f && c != '\\')
            *t++ = (char)c;
        else
            t += sprintf(t, "\\x%02x", c);
    }
    *t = 0;
    out("data_len=%zu", have);
    out("data=%s", text);
    out("%s", end);
    free(text);
    free(buf);
}

/* Connects and exchanges; returns 0 on a successful connect, 1 otherwise. */
static int run(const char *mode, const char *host, const char *port, const char *msg) {
    /* "block+drain": the connect mode, then a raw exchange (see the Rust docs). */
    char base[16];
    int drain = 0, talk = 0;
    const char *plus = strchr(mode, '+');
    if (plus && (size_t)(plus - mode) < sizeof base) {
        drain = strcmp(plus, "+drain") == 0;
        talk = strcmp(plus, "+talk") == 0;
        memcpy(base, mode, (size_t)(plus - mode));
        base[plus - mode] = 0;
        mode = base;
    }
    struct sockaddr_storage target;
    socklen_t tlen = 0;
    memset(&target, 0, sizeof target);
    int family;
    if (strcmp(mode, "mapped") == 0) {
        struct in_addr v4;
        if (inet_pton(AF_INET, host, &v4) != 1) {
            out("usage: mapped needs an IPv4 literal");
            return 2;
        }
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&target;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((unsigned short)atoi(port));
        a->sin6_addr.s6_addr[10] = 0xff;
        a->sin6_addr.s6_addr[11] = 0xff;
        memcpy(&a->sin6_addr.s6_addr[12], &v4, 4);
        tlen = sizeof *a;
        family = AF_INET6;
    } else {
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof hints);
        hints.ai_socktype = SOCK_STREAM;
        int rc = getaddrinfo(host, port, &hints, &res);
        if (rc != 0 || !res) {
            out("resolve_error=%s", gai_strerror(rc));
            return 1;
        }
        memcpy(&target, res->ai_addr, res->ai_addrlen);
        tlen = res->ai_addrlen;
        family = res->ai_family;
        freeaddrinfo(res);
    }
    int keep_nonblock = strcmp(mode, "nbpoll") == 0;
    int nonblock = keep_nonblock || strcmp(mode, "nonblock") == 0;
    int fd = socket(family, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0) {
        out("socket_errno=%s", errname(errno));
        return 1;
    }
    int rc = connect(fd, (struct sockaddr *)&target, tlen);
    if (rc != 0) {
        int e = errno;
        if (!(nonblock && e == EINPROGRESS)) {
            out("errno=%s", errname(e));
            close(fd);
            return 1;
        }
        out("connect=EINPROGRESS");
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int n = poll(&p, 1, 15000);
        if (n != 1) {
            out("poll=%d", n);
            close(fd);
            return 1;
        }
        int soerr = -1;
        socklen_t sl = sizeof soerr;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        if (soerr != 0) {
            out("errno=%s", errname(soerr));
            close(fd);
            return 1;
        }
    } else if (nonblock) {
        out("connect=0");
    }
    /* Back to blocking for the exchange, as OpenSSH's timeout_connect does either way. */
    if (nonblock && !keep_nonblock)
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    struct sockaddr_storage peer;
    socklen_t plen = sizeof peer;
    memset(&peer, 0, sizeof peer);
    if (getpeername(fd, (struct sockaddr *)&peer, &plen) != 0) {
        out("getpeername_errno=%s", errname(errno));
    } else {
        char label[8] = "ok peer";
        print_addr(label, &peer);
    }
    int soerr = -1;
    socklen_t sl = sizeof soerr;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    out("so_error=%d", soerr);
    if (drain || talk) {
        if (talk && msg)
            send_raw(fd, keep_nonblock, msg);
        drain_raw(fd, keep_nonblock);
        if (drain && msg)
            send_raw(fd, keep_nonblock, msg);
        close(fd);
        return 0;
    }
    if (msg) {
        char line[4096];
        snprintf(line, sizeof line, "%s\n", msg);
        size_t sent = 0, len = strlen(line);
        while (sent < len) {
            ssize_t w = write(fd, line + sent, len - sent);
            if (w < 0 && errno == EAGAIN && keep_nonblock) {
                struct pollfd p = {.fd = fd, .events = POLLOUT};
                if (poll(&p, 1, 5000) != 1) {
                    out("write_timeout");
                    break;
                }
                continue;
            }
            if (w < 0) {
                out("write_errno=%s", errname(errno));
                break;
            }
            sent += (size_t)w;
        }
        struct timeval tv = {.tv_sec = 5};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        char buf[8192];
        size_t have = 0;
        for (;;) {
            char *nl = memchr(buf, '\n', have);
            if (nl) {
                *nl = 0;
                out("recv=%s", buf);
                int done = strcmp(buf, msg) == 0;
                size_t used = (size_t)(nl - buf) + 1;
                memmove(buf, buf + used, have - used);
                have -= used;
                if (done)
                    break;
                continue;
            }
            if (have == sizeof buf)
                break;
            ssize_t k = read(fd, buf + have, sizeof buf - have);
            if (k < 0 && errno == EAGAIN && keep_nonblock) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                if (poll(&p, 1, 5000) != 1) {
                    out("recv_timeout");
                    break;
                }
                continue;
            }
            if (k == 0) {
                out("recv_eof");
                break;
            }
            if (k < 0) {
                out("recv_errno=%s", errname(errno));
                break;
            }
            have += (size_t)k;
        }
    }
    close(fd);
    return 0;
}

/* A non-blocking connect that is still pending (use a proxy that never answers): what
 * every call on the socket says meanwhile (DESIGN.md section 3.4). */
static int pending(const char *host, const char *port) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0 || !res) {
        out("resolve_error=%s", gai_strerror(rc));
        return 1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
    rc = connect(fd, res->ai_addr, res->ai_addrlen);
    out("connect=%s", rc == 0 ? "0" : errname(errno));
    struct sockaddr_storage peer;
    socklen_t plen = sizeof peer;
    rc = getpeername(fd, (struct sockaddr *)&peer, &plen);
    out("getpeername=%s", rc == 0 ? "0" : errname(errno));
    rc = connect(fd, res->ai_addr, res->ai_addrlen);
    out("connect2=%s", rc == 0 ? "0" : errname(errno));
    int soerr = -1;
    socklen_t sl = sizeof soerr;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    out("so_error=%d", soerr);
    char c = 'x';
    ssize_t k = read(fd, &c, 1);
    out("read=%s", k >= 0 ? "data" : errname(errno));
    k = write(fd, &c, 1);
    out("write=%s", k >= 0 ? "sent" : errname(errno));
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLOUT};
    rc = poll(&p, 1, 300);
    out("poll=%d", rc);
    freeaddrinfo(res);
    close(fd);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s block|nonblock|nbpoll|mapped|fork HOST PORT [MESSAGE]\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* Like most network programs: a write on a dead socket must be an error, not death. */
    signal(SIGPIPE, SIG_IGN);
    const char *msg = argc > 4 ? argv[4] : NULL;
    int rc;
    if (strcmp(argv[1], "pending") == 0) {
        rc = pending(argv[2], argv[3]);
    } else if (strcmp(argv[1], "fork") == 0) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
            out("fork_errno=%s", errname(errno));
            return 1;
        }
        if (pid == 0) {
            prefix = "child: ";
            int c = run("block", argv[2], argv[3], msg);
            out("alive");
            _exit(c);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        out("child_exit=%d", rc);
    } else {
        rc = run(argv[1], argv[2], argv[3], msg);
    }
    out("alive");
    return rc;
}
"#;
