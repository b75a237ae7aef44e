//! `liblaysocks.so`: the layer that sends an unmodified program's connections through a
//! SOCKS5 proxy.
//!
//! Loaded with `LD_PRELOAD` (the `laysocks` launcher sets it and the configuration in
//! [`laysocks_config::ENV_LAYER`]), the library exports `connect` and friends under
//! their libc names, so the dynamic linker binds the program's calls to us. Each hook
//! decides in a few nanoseconds whether the call concerns a socket we manage; if not,
//! it calls the real function ([`laysocks_sys::real`]) and is done.
//!
//! What happens to a `connect(fd, dest)` on a TCP socket (see [`connect`]):
//! 1. loopback, the proxy itself and configured exclusions go direct;
//! 2. otherwise the *application's own socket* is connected to the proxy (no `dup2`,
//!    no flag changes: options, epoll registrations and `bind()` survive);
//! 3. the SOCKS5 handshake ([`laysocks_proto::ClientHandshake`]) runs on that socket,
//!    driven by [`driver`] under a deadline, and only then does `connect` return 0;
//! 4. [`fdtable`] remembers the real destination, so `getpeername` reports it.
//!
//! Failures become the errno a direct connect would have given, plus one line on
//! stderr ([`report`]). On a non-blocking socket `connect()` returns `EINPROGRESS`
//! and the same driver ([`driver::Driver::advance`], a step function) is advanced from
//! the program's own poll/select/epoll calls ([`pending`], [`readiness`], [`epoll`]).
//!
//! Rules every hook follows (DESIGN §2): a macro ([`hook`]) passes straight to libc when
//! the layer is off or re-entered on this thread, runs the body inside `catch_unwind`,
//! and sets the C return value and errno exactly once. No `std::net`, `std::fs` or
//! `println!` inside hooks: they call libc symbols we export.

#![deny(unsafe_op_in_unsafe_fn)]
// Addresses are stored inline (a domain name is up to 255 bytes) so that nothing on the
// connect path allocates per state change; the size difference between variants is
// the point, not an accident.
#![allow(clippy::large_enum_variant)]

#[macro_use]
pub mod hook;
pub mod connect;
pub mod dns;
pub mod driver;
pub mod epoll;
pub mod fdtable;
pub mod io;
pub mod layer;
pub mod lifecycle;
/// The name table lives in its own crate: the guard supervisor maps the same file.
pub use laysocks_names as namemap;
pub mod names;
pub mod pending;
pub mod pipeline;
pub mod readiness;
pub mod report;
pub mod resolve;
pub mod resquery;
pub mod sockopt;
pub mod syscall;
pub mod udp;
