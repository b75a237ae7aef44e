//! The resolver hooks: `getaddrinfo` and friends answer remote names with placeholders
//! (DESIGN §4; policy in [`dns`](crate::dns), the table in [`namemap`](crate::namemap)).
//!
//! glibc's resolver talks to DNS through its own internal socket calls, so hooking
//! `connect` never sees a lookup: the API itself is hooked. A remote name is answered at
//! once, without any packet, by asking glibc for the *placeholder* as a numeric host:
//! glibc then applies every hint exactly as it would for a real answer (socket types
//! expanded, `/etc/services` consulted, `AI_NUMERICSERV`, bad flags refused…), and the
//! lists are glibc's own nodes, joined, with our canonical name where asked for.
//!
//! Families for a remote name: IPv4 then IPv6 for `AF_UNSPEC` (IPv4 first: every
//! program can use it, and the proxy reaches the target whatever it resolves to);
//! `AI_ADDRCONFIG` narrows `AF_UNSPEC` to the one family that has a non-loopback address
//! when only one has, and keeps both when neither has, as glibc does — so in a network
//! namespace with only loopback (the proxy on 127.0.0.1) the name still resolves.
//! With an explicit family, `AI_ADDRCONFIG` is glibc's own test (no address of that
//! family: `EAI_NONAME`). `AF_INET6` with `AI_V4MAPPED | AI_ALL` adds the IPv4-mapped
//! placeholder.
//!
//! Reverse lookups (`getnameinfo`, `gethostbyaddr`) of a placeholder give the name. Of
//! any other address they would send a PTR query: unless `/etc/hosts` has the address,
//! the answer is numeric (or "no name" where a name is required), never a query.

use std::cell::UnsafeCell;
use std::collections::BTreeSet;
use std::ffi::CStr;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use laysocks_sys::net as sysnet;
use laysocks_sys::resolver::{self, gaicb, Hints};
use laysocks_sys::{real, time, Errno};
use libc::{addrinfo, c_char, c_int, c_void, hostent, size_t, sockaddr, socklen_t};

use crate::dns::{Class, Dns};
use crate::fdtable::SpinLock;
use crate::hook::{HookResult, OnPanic, Outcome};
use crate::layer;

// ---- the lists we hand out ----

/// Heads of the lists this layer returned and the program has not freed yet, sharded
/// by address so that threads resolving at once rarely meet on a lock (the name table
/// itself takes none).
const SHARDS: usize = 32;
static OURS: [SpinLock<BTreeSet<usize>>; SHARDS] =
    [const { SpinLock::new(BTreeSet::new()) }; SHARDS];
static OURS_LIVE: AtomicUsize = AtomicUsize::new(0);

fn shard(list: *mut addrinfo) -> &'static SpinLock<BTreeSet<usize>> {
    // malloc blocks are 16-byte aligned: the bits above those spread the lists.
    &OURS[(list as usize >> 4) % SHARDS]
}

fn remember(list: *mut addrinfo) {
    shard(list).with(|s| s.insert(list as usize));
    OURS_LIVE.fetch_add(1, Ordering::Relaxed);
}

/// Whether `list` is one of ours; forgets it if so.
fn take_ours(list: *mut addrinfo) -> bool {
    let was = shard(list).with(|s| s.remove(&(list as usize)));
    if was {
        OURS_LIVE.fetch_sub(1, Ordering::Relaxed);
    }
    was
}

pub(crate) fn lock_for_fork() {
    OURS.iter().for_each(|s| s.lock());
}

pub(crate) fn unlock_after_fork() {
    OURS.iter().for_each(|s| s.unlock());
}

hook! {
    /// `getaddrinfo(3)`: remote names get placeholders.
    fn getaddrinfo(node: *const c_char, service: *const c_char, hints: *const addrinfo, res: *mut *mut addrinfo) -> c_int;
    fast_path: node.is_null();
    on_panic: OnPanic::Return(libc::EAI_FAIL);
    // SAFETY: the program's getaddrinfo arguments, with getaddrinfo(3)'s contract.
    body: unsafe { on_getaddrinfo(node, service, hints, res) }
}

hook! {
    /// `freeaddrinfo(3)`: our lists are freed here, everybody else's by libc.
    fn freeaddrinfo(ai: *mut addrinfo) -> ();
    fast_path: ai.is_null() || OURS_LIVE.load(Ordering::Relaxed) == 0;
    on_panic: OnPanic::Passthrough;
    body: if take_ours(ai) {
        // SAFETY: a list we built from glibc nodes and handed out once; the program is
        // done with it.
        unsafe { resolver::freeaddrinfo_glibc_layout(ai) };
        Ok(Outcome::Done(()))
    } else {
        Ok(Outcome::Passthrough)
    }
}

/// # Safety
/// getaddrinfo(3)'s contract for every argument.
unsafe fn on_getaddrinfo(
    node: *const c_char,
    service: *const c_char,
    hints: *const addrinfo,
    res: *mut *mut addrinfo,
) -> HookResult<c_int> {
    let Some(dns) = layer::dns() else {
        return Ok(Outcome::Passthrough);
    };
    // SAFETY: hints is NULL or the program's addrinfo.
    let h = unsafe { Hints::read(hints) };
    if h.flags & libc::AI_NUMERICHOST != 0
        || !matches!(h.family, libc::AF_UNSPEC | libc::AF_INET | libc::AF_INET6)
    {
        // Numeric only, or a family glibc will refuse: nothing is looked up.
        return Ok(Outcome::Passthrough);
    }
    // SAFETY: node is a non-NULL C string (fast path).
    let name = unsafe { CStr::from_ptr(node) };
    let norm = match dns.classify(name) {
        Class::Local => return Ok(Outcome::Passthrough),
        Class::Hosts { v4, v6 } => {
            let found = match h.family {
                libc::AF_INET => v4,
                libc::AF_INET6 => v6 || (v4 && h.flags & libc::AI_V4MAPPED != 0),
                _ => true,
            };
            return Ok(if found {
                Outcome::Passthrough
            } else {
                Outcome::Done(libc::EAI_NONAME)
            });
        }
        Class::Invalid => return Ok(Outcome::Done(libc::EAI_NONAME)),
        Class::Remote(n) => n,
    };
    let Some(slot) = dns.slot_for(&norm, layer::get().config.quiet) else {
        return Ok(Outcome::Done(libc::EAI_MEMORY));
    };
    // The canonical name is the name as the program gave it (glibc gives the DNS
    // canonical name, which only the proxy could know), without a final dot.
    let given = name.to_bytes();
    let given = given.strip_suffix(b".").unwrap_or(given);
    match placeholder_list(dns, slot, given, service, h) {
        Ok(list) => {
            remember(list);
            // SAFETY: res is the program's out pointer.
            unsafe { *res = list };
            Ok(Outcome::Done(0))
        }
        Err(code) => Ok(Outcome::Done(code)),
    }
}

/// Which placeholder addresses answer a request of these hints, in order.
fn placeholder_addrs(dns: &Dns, slot: u32, h: Hints) -> Vec<IpAddr> {
    let v4 = IpAddr::V4(dns.map.v4(slot));
    let v6 = IpAddr::V6(dns.map.v6(slot));
    match h.family {
        libc::AF_INET => vec![v4],
        libc::AF_INET6 => {
            let mut v = vec![v6];
            if h.flags & libc::AI_V4MAPPED != 0 && h.flags & libc::AI_ALL != 0 {
                v.push(IpAddr::V6(dns.map.v4(slot).to_ipv6_mapped()));
            }
            v
        }
        _ => {
            if h.flags & libc::AI_ADDRCONFIG != 0 {
                match configured_families() {
                    (true, false) => return vec![v4],
                    (false, true) => return vec![v6],
                    _ => {}
                }
            }
            vec![v4, v6]
        }
    }
}

/// glibc's answer for the placeholders, joined into one list.
fn placeholder_list(
    dns: &Dns,
    slot: u32,
    canon: &[u8],
    service: *const c_char,
    h: Hints,
) -> Result<*mut addrinfo, c_int> {
    // An explicit family keeps AI_ADDRCONFIG, so glibc applies its own test (and in its
    // order: before the service); for AF_UNSPEC the families were chosen above.
    let mut drop = libc::AI_CANONNAME | libc::AI_V4MAPPED | libc::AI_ALL;
    if h.family == libc::AF_UNSPEC {
        drop |= libc::AI_ADDRCONFIG;
    }
    let keep = h.flags & !drop;
    let mut list: *mut addrinfo = std::ptr::null_mut();
    for ip in placeholder_addrs(dns, slot, h) {
        let text = std::ffi::CString::new(ip.to_string()).expect("no NUL in an address");
        let family = if ip.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        // SAFETY: service is the program's (NULL or a C string); the lists are ours
        // until handed to the program.
        unsafe {
            let part = resolver::numeric(
                &text,
                service,
                Hints {
                    flags: keep,
                    family,
                    ..h
                },
            );
            match part {
                Ok(p) => list = resolver::join(list, p),
                Err(code) => {
                    resolver::free_list(list);
                    return Err(code);
                }
            }
        }
    }
    // Nodes carry the request's flags, as glibc's do.
    let mut p = list;
    while !p.is_null() {
        // SAFETY: walking the list glibc just built for us.
        unsafe {
            (*p).ai_flags = h.flags;
            p = (*p).ai_next;
        }
    }
    // SAFETY: the list we just built and own.
    if h.flags & libc::AI_CANONNAME != 0 && !unsafe { resolver::set_canonname(list, canon) } {
        // SAFETY: as above.
        unsafe { resolver::free_list(list) };
        return Err(libc::EAI_MEMORY);
    }
    Ok(list)
}

/// Which families have a non-loopback address (glibc's `AI_ADDRCONFIG` test), asked
/// of glibc itself and cached for a second.
fn configured_families() -> (bool, bool) {
    static CACHE: AtomicU64 = AtomicU64::new(0);
    let now = time::now_ms();
    let c = CACHE.load(Ordering::Relaxed);
    if c != 0 && now.saturating_sub(c >> 2) < 1000 {
        return (c & 1 != 0, c & 2 != 0);
    }
    let seen = |host: &CStr, family| {
        let h = Hints {
            flags: libc::AI_ADDRCONFIG,
            family,
            socktype: libc::SOCK_STREAM,
            protocol: 0,
        };
        // SAFETY: no service; the list is ours to free.
        unsafe {
            match resolver::numeric(host, std::ptr::null(), h) {
                Ok(l) => {
                    resolver::free_list(l);
                    true
                }
                Err(_) => false,
            }
        }
    };
    let v4 = seen(c"198.18.0.1", libc::AF_INET);
    let v6 = seen(c"fd6c::1", libc::AF_INET6);
    CACHE.store(
        (now << 2) | u64::from(v4) | (u64::from(v6) << 1),
        Ordering::Relaxed,
    );
    (v4, v6)
}

// ---- reverse lookups ----

hook! {
    /// `getnameinfo(3)`: a placeholder's name; no PTR query for other addresses.
    fn getnameinfo(sa: *const sockaddr, salen: socklen_t, host: *mut c_char, hostlen: socklen_t, serv: *mut c_char, servlen: socklen_t, flags: c_int) -> c_int;
    fast_path: sa.is_null() || host.is_null() || hostlen == 0 || flags & libc::NI_NUMERICHOST != 0;
    on_panic: OnPanic::Return(libc::EAI_FAIL);
    // SAFETY: the program's getnameinfo arguments, with getnameinfo(3)'s contract.
    body: unsafe { on_getnameinfo(sa, salen, host, hostlen, serv, servlen, flags) }
}

/// How a reverse lookup of an address is answered.
enum Reverse {
    /// The system may answer (a name it finds in `/etc/hosts`, or the user's choice).
    System,
    /// A placeholder's name.
    Name(Vec<u8>),
    /// No name without a query: numeric, or "not found".
    NoName,
}

fn reverse(dns: &Dns, ip: IpAddr) -> Reverse {
    if let Some(slot) = dns.map.slot_of(ip) {
        return match dns.map.name(slot) {
            Some(n) => Reverse::Name(n),
            None => Reverse::NoName,
        };
    }
    if dns.map.is_placeholder(ip) {
        return Reverse::NoName;
    }
    let cfg = &layer::get().config;
    if dns.reverse_is_local(ip)
        || cfg
            .excludes
            .iter()
            .any(|e| e.matches(SocketAddr::new(ip, 0)) || e.matches(SocketAddr::new(ip, 1)))
    {
        return Reverse::System;
    }
    Reverse::NoName
}

/// # Safety
/// getnameinfo(3)'s contract for every argument.
unsafe fn on_getnameinfo(
    sa: *const sockaddr,
    salen: socklen_t,
    host: *mut c_char,
    hostlen: socklen_t,
    serv: *mut c_char,
    servlen: socklen_t,
    flags: c_int,
) -> HookResult<c_int> {
    let Some(dns) = layer::dns() else {
        return Ok(Outcome::Passthrough);
    };
    // SAFETY: the program's address of salen bytes.
    let Some(addr) = (unsafe { sysnet::read_sockaddr(sa, salen) }) else {
        return Ok(Outcome::Passthrough);
    };
    let name = match reverse(dns, addr.ip()) {
        Reverse::System => return Ok(Outcome::Passthrough),
        Reverse::Name(n) => n,
        Reverse::NoName => {
            if flags & libc::NI_NAMEREQD != 0 {
                return Ok(Outcome::Done(libc::EAI_NONAME));
            }
            // SAFETY: the program's buffers, passed on with NI_NUMERICHOST added.
            let rc = unsafe {
                real::getnameinfo()(
                    sa,
                    salen,
                    host,
                    hostlen,
                    serv,
                    servlen,
                    flags | libc::NI_NUMERICHOST,
                )
            };
            return Ok(Outcome::Done(rc));
        }
    };
    if !serv.is_null() && servlen > 0 {
        // SAFETY: the service part alone, into the program's buffer.
        let rc = unsafe {
            real::getnameinfo()(sa, salen, std::ptr::null_mut(), 0, serv, servlen, flags)
        };
        if rc != 0 {
            return Ok(Outcome::Done(rc));
        }
    }
    if name.len() + 1 > hostlen as usize {
        return Ok(Outcome::Done(libc::EAI_OVERFLOW));
    }
    // SAFETY: host has hostlen ≥ name.len() + 1 writable bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(name.as_ptr(), host.cast::<u8>(), name.len());
        *host.add(name.len()) = 0;
    }
    Ok(Outcome::Done(0))
}

// ---- hostent ----

/// What a `gethostby*` call answers.
enum HostAnswer {
    System,
    NotFound(c_int),
    Entry {
        name: Vec<u8>,
        family: c_int,
        addr: [u8; 16],
    },
}

fn by_name(name: *const c_char, family: c_int) -> HostAnswer {
    let Some(dns) = layer::dns() else {
        return HostAnswer::System;
    };
    if name.is_null() || !matches!(family, libc::AF_INET | libc::AF_INET6) {
        return HostAnswer::System;
    }
    // SAFETY: the program's NUL-terminated name.
    let cname = unsafe { CStr::from_ptr(name) };
    let norm = match dns.classify(cname) {
        Class::Local => return HostAnswer::System,
        Class::Hosts { v4, v6 } => {
            let found = if family == libc::AF_INET { v4 } else { v6 };
            return if found {
                HostAnswer::System
            } else {
                HostAnswer::NotFound(resolver::HOST_NOT_FOUND)
            };
        }
        Class::Invalid => return HostAnswer::NotFound(resolver::HOST_NOT_FOUND),
        Class::Remote(n) => n,
    };
    let Some(slot) = dns.slot_for(&norm, layer::get().config.quiet) else {
        Errno(libc::ENOMEM).set();
        return HostAnswer::NotFound(resolver::NO_RECOVERY);
    };
    let mut addr = [0u8; 16];
    if family == libc::AF_INET {
        addr[..4].copy_from_slice(&dns.map.v4(slot).octets());
    } else {
        addr = dns.map.v6(slot).octets();
    }
    HostAnswer::Entry {
        name: norm,
        family,
        addr,
    }
}

fn by_addr(addr: *const c_void, len: socklen_t, family: c_int) -> HostAnswer {
    let Some(dns) = layer::dns() else {
        return HostAnswer::System;
    };
    let mut raw = [0u8; 16];
    let ip = match (family, len) {
        (libc::AF_INET, 4) => {
            // SAFETY: the program's 4-byte address.
            unsafe { std::ptr::copy_nonoverlapping(addr.cast::<u8>(), raw.as_mut_ptr(), 4) };
            IpAddr::from([raw[0], raw[1], raw[2], raw[3]])
        }
        (libc::AF_INET6, 16) => {
            // SAFETY: the program's 16-byte address.
            unsafe { std::ptr::copy_nonoverlapping(addr.cast::<u8>(), raw.as_mut_ptr(), 16) };
            IpAddr::from(raw)
        }
        _ => return HostAnswer::System,
    };
    match reverse(dns, ip) {
        Reverse::System => HostAnswer::System,
        Reverse::NoName => HostAnswer::NotFound(resolver::HOST_NOT_FOUND),
        Reverse::Name(name) => HostAnswer::Entry {
            name,
            family,
            addr: raw,
        },
    }
}

/// Lays out a `hostent` for one address in `buf` (the `_r` functions' buffer).
/// Returns false if `buf` is too small.
///
/// # Safety
/// `ret` is writable; `buf` has `buflen` writable bytes.
unsafe fn fill_hostent(
    ret: *mut hostent,
    buf: *mut c_char,
    buflen: size_t,
    name: &[u8],
    family: c_int,
    addr: &[u8; 16],
) -> bool {
    let alen = if family == libc::AF_INET { 4 } else { 16 };
    let ptr = std::mem::size_of::<*mut c_char>();
    let pad = (ptr - (buf as usize) % ptr) % ptr;
    // aliases: [NULL]; addr_list: [addr, NULL]; then the address, then the name.
    let need = pad + 3 * ptr + 16 + name.len() + 1;
    if buflen < need {
        return false;
    }
    // SAFETY: every write below is inside buf[..need], pointer slots aligned by `pad`.
    unsafe {
        let base = buf.add(pad);
        let aliases = base as *mut *mut c_char;
        let list = aliases.add(1);
        let abytes = base.add(3 * ptr);
        let nbytes = abytes.add(16);
        *aliases = std::ptr::null_mut();
        std::ptr::copy_nonoverlapping(addr.as_ptr(), abytes.cast::<u8>(), 16);
        *list = abytes;
        *list.add(1) = std::ptr::null_mut();
        std::ptr::copy_nonoverlapping(name.as_ptr(), nbytes.cast::<u8>(), name.len());
        *nbytes.add(name.len()) = 0;
        *ret = hostent {
            h_name: nbytes,
            h_aliases: aliases,
            h_addrtype: family,
            h_length: alen,
            h_addr_list: list,
        };
    }
    true
}

/// The `_r` calling convention: 0 with `*result` set, 0 with `*result` NULL and
/// `*h_errnop` for "not found", `ERANGE` for a small buffer.
///
/// # Safety
/// The `_r` functions' contract for `ret`, `buf`, `buflen`, `result`, `h_errnop`.
unsafe fn answer_r(
    a: HostAnswer,
    ret: *mut hostent,
    buf: *mut c_char,
    buflen: size_t,
    result: *mut *mut hostent,
    h_errnop: *mut c_int,
) -> HookResult<c_int> {
    match a {
        HostAnswer::System => Ok(Outcome::Passthrough),
        HostAnswer::NotFound(h) => {
            // SAFETY: the program's out pointers.
            unsafe {
                *result = std::ptr::null_mut();
                if !h_errnop.is_null() {
                    *h_errnop = h;
                }
            }
            Ok(Outcome::Done(0))
        }
        HostAnswer::Entry { name, family, addr } => {
            // SAFETY: the program's buffers, per the contract.
            if unsafe { fill_hostent(ret, buf, buflen, &name, family, &addr) } {
                // SAFETY: the program's out pointer.
                unsafe { *result = ret };
                Ok(Outcome::Done(0))
            } else {
                // SAFETY: the program's out pointers.
                unsafe {
                    *result = std::ptr::null_mut();
                    if !h_errnop.is_null() {
                        *h_errnop = -1; // NETDB_INTERNAL: see errno
                    }
                }
                Errno(libc::ERANGE).set();
                Ok(Outcome::Done(libc::ERANGE))
            }
        }
    }
}

/// A thread's `hostent` for the non-reentrant functions (glibc uses one static buffer
/// per process; one per thread is at least as safe).
struct StaticHostent {
    ent: UnsafeCell<hostent>,
    buf: UnsafeCell<[u64; 64]>,
}

thread_local! {
    static HOSTENT: StaticHostent = const {
        StaticHostent {
            ent: UnsafeCell::new(hostent {
                h_name: std::ptr::null_mut(),
                h_aliases: std::ptr::null_mut(),
                h_addrtype: 0,
                h_length: 0,
                h_addr_list: std::ptr::null_mut(),
            }),
            buf: UnsafeCell::new([0; 64]),
        }
    };
}

fn answer_static(a: HostAnswer) -> HookResult<*mut hostent> {
    match a {
        HostAnswer::System => Ok(Outcome::Passthrough),
        HostAnswer::NotFound(h) => {
            resolver::set_h_errno(h);
            Ok(Outcome::Done(std::ptr::null_mut()))
        }
        HostAnswer::Entry { name, family, addr } => {
            let r = HOSTENT.try_with(|s| {
                let ent = s.ent.get();
                let buf = s.buf.get();
                // SAFETY: this thread's buffers (512 bytes: room for a 253-byte name).
                let ok = unsafe {
                    fill_hostent(
                        ent,
                        buf.cast(),
                        std::mem::size_of::<[u64; 64]>(),
                        &name,
                        family,
                        &addr,
                    )
                };
                if ok {
                    ent
                } else {
                    std::ptr::null_mut()
                }
            });
            match r {
                Ok(p) if !p.is_null() => Ok(Outcome::Done(p)),
                _ => {
                    resolver::set_h_errno(resolver::NO_RECOVERY);
                    Ok(Outcome::Done(std::ptr::null_mut()))
                }
            }
        }
    }
}

hook! {
    /// `gethostbyname(3)`.
    fn gethostbyname(name: *const c_char) -> *mut hostent;
    fast_path: false;
    on_panic: OnPanic::Return(std::ptr::null_mut());
    body: answer_static(by_name(name, libc::AF_INET))
}

hook! {
    /// `gethostbyname2(3)`.
    fn gethostbyname2(name: *const c_char, af: c_int) -> *mut hostent;
    fast_path: false;
    on_panic: OnPanic::Return(std::ptr::null_mut());
    body: answer_static(by_name(name, af))
}

hook! {
    /// `gethostbyaddr(3)`.
    fn gethostbyaddr(addr: *const c_void, len: socklen_t, af: c_int) -> *mut hostent;
    fast_path: addr.is_null();
    on_panic: OnPanic::Return(std::ptr::null_mut());
    body: answer_static(by_addr(addr, len, af))
}

hook! {
    /// `gethostbyname_r(3)`.
    fn gethostbyname_r(name: *const c_char, ret: *mut hostent, buf: *mut c_char, buflen: size_t, result: *mut *mut hostent, h_errnop: *mut c_int) -> c_int;
    fast_path: false;
    on_panic: OnPanic::Return(libc::EAGAIN);
    // SAFETY: the program's buffers, with gethostbyname_r(3)'s contract.
    body: unsafe { answer_r(by_name(name, libc::AF_INET), ret, buf, buflen, result, h_errnop) }
}

hook! {
    /// `gethostbyname2_r(3)`.
    fn gethostbyname2_r(name: *const c_char, af: c_int, ret: *mut hostent, buf: *mut c_char, buflen: size_t, result: *mut *mut hostent, h_errnop: *mut c_int) -> c_int;
    fast_path: false;
    on_panic: OnPanic::Return(libc::EAGAIN);
    // SAFETY: the program's buffers, with gethostbyname2_r(3)'s contract.
    body: unsafe { answer_r(by_name(name, af), ret, buf, buflen, result, h_errnop) }
}

hook! {
    /// `gethostbyaddr_r(3)`.
    fn gethostbyaddr_r(addr: *const c_void, len: socklen_t, af: c_int, ret: *mut hostent, buf: *mut c_char, buflen: size_t, result: *mut *mut hostent, h_errnop: *mut c_int) -> c_int;
    fast_path: addr.is_null();
    on_panic: OnPanic::Return(libc::EAGAIN);
    // SAFETY: the program's buffers, with gethostbyaddr_r(3)'s contract.
    body: unsafe { answer_r(by_addr(addr, len, af), ret, buf, buflen, result, h_errnop) }
}

// ---- getaddrinfo_a ----

hook! {
    /// `getaddrinfo_a(3)`: remote names are answered at once; the rest go to glibc.
    fn getaddrinfo_a(mode: c_int, list: *mut *mut gaicb, n: c_int, sev: *mut libc::sigevent) -> c_int;
    fast_path: list.is_null() || n <= 0;
    on_panic: OnPanic::Return(libc::EAI_SYSTEM);
    // SAFETY: the program's requests, with getaddrinfo_a(3)'s contract.
    body: unsafe { on_getaddrinfo_a(mode, list, n, sev) }
}

/// # Safety
/// getaddrinfo_a(3)'s contract for every argument.
unsafe fn on_getaddrinfo_a(
    mode: c_int,
    list: *mut *mut gaicb,
    n: c_int,
    sev: *mut libc::sigevent,
) -> HookResult<c_int> {
    if layer::dns().is_none() {
        return Ok(Outcome::Passthrough);
    }
    // SAFETY: the program's array of n request pointers (NULL entries are allowed).
    let reqs = unsafe { std::slice::from_raw_parts(list, n as usize) };
    let mut rest: Vec<*mut gaicb> = Vec::new();
    for &r in reqs {
        if r.is_null() {
            continue;
        }
        // SAFETY: a request the program owns until it completes.
        let req = unsafe { &mut *r };
        let mut out = std::ptr::null_mut();
        // Our own answer, or "glibc's" (Passthrough) for local names.
        // SAFETY: the request's fields, as getaddrinfo would take them.
        let mine = if req.ar_name.is_null() {
            None
        } else {
            match unsafe { on_getaddrinfo(req.ar_name, req.ar_service, req.ar_request, &mut out) } {
                Ok(Outcome::Done(code)) => Some(code),
                _ => None,
            }
        };
        match mine {
            Some(code) => {
                req.ar_result = if code == 0 { out } else { std::ptr::null_mut() };
                req.return_ = code;
            }
            None => rest.push(r),
        }
    }
    if rest.len() == reqs.iter().filter(|r| !r.is_null()).count() {
        return Ok(Outcome::Passthrough);
    }
    if !rest.is_empty() {
        // glibc handles the local names; its notification (if any) comes when they are
        // done, and ours are done already.
        // SAFETY: pointers to the program's own requests; glibc keeps the requests,
        // not this array.
        let rc =
            unsafe { real::getaddrinfo_a()(mode, rest.as_mut_ptr(), rest.len() as c_int, sev) };
        return Ok(Outcome::Done(rc));
    }
    if mode == resolver::GAI_NOWAIT && !sev.is_null() {
        // SAFETY: the program's sigevent.
        unsafe { notify(&*sev) };
    }
    Ok(Outcome::Done(0))
}

/// Completion notification as glibc gives it (`sigevent(7)`).
///
/// # Safety
/// `sev` is the program's valid sigevent.
unsafe fn notify(sev: &libc::sigevent) {
    match sev.sigev_notify {
        libc::SIGEV_SIGNAL => {
            // SAFETY: queue the program's signal with its value to this process.
            unsafe {
                libc::sigqueue(libc::getpid(), sev.sigev_signo, sev.sigev_value);
            }
        }
        libc::SIGEV_THREAD => {
            // The C struct keeps the thread function in a union the libc crate does not
            // name; it sits right after sigev_notify (glibc's _sigev_thread layout).
            #[repr(C)]
            struct ThreadNotify {
                value: libc::sigval,
                signo: c_int,
                notify: c_int,
                function: Option<extern "C" fn(libc::sigval)>,
                attributes: *mut libc::pthread_attr_t,
            }
            // SAFETY: glibc's struct sigevent starts with exactly these fields.
            let t = unsafe { &*(sev as *const libc::sigevent as *const ThreadNotify) };
            if let Some(f) = t.function {
                let value = t.value.sival_ptr as usize;
                let _ = std::thread::Builder::new()
                    .name("laysocks-gai".into())
                    .spawn(move || {
                        f(libc::sigval {
                            sival_ptr: value as *mut c_void,
                        })
                    });
            }
        }
        _ => {}
    }
}
