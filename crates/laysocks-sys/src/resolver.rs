//! The resolver API's C side: what glibc's `<netdb.h>`/`<resolv.h>` define and the
//! `libc` crate lacks, and the few list operations the resolver hooks need.
//!
//! `addrinfo` lists are built the way glibc builds them — every node one `malloc` block
//! holding the node and its address, the canonical name a separate `malloc` — because
//! the layer's lists are made of glibc's own nodes (see [`numeric`]), so either
//! `freeaddrinfo` frees them correctly.

use std::ffi::CStr;

use libc::{addrinfo, c_char, c_int};

use crate::real;

/// `struct gaicb` from `<netdb.h>` (glibc; used by `getaddrinfo_a`).
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct gaicb {
    pub ar_name: *const c_char,
    pub ar_service: *const c_char,
    pub ar_request: *const addrinfo,
    pub ar_result: *mut addrinfo,
    /// What `gai_error` returns.
    pub return_: c_int,
    pub reserved: [c_int; 5],
}

/// `getaddrinfo_a` modes.
pub const GAI_WAIT: c_int = 0;
pub const GAI_NOWAIT: c_int = 1;

/// glibc's extra `getaddrinfo` flags (`_GNU_SOURCE`): IDN conversion.
pub const AI_IDN: c_int = 0x0040;
pub const AI_CANONIDN: c_int = 0x0080;

/// `h_errno` values (`<netdb.h>`).
pub const HOST_NOT_FOUND: c_int = 1;
pub const TRY_AGAIN: c_int = 2;
pub const NO_RECOVERY: c_int = 3;
pub const NO_DATA: c_int = 4;

extern "C" {
    fn __h_errno_location() -> *mut c_int;
}

/// Sets this thread's `h_errno`.
pub fn set_h_errno(v: c_int) {
    // SAFETY: glibc's per-thread h_errno slot, valid for the life of the thread.
    unsafe { *__h_errno_location() = v };
}

/// The request's fields, with glibc's defaults for a NULL `hints`
/// (`AI_V4MAPPED | AI_ADDRCONFIG`, any family, socket type and protocol).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hints {
    pub flags: c_int,
    pub family: c_int,
    pub socktype: c_int,
    pub protocol: c_int,
}

impl Hints {
    /// # Safety
    /// `hints` is NULL or points to a readable `addrinfo`.
    pub unsafe fn read(hints: *const addrinfo) -> Hints {
        if hints.is_null() {
            return Hints {
                flags: libc::AI_V4MAPPED | libc::AI_ADDRCONFIG,
                family: libc::AF_UNSPEC,
                socktype: 0,
                protocol: 0,
            };
        }
        // SAFETY: non-null and readable, per the contract.
        let h = unsafe { &*hints };
        Hints {
            flags: h.ai_flags,
            family: h.ai_family,
            socktype: h.ai_socktype,
            protocol: h.ai_protocol,
        }
    }

    fn to_c(self) -> addrinfo {
        addrinfo {
            ai_flags: self.flags,
            ai_family: self.family,
            ai_socktype: self.socktype,
            ai_protocol: self.protocol,
            ai_addrlen: 0,
            ai_addr: std::ptr::null_mut(),
            ai_canonname: std::ptr::null_mut(),
            ai_next: std::ptr::null_mut(),
        }
    }
}

/// glibc's answer for a numeric `host`: the list, or an `EAI_*` code. `AI_NUMERICHOST`
/// is added, so glibc never looks anything up. Service names are looked up in
/// `/etc/services` as usual, socket types expanded, hints checked, exactly as glibc
/// does for any host.
///
/// # Safety
/// `service` is NULL or a C string.
pub unsafe fn numeric(
    host: &CStr,
    service: *const c_char,
    hints: Hints,
) -> Result<*mut addrinfo, c_int> {
    let h = Hints {
        flags: hints.flags | libc::AI_NUMERICHOST,
        ..hints
    }
    .to_c();
    let mut res = std::ptr::null_mut();
    // SAFETY: host is NUL-terminated, service is the program's (NULL or a C string),
    // `h` and `res` are valid for the call.
    let rc = unsafe { real::getaddrinfo()(host.as_ptr(), service, &h, &mut res) };
    if rc == 0 {
        Ok(res)
    } else {
        Err(rc)
    }
}

/// Whether glibc reads `node` as a numeric address (its own rules: `inet_aton` forms
/// such as `127.1`, IPv6 with a `%scope`).
pub fn is_numeric_host(node: &CStr) -> bool {
    let hints = Hints {
        flags: 0,
        family: libc::AF_UNSPEC,
        socktype: libc::SOCK_STREAM,
        protocol: 0,
    };
    // SAFETY: no service; the list is ours to free.
    unsafe {
        match numeric(node, std::ptr::null(), hints) {
            Ok(list) => {
                free_list(list);
                true
            }
            Err(_) => false,
        }
    }
}

/// Appends `tail` to the list `head` (either may be NULL); returns the joined head.
///
/// # Safety
/// Both are NULL or well-formed lists that the caller owns.
pub unsafe fn join(head: *mut addrinfo, tail: *mut addrinfo) -> *mut addrinfo {
    if head.is_null() {
        return tail;
    }
    let mut p = head;
    // SAFETY: `head` is a well-formed list from glibc (or joined by us), NULL-terminated.
    unsafe {
        while !(*p).ai_next.is_null() {
            p = (*p).ai_next;
        }
        (*p).ai_next = tail;
    }
    head
}

/// Gives the list's first node a canonical name (`AI_CANONNAME`), `malloc`ed as glibc
/// does. Returns false if out of memory.
///
/// # Safety
/// `head` is NULL or a list node the caller owns.
pub unsafe fn set_canonname(head: *mut addrinfo, name: &[u8]) -> bool {
    if head.is_null() {
        return true;
    }
    // SAFETY: malloc of len+1 bytes, filled and NUL-terminated; the node is ours to edit.
    unsafe {
        let p = libc::malloc(name.len() + 1) as *mut u8;
        if p.is_null() {
            return false;
        }
        std::ptr::copy_nonoverlapping(name.as_ptr(), p, name.len());
        *p.add(name.len()) = 0;
        libc::free((*head).ai_canonname.cast());
        (*head).ai_canonname = p.cast();
    }
    true
}

/// Frees a list built of glibc nodes (what `freeaddrinfo` does).
///
/// # Safety
/// `list` is NULL or a list in glibc's layout that nobody else will free.
pub unsafe fn free_list(list: *mut addrinfo) {
    // SAFETY: the fallback walker frees exactly glibc's layout, which our lists have.
    unsafe { freeaddrinfo_glibc_layout(list) }
}

/// # Safety
/// `list` is NULL or a list in glibc's layout that nobody else will free.
pub unsafe fn freeaddrinfo_glibc_layout(mut ai: *mut addrinfo) {
    // SAFETY: per the contract: each node and each canonical name one malloc block.
    unsafe {
        while !ai.is_null() {
            let next = (*ai).ai_next;
            libc::free((*ai).ai_canonname.cast());
            libc::free(ai.cast());
            ai = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_hosts_follow_glibc() {
        assert!(is_numeric_host(c"203.0.113.2"));
        assert!(is_numeric_host(c"127.1"));
        assert!(is_numeric_host(c"2001:db8::1"));
        assert!(is_numeric_host(c"::ffff:203.0.113.2"));
        assert!(!is_numeric_host(c"example.test"));
        assert!(!is_numeric_host(c"203.0.113.2.example"));
        assert!(!is_numeric_host(c""));
    }

    #[test]
    fn numeric_lists_join_and_free() {
        let hints = Hints {
            flags: 0,
            family: libc::AF_INET,
            socktype: 0,
            protocol: 0,
        };
        // SAFETY (whole test): C-string services; the lists are built, walked and freed
        // here only.
        let a = unsafe { numeric(c"198.18.0.1", c"http".as_ptr(), hints) }.unwrap();
        let b = unsafe {
            numeric(
                c"fd6c::1",
                c"80".as_ptr(),
                Hints {
                    family: libc::AF_INET6,
                    ..hints
                },
            )
        }
        .unwrap();
        let l = unsafe { join(a, b) };
        assert!(unsafe { set_canonname(l, b"remote.test") });
        let mut n = 0;
        let mut p = l;
        while !p.is_null() {
            n += 1;
            // SAFETY: walking the list we just built.
            p = unsafe { (*p).ai_next };
        }
        // "http" is a TCP service in /etc/services: one entry; port 80 is any type's:
        // stream, datagram and raw, as glibc expands socket type 0.
        assert_eq!(n, 4);
        // SAFETY: the canonical name we set.
        assert_eq!(unsafe { CStr::from_ptr((*l).ai_canonname) }, c"remote.test");
        unsafe { free_list(l) };
        assert_eq!(
            unsafe { numeric(c"1.2.3.4", c"nosuchservice".as_ptr(), hints) }.err(),
            Some(libc::EAI_SERVICE)
        );
    }
}
