//! A monotonic clock for handshake deadlines (`CLOCK_MONOTONIC`, served by the vDSO).

/// Milliseconds on the monotonic clock.
pub fn now_ms() -> u64 {
    now_us() / 1000
}

/// Microseconds on the monotonic clock.
pub fn now_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-parameter; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

#[cfg(test)]
mod tests {
    #[test]
    fn advances() {
        let a = super::now_us();
        let b = super::now_us();
        assert!(b >= a);
    }
}
