//! The guard: programs that bypass libc (Go, static binaries, raw `syscall(SYS_connect)`,
//! their own DNS clients) go through the proxy too (DESIGN §6).
//!
//! The launcher forks; the child installs [`Filter`] (seccomp with
//! `SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`) and execs
//! the program; the parent takes the listener and calls [`serve`]. From then on every
//! `connect`, `getpeername`, `sendmsg`, `sendmmsg` and destination-carrying `sendto` of
//! the program and all its descendants waits in the kernel until the supervisor answers
//! (seccomp_unotify(2)):
//!
//! - one thread receives notifications (`SECCOMP_IOCTL_NOTIF_RECV`) and hands them to a
//!   pool of workers that grows on demand up to [`MAX_WORKERS`] — a proxied connect
//!   holds its worker for the handshake, up to `connect_timeout_ms`;
//! - a worker takes the program's socket (`pidfd_getfd`), reads what it must from the
//!   program's memory (`process_vm_readv`, re-checking `SECCOMP_IOCTL_NOTIF_ID_VALID`
//!   after every read), decides by the socket ([`handle`]), acts on its own copy and
//!   answers (`SECCOMP_IOCTL_NOTIF_SEND`).
//!
//! Why `WAIT_KILLABLE_RECV` (Linux 5.19) is required: without it a signal to the
//! program interrupts the trapped `connect` with `EINTR` while the supervisor is still
//! in the SOCKS5 exchange on the same socket, and the program's first bytes land inside
//! the negotiation. [`check_kernel`] refuses older kernels.
//!
//! Failing closed: if the supervisor dies, the listener closes and the kernel answers
//! every trapped call with `ENOSYS`; nothing goes direct. Every worker body runs inside
//! `catch_unwind` and answers `ECONNREFUSED` with a line if it panics.
//!
//! This crate has no `unsafe`: the system calls are in `laysocks_sys::seccomp` and
//! `laysocks_sys::pidfd`.

#![forbid(unsafe_code)]

mod caller;
mod dns;
pub mod filter;
mod handle;
mod handshake;
mod names;
mod relay;
mod report;
mod state;

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use laysocks_proto::{Credentials, TargetAddr};
use laysocks_sys::{seccomp as sys, Errno};

/// What the supervisor needs.
#[derive(Clone)]
pub struct GuardConfig {
    /// Proxy addresses and label, timeouts, exclusions, DNS settings, quiet/verbose.
    pub layer: laysocks_config::LayerConfig,
    /// RFC 1929 username/password (never logged).
    pub credentials: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for GuardConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardConfig")
            .field("layer", &self.layer)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<hidden>"),
            )
            .finish()
    }
}

/// The oldest kernel with `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`.
const MIN_KERNEL: (u32, u32) = (5, 19);

/// Whether this kernel can run the guard; `Err` is one line for the user.
pub fn check_kernel() -> Result<(), String> {
    let release = sys::kernel_release();
    match parse_release(&release) {
        Some(v) if v >= MIN_KERNEL => Ok(()),
        Some((maj, min)) => Err(format!(
            "kernel {maj}.{min} lacks killable seccomp waits (Linux 5.19+), so the guard cannot run; use --no-guard to rely on the preload layer alone (programs that bypass libc then go direct)"
        )),
        None => Err(format!(
            "cannot tell the kernel version from `{release}`; the guard needs Linux 5.19+ — use --no-guard to rely on the preload layer alone"
        )),
    }
}

fn parse_release(r: &str) -> Option<(u32, u32)> {
    let mut it = r.split(|c: char| !c.is_ascii_digit());
    let maj = it.next()?.parse().ok()?;
    let min = it.next()?.parse().ok()?;
    Some((maj, min))
}

/// The BPF program ([`filter`] module), built before `fork`.
#[derive(Debug)]
pub struct Filter {
    prog: Vec<libc::sock_filter>,
}

/// Builds the guard's filter.
pub fn filter() -> Filter {
    Filter {
        prog: filter::program(),
    }
}

impl Filter {
    /// In the forked child, before exec: `PR_SET_NO_NEW_PRIVS` +
    /// `seccomp(SET_MODE_FILTER, NEW_LISTENER | WAIT_KILLABLE_RECV)`. Returns the
    /// listener fd (close-on-exec). Allocates nothing.
    pub fn install(&self) -> Result<RawFd, Errno> {
        let flags =
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
        sys::install_filter(&self.prog, flags)
    }

    /// The instructions (for tests and benchmarks).
    pub fn instructions(&self) -> &[libc::sock_filter] {
        &self.prog
    }
}

/// Where DNS for programs with their own resolver is answered (the responder).
#[derive(Clone, Copy, Debug)]
pub(crate) struct DnsAddrs {
    pub udp4: SocketAddr,
    pub udp6: Option<SocketAddr>,
    pub tcp4: SocketAddr,
    pub tcp6: Option<SocketAddr>,
}

/// What every worker shares.
pub(crate) struct Shared {
    pub cfg: GuardConfig,
    pub credentials: Option<Credentials>,
    pub names: Option<Arc<laysocks_names::NameMap>>,
    pub dns: Option<DnsAddrs>,
    pub dns_server: Option<TargetAddr>,
    state: Mutex<state::State>,
    listener: OwnedFd,
    sizes: sys::NotifSizes,
    finished: Mutex<bool>,
    finished_cv: Condvar,
}

impl Shared {
    pub fn state(&self) -> MutexGuard<'_, state::State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_finished(&self) {
        *self.finished.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.finished_cv.notify_all();
    }
}

/// The most worker threads (each can hold one connect for a whole handshake).
pub const MAX_WORKERS: usize = 256;

/// The running supervisor.
pub struct Supervisor {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("finished", &self.finished())
            .finish()
    }
}

impl Supervisor {
    /// True once no process uses the filter any more (the listener reports POLLHUP).
    pub fn finished(&self) -> bool {
        *self
            .shared
            .finished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Blocks until [`Supervisor::finished`] or the timeout passes; returns finished().
    pub fn wait_finished(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut done = self
            .shared
            .finished
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        while !*done {
            let now = std::time::Instant::now();
            if now >= deadline {
                break;
            }
            done = match self.shared.finished_cv.wait_timeout(done, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        *done
    }
}

/// Starts serving `listener` on background threads and returns at once.
pub fn serve(listener: OwnedFd, cfg: GuardConfig) -> Result<Supervisor, String> {
    match sys::set_listener_flags(listener.as_fd(), sys::SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) {
        Ok(()) | Err(Errno(libc::EINVAL)) => {}
        Err(e) => return Err(format!("cannot configure the seccomp listener: {e}")),
    }
    let sizes = sys::notif_sizes().map_err(|e| format!("SECCOMP_GET_NOTIF_SIZES failed: {e}"))?;
    let credentials = match &cfg.credentials {
        Some((u, p)) => Some(
            Credentials::new(u, p)
                .map_err(|_| "the proxy credentials must be 1 to 255 bytes each".to_string())?,
        ),
        None => None,
    };
    let names = names::open(&cfg.layer)?;
    let dns = names::responder(names.clone(), &cfg)?;
    let dns_server = cfg
        .layer
        .dns_server
        .as_deref()
        .and_then(names::parse_server);
    let shared = Arc::new(Shared {
        cfg,
        credentials,
        names,
        dns,
        dns_server,
        state: Mutex::new(state::State::default()),
        listener,
        sizes,
        finished: Mutex::new(false),
        finished_cv: Condvar::new(),
    });
    let sh = shared.clone();
    std::thread::Builder::new()
        .name("laysocks-guard".into())
        .spawn(move || receive_loop(sh))
        .map_err(|e| format!("cannot start the guard thread: {e}"))?;
    Ok(Supervisor { shared })
}

/// Receives notifications until the listener hangs up, dispatching them to workers.
fn receive_loop(sh: Arc<Shared>) {
    let (tx, rx) = mpsc::channel::<sys::Notif>();
    let rx = Arc::new(Mutex::new(rx));
    let idle = Arc::new(AtomicUsize::new(0));
    let mut workers = 0usize;
    let mut buf = sys::RecvBuf::new(&sh.sizes);
    let fd = sh.listener.as_fd();
    loop {
        match laysocks_sys::net::poll_one(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::POLLIN, 1000)
        {
            Ok(0) => continue,
            Ok(r)
                if r & libc::POLLIN == 0
                    && r & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 =>
            {
                break
            }
            Ok(_) => {}
            Err(Errno(libc::EINTR)) => continue,
            Err(_) => break,
        }
        let n = match sys::recv(fd, &mut buf) {
            Ok(n) => n,
            Err(Errno(libc::EINTR | libc::ENOENT | libc::EAGAIN)) => continue,
            Err(_) => break,
        };
        if idle.load(Ordering::Acquire) == 0 && workers < MAX_WORKERS {
            let (sh2, rx2, idle2) = (sh.clone(), rx.clone(), idle.clone());
            if std::thread::Builder::new()
                .name("laysocks-guard-worker".into())
                .spawn(move || worker(sh2, rx2, idle2))
                .is_ok()
            {
                workers += 1;
                idle.fetch_add(1, Ordering::AcqRel);
            }
        }
        if workers == 0 {
            // No thread could be started: answer here rather than leave it waiting.
            answer(&sh, &n);
            continue;
        }
        if tx.send(n).is_err() {
            answer(&sh, &n);
        }
    }
    sh.set_finished();
}

fn worker(sh: Arc<Shared>, rx: Arc<Mutex<mpsc::Receiver<sys::Notif>>>, idle: Arc<AtomicUsize>) {
    loop {
        let n = {
            let r = rx.lock().unwrap_or_else(|p| p.into_inner());
            match r.recv() {
                Ok(n) => n,
                Err(_) => return,
            }
        };
        idle.fetch_sub(1, Ordering::AcqRel);
        answer(&sh, &n);
        idle.fetch_add(1, Ordering::AcqRel);
    }
}

/// Handles one notification and sends the answer (never panics out).
fn answer(sh: &Shared, n: &sys::Notif) {
    let c = caller::Caller {
        listener: sh.listener.as_fd(),
        id: n.id,
        tid: n.pid as i32,
    };
    let a = if n.pid == 0 {
        // Not visible in our pid namespace: nothing can be inspected.
        caller::Answer::Error(libc::EACCES)
    } else {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            handle::handle(sh, &c, i64::from(n.nr), n.args)
        })) {
            Ok(a) => a,
            Err(_) => {
                report::line(
                    &sh.cfg.layer,
                    "internal error in the guard while answering a system call; it fails with ECONNREFUSED",
                );
                caller::Answer::Error(libc::ECONNREFUSED)
            }
        }
    };
    let (val, error, flags) = match a {
        caller::Answer::Gone => return,
        caller::Answer::Continue => (0, 0, libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32),
        caller::Answer::Value(v) => (v, 0, 0),
        caller::Answer::Error(e) => (0, -e, 0),
    };
    // ENOENT: the target went away meanwhile — nothing to do.
    let _ = sys::send(sh.listener.as_fd(), &sh.sizes, n.id, val, error, flags);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_release("6.18.44-fc-v1045"), Some((6, 18)));
        assert_eq!(parse_release("5.15.0-91-generic"), Some((5, 15)));
        assert!(parse_release("5.15.0") < Some(MIN_KERNEL));
        assert!(parse_release("5.19.1") >= Some(MIN_KERNEL));
        assert!(parse_release("6.1.0") >= Some(MIN_KERNEL));
        assert_eq!(parse_release("garbage"), None);
        assert!(check_kernel().is_ok(), "this machine runs the guard");
    }
}
