//! errno: read it, set it, name it.

use std::fmt;

/// A positive errno value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    /// The errno a direct connect would have failed with where a SOCKS5 exchange failed
    /// with `kind` (DESIGN §3.5), for both layers.
    pub fn for_socks(kind: laysocks_proto::ErrorKind) -> Errno {
        use laysocks_proto::ErrorKind as K;
        Errno(match kind {
            K::ConnectionRefused => libc::ECONNREFUSED,
            K::NetworkUnreachable => libc::ENETUNREACH,
            K::HostUnreachable => libc::EHOSTUNREACH,
            K::TimedOut => libc::ETIMEDOUT,
            K::AccessDenied => libc::EACCES,
            K::Unsupported => libc::EAFNOSUPPORT,
            K::ProtocolError => libc::EPROTO,
        })
    }

    /// The calling thread's current errno.
    pub fn last() -> Errno {
        // SAFETY: __errno_location always returns a valid pointer to this thread's errno.
        Errno(unsafe { *libc::__errno_location() })
    }

    /// Sets the calling thread's errno.
    pub fn set(self) {
        // SAFETY: as above; writing errno is what every libc function does.
        unsafe { *libc::__errno_location() = self.0 }
    }

    /// The symbolic name, `ECONNREFUSED`; `E<number>` for the rare ones.
    pub fn name(self) -> &'static str {
        match self.0 {
            libc::EPERM => "EPERM",
            libc::ENOENT => "ENOENT",
            libc::EINTR => "EINTR",
            libc::EIO => "EIO",
            libc::EBADF => "EBADF",
            libc::EAGAIN => "EAGAIN",
            libc::ENOMEM => "ENOMEM",
            libc::EACCES => "EACCES",
            libc::EFAULT => "EFAULT",
            libc::EINVAL => "EINVAL",
            libc::EMFILE => "EMFILE",
            libc::EPIPE => "EPIPE",
            libc::ENOSYS => "ENOSYS",
            libc::EPROTO => "EPROTO",
            libc::ENOTSOCK => "ENOTSOCK",
            libc::EPROTOTYPE => "EPROTOTYPE",
            libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
            libc::EOPNOTSUPP => "EOPNOTSUPP",
            libc::EAFNOSUPPORT => "EAFNOSUPPORT",
            libc::EADDRINUSE => "EADDRINUSE",
            libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
            libc::ENETDOWN => "ENETDOWN",
            libc::ENETUNREACH => "ENETUNREACH",
            libc::ECONNABORTED => "ECONNABORTED",
            libc::ECONNRESET => "ECONNRESET",
            libc::EISCONN => "EISCONN",
            libc::ENOTCONN => "ENOTCONN",
            libc::ETIMEDOUT => "ETIMEDOUT",
            libc::ECONNREFUSED => "ECONNREFUSED",
            libc::EHOSTDOWN => "EHOSTDOWN",
            libc::EHOSTUNREACH => "EHOSTUNREACH",
            libc::EALREADY => "EALREADY",
            libc::EINPROGRESS => "EINPROGRESS",
            _ => "E?",
        }
    }

    /// The C library's description, "Connection refused".
    pub fn description(self) -> String {
        let mut buf = [0 as libc::c_char; 128];
        // SAFETY: buf is writable for its whole length; the XSI strerror_r writes a
        // NUL-terminated string into it (or fails and leaves it as zeros).
        let rc = unsafe { libc::strerror_r(self.0, buf.as_mut_ptr(), buf.len()) };
        if rc != 0 {
            return format!("error {}", self.0);
        }
        // SAFETY: strerror_r succeeded, so buf holds a NUL-terminated string.
        let s = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
        s.to_string_lossy().into_owned()
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            "E?" => write!(f, "errno {}", self.0),
            n => f.write_str(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_and_read() {
        Errno(libc::ECONNREFUSED).set();
        assert_eq!(Errno::last(), Errno(libc::ECONNREFUSED));
        assert_eq!(Errno(libc::ETIMEDOUT).name(), "ETIMEDOUT");
        assert_eq!(
            Errno(libc::ECONNREFUSED).description(),
            "Connection refused"
        );
        assert_eq!(Errno(9999).to_string(), "errno 9999");
    }
}
