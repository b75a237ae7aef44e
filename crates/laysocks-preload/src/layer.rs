//! The layer's process-wide state: off, active or disabled, and what it was told.
//!
//! Initialised once from the library's constructor (before `main`, single-threaded):
//! resolve the real symbols, read [`ENV_LAYER`], load the credentials file, register
//! the fork handlers. Without `LAYSOCKS_LAYER` the library stays inactive and every
//! hook is a plain pass-through, so loading it by accident changes nothing.

use std::ffi::CStr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use laysocks_config::{LayerConfig, ENV_LAYER};
use laysocks_proto::Credentials;
use laysocks_sys::{real, stderr};

const INACTIVE: u8 = 0;
const ACTIVE: u8 = 1;
const DISABLED: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(INACTIVE);
static LAYER: OnceLock<Layer> = OnceLock::new();

/// Everything a hook needs to know, fixed for the life of the process.
pub struct Layer {
    pub config: LayerConfig,
    pub credentials: Option<Credentials>,
    /// Remote DNS (names go to the proxy), if on.
    pub dns: Option<crate::dns::Dns>,
}

/// Whether hooks should act (false before init, without config, or after a panic).
#[inline(always)]
pub fn is_active() -> bool {
    STATE.load(Ordering::Relaxed) == ACTIVE
}

/// The layer's settings. Only called from hook bodies, which run only when active.
pub fn get() -> &'static Layer {
    LAYER
        .get()
        .expect("hooks run only after the layer is initialised")
}

/// Remote DNS, if on. Only called from hook bodies.
pub fn dns() -> Option<&'static crate::dns::Dns> {
    get().dns.as_ref()
}

/// After a panic in a hook: stop acting for the rest of the process, say so once.
pub fn disable_after_panic() {
    if STATE.swap(DISABLED, Ordering::Relaxed) == ACTIVE {
        stderr::write_line(
            "laysocks: internal error in the layer; it is now disabled for this process \
             (new connections will fail rather than go direct); please report this",
        );
    }
}

/// Whether the layer turned itself off after a panic (connects must then fail, not leak).
pub fn is_disabled() -> bool {
    STATE.load(Ordering::Relaxed) == DISABLED
}

// The constructor: glibc runs every function in .init_array when the library is loaded.
#[used]
#[link_section = ".init_array"]
static CONSTRUCTOR: extern "C" fn() = constructor;

extern "C" fn constructor() {
    // Nothing may unwind out of a constructor; a failure just leaves the layer inactive.
    let _ = std::panic::catch_unwind(init);
}

fn init() {
    real::resolve_all();
    // SAFETY: getenv with a NUL-terminated name; the constructor runs before the
    // program can have started threads that call setenv.
    let value = unsafe { libc::getenv(c"LAYSOCKS_LAYER".as_ptr()) };
    if value.is_null() {
        return;
    }
    debug_assert_eq!(ENV_LAYER, "LAYSOCKS_LAYER");
    // SAFETY: getenv returned a NUL-terminated string that lives in the environment.
    let line = unsafe { CStr::from_ptr(value) }.to_string_lossy();
    if line.trim().is_empty() {
        return;
    }
    let config = match LayerConfig::decode(&line) {
        Ok(c) => c,
        Err(e) => {
            stderr::write_line(&format!(
                "laysocks: bad {ENV_LAYER} ({e}); the layer is off — start programs with the laysocks launcher"
            ));
            return;
        }
    };
    let credentials = config
        .secret_file
        .as_deref()
        .and_then(|path| load_credentials(path, config.quiet));
    let dns = crate::dns::Dns::from_config(&config);
    let _ = LAYER.set(Layer {
        config,
        credentials,
        dns,
    });
    std::panic::set_hook(Box::new(|_| {
        // The default hook would print a multi-line report into the host program's
        // stderr; disable_after_panic prints our one line instead.
    }));
    crate::fdtable::register_fork_handlers();
    STATE.store(ACTIVE, Ordering::Release);
}

/// Reads the launcher's credentials file (see `laysocks_config::secret`).
fn load_credentials(path: &str, quiet: bool) -> Option<Credentials> {
    let warn = |what: &str| {
        if !quiet {
            stderr::write_line(&format!(
                "laysocks: cannot read the credentials file {path} ({what}); proxy authentication will fail"
            ));
        }
    };
    let Ok(cpath) = std::ffi::CString::new(path) else {
        warn("bad path");
        return None;
    };
    // SAFETY: cpath is NUL-terminated; open is not hooked by the layer.
    let fd = unsafe { libc::open(cpath.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        warn(&laysocks_sys::Errno::last().description());
        return None;
    }
    let mut buf = [0u8; 2048];
    let mut len = 0;
    while len < buf.len() {
        // SAFETY: the tail of buf is writable for buf.len() - len bytes.
        let n = unsafe { real::read()(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len) };
        if n <= 0 {
            break;
        }
        len += n as usize;
    }
    // SAFETY: fd was opened above and is ours to close.
    unsafe { real::close()(fd) };
    let parsed = laysocks_config::secret::decode(&buf[..len]);
    buf.fill(0);
    match parsed.and_then(|(u, p)| Credentials::new(&u, &p).ok()) {
        Some(c) => Some(c),
        None => {
            warn("malformed, or a user name or password longer than 255 bytes");
            None
        }
    }
}
