//! Shared memory for the layer's name table (DESIGN §4): a file the launcher creates,
//! mapped `MAP_SHARED` by every process of one run, so that a name resolved in one
//! process has the same placeholder in its forked and exec'd children.
//!
//! The fd is closed as soon as the mapping exists: nothing the program could close (or
//! see in `/proc/self/fd`) is left behind, and the mapping survives `fork`.

use std::ffi::CStr;

use crate::real;

/// A writable shared mapping of `len` bytes.
pub struct Mapping {
    pub ptr: *mut u8,
    pub len: usize,
}

// SAFETY: the mapping is plain memory shared by design; users access it atomically.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

/// Maps `path`, which must be a regular file that is empty (it is then grown to `len`,
/// zero-filled, sparse on tmpfs) or exactly `len` bytes long.
pub fn map_file(path: &CStr, len: usize) -> Result<Mapping, String> {
    // SAFETY: open with a NUL-terminated path; the fd is ours until closed below.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    };
    if fd < 0 {
        return Err(format!("cannot open: {}", crate::Errno::last()));
    }
    let r = map_fd(fd, len);
    // SAFETY: closing the fd we opened; the mapping keeps the file alive.
    unsafe { real::close()(fd) };
    r
}

fn map_fd(fd: libc::c_int, len: usize) -> Result<Mapping, String> {
    // SAFETY: fstat into a zeroed stat buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open; st is a valid buffer.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(format!("cannot stat: {}", crate::Errno::last()));
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err("not a regular file".into());
    }
    let size = st.st_size as u64;
    if size == 0 {
        // Growing is idempotent: two processes racing here set the same length.
        // SAFETY: ftruncate on our fd.
        if unsafe { libc::ftruncate(fd, len as libc::off_t) } != 0 {
            return Err(format!("cannot size: {}", crate::Errno::last()));
        }
    } else if size != len as u64 {
        return Err(format!("is {size} bytes, expected {len}"));
    }
    // SAFETY: a fresh shared mapping of the whole file; no existing memory is touched.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(format!("cannot map: {}", crate::Errno::last()));
    }
    Ok(Mapping { ptr: p.cast(), len })
}

/// Anonymous shared memory: shared with forked children, not with exec'd ones.
pub fn map_anonymous(len: usize) -> Result<Mapping, String> {
    // SAFETY: a fresh anonymous mapping; no existing memory is touched.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(format!("cannot map: {}", crate::Errno::last()));
    }
    Ok(Mapping { ptr: p.cast(), len })
}

/// Reads a small file (at most `max` bytes) without going through the layer's own
/// `read` export.
pub fn read_file(path: &CStr, max: usize) -> Option<Vec<u8>> {
    // SAFETY: open with a NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut out = Vec::with_capacity(4096.min(max));
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reading into our stack buffer.
        let n = unsafe { real::read()(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 && crate::Errno::last().0 == libc::EINTR {
            continue;
        }
        if n <= 0 || out.len() + n as usize > max {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    // SAFETY: closing the fd we opened.
    unsafe { real::close()(fd) };
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_an_empty_file_and_refuses_a_wrong_size() {
        let path = format!("/tmp/laysocks-shm-test-{}\0", std::process::id());
        let c = CStr::from_bytes_with_nul(path.as_bytes()).unwrap();
        std::fs::write(&path[..path.len() - 1], b"").unwrap();
        let m = map_file(c, 8192).unwrap();
        // SAFETY: writing inside the mapping.
        unsafe { *m.ptr.add(8191) = 7 };
        let again = map_file(c, 8192).unwrap();
        // SAFETY: reading inside the second mapping of the same file.
        assert_eq!(unsafe { *again.ptr.add(8191) }, 7);
        assert!(map_file(c, 4096).is_err());
        std::fs::remove_file(&path[..path.len() - 1]).unwrap();
        assert!(map_file(c, 4096).is_err());
        assert!(
            read_file(c"/etc/hostname", 1 << 16).is_some()
                || read_file(c"/etc/hosts", 1 << 20).is_some()
        );
    }
}
