//! Every libc call the laysocks preload layer makes, in one place.
//!
//! The preload library exports `connect`, `close`, `read`, … under their libc names, so
//! inside it a plain `libc::connect(…)` binds to *our own* export and recurses. This
//! crate is how the layer reaches the real functions:
//!
//! - [`real`]: the table of "next" symbols, resolved once with `dlsym(RTLD_NEXT)` and
//!   kept in atomics (lock-free, fork-safe), with a raw-syscall fallback for each.
//! - [`net`]: sockaddr ⇄ [`std::net::SocketAddr`] conversion and the socket calls the
//!   handshake driver needs (non-blocking `send`/`recv` by flag, `poll` on one fd,
//!   `SO_ERROR`, disconnect), as thin safe wrappers returning `Result<_, Errno>`.
//! - [`errno`]: reading, setting and naming errno.
//! - [`time`], [`stderr`]: a monotonic clock and a write to fd 2 that never allocates.
//! - [`resolver`]: C types and constants of the resolver API glibc's headers define but
//!   the `libc` crate lacks, and building `addrinfo` lists the way glibc does.
//! - [`shm`]: mapping the shared name table (a file created by the launcher).
//! - [`signal`]: whether the kernel would have restarted an interrupted `connect`.
//! - [`pidfd`]: process descriptors (`pidfd_open`, `pidfd_getfd`, `pidfd_send_signal`)
//!   the launcher and the guard use to take descriptors from and signal a process.
//! - [`seccomp`]: the guard's filter installation, user-notification ioctls, reads and
//!   writes of a program's memory, and socket queries on the supervisor's copies (used
//!   by the supervisor only, never inside the preload layer, so it calls libc directly).
//!
//! Functions the layer does *not* export (fstat, clock_gettime, pthread_atfork…) are
//! called through `libc` directly. Nothing here uses `std::fs`, `std::net` sockets or
//! `println!`: they go through libc symbols the layer may hook.

pub mod errno;
pub mod net;
pub mod pidfd;
pub mod real;
pub mod resolver;
pub mod seccomp;
pub mod shm;
pub mod signal;
pub mod stderr;
pub mod time;

pub use errno::Errno;
