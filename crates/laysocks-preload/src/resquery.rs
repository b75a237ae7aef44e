//! The `res_*` family: programs that build DNS queries themselves (`res_query` for MX
//! or SRV records, `res_send` with a hand-made message). glibc sends these from its
//! own internal sockets, which no hook sees, so with remote DNS they are answered here:
//! the query travels as DNS over TCP (RFC 1035 §4.2.2: a two-byte length, then the
//! message) through the proxy, in a SOCKS5 CONNECT to the configured `dns_server`.
//! Without a `dns_server` they are refused (`-1`, `h_errno = TRY_AGAIN`, `errno =
//! ECONNREFUSED`) with one line on stderr: never sent directly.
//!
//! Each query opens its own connection (no state to share across fork, nothing the
//! program could close), bounded by the connect timeout. `res_search` and
//! `res_nsearch` query the name as given, without the search list.

use std::ffi::CStr;
use std::sync::atomic::{AtomicBool, Ordering};

use laysocks_proto::TargetAddr;
use laysocks_sys::net as sysnet;
use laysocks_sys::resolver::{self, NO_DATA, TRY_AGAIN};
use laysocks_sys::{real, time, Errno};
use libc::{c_char, c_int, c_void};

use crate::driver::{self, Failure};
use crate::hook::{HookResult, OnPanic, Outcome};
use crate::{connect, fdtable, layer, report};

/// Largest message we read back (the DNS-over-TCP length field's limit).
const MAX_MESSAGE: usize = 65_535;

/// What a query call does.
enum Query<'a> {
    /// Build a query for this name, class and type.
    Name {
        name: Vec<u8>,
        class: c_int,
        typ: c_int,
    },
    /// Send this message as it is.
    Message(&'a [u8]),
}

/// # Safety
/// `name` and `domain` are NULL or C strings.
unsafe fn joined_name(name: *const c_char, domain: *const c_char) -> Option<Vec<u8>> {
    if name.is_null() {
        return None;
    }
    // SAFETY: per the contract.
    let mut n = unsafe { CStr::from_ptr(name) }.to_bytes().to_vec();
    if !domain.is_null() {
        // SAFETY: per the contract.
        let d = unsafe { CStr::from_ptr(domain) }.to_bytes();
        if !d.is_empty() {
            if !n.ends_with(b".") {
                n.push(b'.');
            }
            n.extend_from_slice(d);
        }
    }
    Some(n)
}

/// The hooks' shared body. `answer` has `anslen` writable bytes.
fn run(api: &str, q: Query<'_>, answer: *mut u8, anslen: c_int) -> HookResult<c_int> {
    let Some(dns) = layer::dns() else {
        return Ok(Outcome::Passthrough);
    };
    let cfg = &layer::get().config;
    let shown = match &q {
        Query::Name { name, .. } => String::from_utf8_lossy(name).into_owned(),
        Query::Message(_) => "a prepared message".to_string(),
    };
    let fail = |h: c_int, e: c_int| -> HookResult<c_int> {
        resolver::set_h_errno(h);
        Errno(e).set();
        Ok(Outcome::Done(-1))
    };
    let Some(server) = dns.server else {
        static SAID: AtomicBool = AtomicBool::new(false);
        if !SAID.swap(true, Ordering::Relaxed) {
            report::refused(
                cfg,
                &format!("refused a DNS query for {shown} ({api}): it would bypass the proxy; set dns_server (--dns-server HOST) to send such queries through the proxy, or use --dns local"),
            );
        }
        return fail(TRY_AGAIN, libc::ECONNREFUSED);
    };
    let mut built = [0u8; 512];
    let message: &[u8] = match q {
        Query::Message(m) => m,
        Query::Name { name, class, typ } => {
            let Ok(cname) = std::ffi::CString::new(name) else {
                return fail(resolver::NO_RECOVERY, libc::EINVAL);
            };
            // SAFETY: res_mkquery writes at most built.len() bytes into our buffer.
            let n = unsafe {
                real::res_mkquery()(
                    0, // QUERY (RFC 1035 §4.1.1 opcode 0)
                    cname.as_ptr(),
                    class,
                    typ,
                    std::ptr::null(),
                    0,
                    std::ptr::null(),
                    built.as_mut_ptr(),
                    built.len() as c_int,
                )
            };
            if n < 0 {
                return fail(resolver::NO_RECOVERY, libc::EMSGSIZE);
            }
            &built[..n as usize]
        }
    };
    let reply = match exchange(&server, message) {
        Ok(r) => r,
        Err(errno) => return fail(TRY_AGAIN, errno.0),
    };
    let n = reply.len().min(anslen.max(0) as usize);
    if !answer.is_null() {
        // SAFETY: the program's buffer of anslen bytes; n ≤ anslen.
        unsafe { std::ptr::copy_nonoverlapping(reply.as_ptr(), answer, n) };
    }
    if matches!(api, "res_send" | "res_nsend") {
        return Ok(Outcome::Done(n as c_int));
    }
    // res_query semantics (glibc): an error RCODE or an empty answer is a failure with
    // h_errno saying which (RFC 1035 §4.1.1: RCODE is the header's low nibble of byte 3,
    // ANCOUNT bytes 6–7).
    if reply.len() < 12 {
        return fail(resolver::NO_RECOVERY, libc::EPROTO);
    }
    let ancount = u16::from_be_bytes([reply[6], reply[7]]);
    match reply[3] & 0x0f {
        0 if ancount > 0 => Ok(Outcome::Done(n as c_int)),
        0 => fail(NO_DATA, 0),
        3 => fail(resolver::HOST_NOT_FOUND, 0),
        2 => fail(TRY_AGAIN, 0),
        _ => fail(resolver::NO_RECOVERY, 0),
    }
}

/// One DNS-over-TCP exchange with `server` through the proxy. Failures are reported
/// (the connect's by the connect path, the exchange's here).
fn exchange(server: &TargetAddr, message: &[u8]) -> Result<Vec<u8>, Errno> {
    let cfg = &layer::get().config;
    let family = match cfg.proxy_addrs.first() {
        Some(a) if a.is_ipv6() => libc::AF_INET6,
        _ => libc::AF_INET,
    };
    // SAFETY: a new socket of our own; socket(2) is not hooked.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(Errno::last());
    }
    let started = time::now_ms();
    let deadline = started + u64::from(cfg.connect_timeout_ms);
    let r = connect::proxied_connect(fd, family, *server, None).and_then(|()| {
        let talk = || {
            let mut framed = Vec::with_capacity(message.len() + 2);
            framed.extend_from_slice(&(message.len() as u16).to_be_bytes());
            framed.extend_from_slice(message);
            send_all(fd, &framed, started, deadline)?;
            let mut len = [0u8; 2];
            recv_exact(fd, &mut len, started, deadline)?;
            let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len)).min(MAX_MESSAGE)];
            recv_exact(fd, &mut reply, started, deadline)?;
            Ok(reply)
        };
        talk().map_err(|(failure, errno)| {
            report::failed(cfg, server, &failure, errno);
            errno
        })
    });
    fdtable::forget(fd);
    // SAFETY: closing the socket we opened.
    unsafe { real::close()(fd) };
    r
}

fn io_failure(f: Failure) -> (Failure, Errno) {
    let e = f.errno();
    (f, e)
}

fn send_all(
    fd: c_int,
    mut buf: &[u8],
    started: u64,
    deadline: u64,
) -> Result<(), (Failure, Errno)> {
    while !buf.is_empty() {
        match sysnet::send_nonblocking(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(Errno(libc::EAGAIN)) | Err(Errno(libc::EINTR)) => {
                driver::wait_for(fd, libc::POLLOUT, started, deadline).map_err(io_failure)?
            }
            Err(e) => return Err((Failure::ProxyUnreachable(e), e)),
        }
    }
    Ok(())
}

fn recv_exact(
    fd: c_int,
    buf: &mut [u8],
    started: u64,
    deadline: u64,
) -> Result<(), (Failure, Errno)> {
    let mut got = 0;
    while got < buf.len() {
        match sysnet::recv_nonblocking(fd, &mut buf[got..]) {
            Ok(0) => {
                let e = Errno(libc::ECONNRESET);
                return Err((Failure::ProxyUnreachable(e), e));
            }
            Ok(n) => got += n,
            Err(Errno(libc::EAGAIN)) | Err(Errno(libc::EINTR)) => {
                driver::wait_for(fd, libc::POLLIN, started, deadline).map_err(io_failure)?
            }
            Err(e) => return Err((Failure::ProxyUnreachable(e), e)),
        }
    }
    Ok(())
}

/// # Safety
/// `name`/`domain` NULL or C strings; `answer` has `anslen` writable bytes.
unsafe fn by_name(
    api: &str,
    name: *const c_char,
    domain: *const c_char,
    class: c_int,
    typ: c_int,
    answer: *mut u8,
    anslen: c_int,
) -> HookResult<c_int> {
    if layer::dns().is_none() {
        return Ok(Outcome::Passthrough);
    }
    // SAFETY: per the contract.
    match unsafe { joined_name(name, domain) } {
        Some(name) => run(api, Query::Name { name, class, typ }, answer, anslen),
        None => Ok(Outcome::Passthrough),
    }
}

/// # Safety
/// `msg` has `msglen` readable bytes; `answer` has `anslen` writable bytes.
unsafe fn by_message(
    api: &str,
    msg: *const u8,
    msglen: c_int,
    answer: *mut u8,
    anslen: c_int,
) -> HookResult<c_int> {
    if layer::dns().is_none() || msg.is_null() || msglen <= 0 {
        return Ok(Outcome::Passthrough);
    }
    // SAFETY: per the contract.
    let m = unsafe { std::slice::from_raw_parts(msg, msglen as usize) };
    run(api, Query::Message(m), answer, anslen)
}

macro_rules! query_hooks {
    ($($name:ident),*) => {$(
        hook! {
            /// A `res_*query`/`res_*search` entry point (see the module docs).
            fn $name(dname: *const c_char, class: c_int, typ: c_int, answer: *mut u8, anslen: c_int) -> c_int;
            fast_path: false;
            on_panic: OnPanic::Fail(libc::ECONNREFUSED);
            // SAFETY: the program's arguments, with res_query(3)'s contract.
            body: unsafe { by_name(stringify!($name), dname, std::ptr::null(), class, typ, answer, anslen) }
        }
    )*};
}

macro_rules! nquery_hooks {
    ($($name:ident),*) => {$(
        hook! {
            /// A `res_n*query`/`res_n*search` entry point (the state is not used).
            fn $name(statp: *mut c_void, dname: *const c_char, class: c_int, typ: c_int, answer: *mut u8, anslen: c_int) -> c_int;
            fast_path: false;
            on_panic: OnPanic::Fail(libc::ECONNREFUSED);
            // SAFETY: the program's arguments, with res_nquery(3)'s contract.
            body: { let _ = statp; unsafe { by_name(stringify!($name), dname, std::ptr::null(), class, typ, answer, anslen) } }
        }
    )*};
}

query_hooks!(res_query, res_search, __res_query, __res_search);
nquery_hooks!(res_nquery, res_nsearch, __res_nquery, __res_nsearch);

hook! {
    /// `res_querydomain(3)`.
    fn res_querydomain(name: *const c_char, domain: *const c_char, class: c_int, typ: c_int, answer: *mut u8, anslen: c_int) -> c_int;
    fast_path: false;
    on_panic: OnPanic::Fail(libc::ECONNREFUSED);
    // SAFETY: the program's arguments, with res_querydomain(3)'s contract.
    body: unsafe { by_name("res_querydomain", name, domain, class, typ, answer, anslen) }
}

hook! {
    /// The old name of `res_querydomain`.
    fn __res_querydomain(name: *const c_char, domain: *const c_char, class: c_int, typ: c_int, answer: *mut u8, anslen: c_int) -> c_int;
    fast_path: false;
    on_panic: OnPanic::Fail(libc::ECONNREFUSED);
    // SAFETY: the program's arguments, with res_querydomain(3)'s contract.
    body: unsafe { by_name("res_querydomain", name, domain, class, typ, answer, anslen) }
}

hook! {
    /// `res_nquerydomain(3)`.
    fn res_nquerydomain(statp: *mut c_void, name: *const c_char, domain: *const c_char, class: c_int, typ: c_int, answer: *mut u8, anslen: c_int) -> c_int;
    fast_path: false;
    on_panic: OnPanic::Fail(libc::ECONNREFUSED);
    // SAFETY: the program's arguments, with res_nquerydomain(3)'s contract.
    body: { let _ = statp; unsafe { by_name("res_nquerydomain", name, domain, class, typ, answer, anslen) } }
}

hook! {
    /// The old name of `res_nquerydomain`.
    fn __res_nquerydomain(statp: *mut c_void, name: *const c_char, domain: *const c_char, class: c_int, typ: c_int, answer: *mut u8, anslen: c_int) -> c_int;
    fast_path: false;
    on_panic: OnPanic::Fail(libc::ECONNREFUSED);
    // SAFETY: the program's arguments, with res_nquerydomain(3)'s contract.
    body: { let _ = statp; unsafe { by_name("res_nquerydomain", name, domain, class, typ, answer, anslen) } }
}

hook! {
    /// `res_send(3)`.
    fn res_send(msg: *const u8, msglen: c_int, answer: *mut u8, anslen: c_int) -> c_int;
    fast_path: false;
    on_panic: OnPanic::Fail(libc::ECONNREFUSED);
    // SAFETY: the program's buffers, with res_send(3)'s contract.
    body: unsafe { by_message("res_send", msg, msglen, answer, anslen) }
}

hook! {
    /// The old name of `res_send`.
    fn __res_send(msg: *const u8, msglen: c_int, answer: *mut u8, anslen: c_int) -> c_int;
    fast_path: false;
    on_panic: OnPanic::Fail(libc::ECONNREFUSED);
    // SAFETY: the program's buffers, with res_send(3)'s contract.
    body: unsafe { by_message("res_send", msg, msglen, answer, anslen) }
}

hook! {
    /// `res_nsend(3)`.
    fn res_nsend(statp: *mut c_void, msg: *const u8, msglen: c_int, answer: *mut u8, anslen: c_int) -> c_int;
    fast_path: false;
    on_panic: OnPanic::Fail(libc::ECONNREFUSED);
    // SAFETY: the program's buffers, with res_nsend(3)'s contract.
    body: { let _ = statp; unsafe { by_message("res_nsend", msg, msglen, answer, anslen) } }
}

hook! {
    /// The old name of `res_nsend`.
    fn __res_nsend(statp: *mut c_void, msg: *const u8, msglen: c_int, answer: *mut u8, anslen: c_int) -> c_int;
    fast_path: false;
    on_panic: OnPanic::Fail(libc::ECONNREFUSED);
    // SAFETY: the program's buffers, with res_nsend(3)'s contract.
    body: { let _ = statp; unsafe { by_message("res_nsend", msg, msglen, answer, anslen) } }
}
