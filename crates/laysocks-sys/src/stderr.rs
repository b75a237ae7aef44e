//! One line to stderr, with the real `write` (the layer's own export would re-enter).
//!
//! The whole line goes in one `write` where the kernel allows, so lines from several
//! threads or processes sharing a terminal do not interleave mid-line.

use crate::errno::Errno;
use crate::real;

/// Writes `line` and a newline to fd 2, retrying short writes and `EINTR`, and leaves
/// errno as it found it (the application may be about to read it).
pub fn write_line(line: &str) {
    let saved = Errno::last();
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    let mut rest: &[u8] = &buf;
    let mut tries = 0;
    while !rest.is_empty() && tries < 16 {
        tries += 1;
        // SAFETY: rest is a valid buffer of rest.len() bytes.
        let n = unsafe { real::write()(2, rest.as_ptr().cast(), rest.len()) };
        if n > 0 {
            rest = &rest[n as usize..];
        } else if n < 0 && Errno::last().0 == libc::EINTR {
            continue;
        } else {
            break;
        }
    }
    saved.set();
}
