//! Username/password authentication (RFC 1929) and the method octets that select it.
//!
//! Credentials live inline (two 255-byte arrays, the limit of their length bytes) so that a
//! handshake never allocates, and their `Debug` output never shows the password: handshake
//! state is the kind of thing that ends up in a log line.

use crate::error::Error;
use crate::wire::{fmt_bytes, AUTH_VERSION};
use std::fmt;

/// A username and a password of 1..=255 bytes each (RFC 1929 §2).
#[derive(Clone)]
pub struct Credentials {
    ulen: u8,
    plen: u8,
    user: [u8; 255],
    pass: [u8; 255],
}

impl Credentials {
    /// Copy both fields; [`Error::BadCredentials`] if either is empty or over 255 bytes.
    pub fn new(username: &[u8], password: &[u8]) -> Result<Credentials, Error> {
        let ok = |f: &[u8]| (1..=255).contains(&f.len());
        if !ok(username) || !ok(password) {
            return Err(Error::BadCredentials);
        }
        let mut c = Credentials {
            ulen: username.len() as u8,
            plen: password.len() as u8,
            user: [0; 255],
            pass: [0; 255],
        };
        c.user[..username.len()].copy_from_slice(username);
        c.pass[..password.len()].copy_from_slice(password);
        Ok(c)
    }

    pub fn username(&self) -> &[u8] {
        &self.user[..self.ulen as usize]
    }

    pub fn password(&self) -> &[u8] {
        &self.pass[..self.plen as usize]
    }

    /// Length of the RFC 1929 request.
    #[cfg(test)]
    pub(crate) fn request_len(&self) -> usize {
        3 + self.ulen as usize + self.plen as usize
    }

    /// RFC 1929 §2: VER(0x01) ULEN UNAME PLEN PASSWD. `out` must hold `request_len()`.
    pub(crate) fn encode_request(&self, out: &mut [u8]) -> usize {
        let (u, p) = (self.username(), self.password());
        out[0] = AUTH_VERSION;
        out[1] = u.len() as u8;
        out[2..2 + u.len()].copy_from_slice(u);
        out[2 + u.len()] = p.len() as u8;
        out[3 + u.len()..3 + u.len() + p.len()].copy_from_slice(p);
        3 + u.len() + p.len()
    }
}

impl PartialEq for Credentials {
    fn eq(&self, other: &Self) -> bool {
        self.username() == other.username() && self.password() == other.password()
    }
}

impl Eq for Credentials {}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials { username: \"")?;
        fmt_bytes(f, self.username())?;
        f.write_str("\", password: <redacted> }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(
            Credentials::new(b"", b"p").unwrap_err(),
            Error::BadCredentials
        );
        assert_eq!(
            Credentials::new(b"u", b"").unwrap_err(),
            Error::BadCredentials
        );
        assert_eq!(
            Credentials::new(&[1; 256], b"p").unwrap_err(),
            Error::BadCredentials
        );
        assert_eq!(
            Credentials::new(b"u", &[1; 256]).unwrap_err(),
            Error::BadCredentials
        );
        let c = Credentials::new(&[1; 255], &[2; 255]).unwrap();
        assert_eq!(c.username(), &[1; 255][..]);
        assert_eq!(c.password(), &[2; 255][..]);
        assert_eq!(c.request_len(), 513);
    }

    #[test]
    fn request_bytes() {
        let c = Credentials::new(b"alice", b"s3cret").unwrap();
        let mut out = [0u8; 32];
        let n = c.encode_request(&mut out);
        assert_eq!(n, c.request_len());
        assert_eq!(&out[..n], b"\x01\x05alice\x06s3cret");
    }

    #[test]
    fn debug_hides_password() {
        let c = Credentials::new(b"alice", b"s3cret").unwrap();
        let s = format!("{c:?}");
        assert!(!s.contains("s3cret"), "{s}");
        assert!(s.contains("alice"), "{s}");
    }
}
