//! The one way a hook is written.
//!
//! [`hook!`] turns a Rust body into an exported C function that:
//! 1. takes an optional *fast path* first — a check like "is this fd ours?" that costs a
//!    load and a branch and sends every foreign call straight to libc;
//! 2. passes straight to libc when the layer is not active ([`layer::is_active`]) or when
//!    the hook is re-entered on this thread (a signal handler, or libc calling back into
//!    an exported symbol while we are inside a hook);
//! 3. runs the body inside `catch_unwind`: a panic never unwinds into C. It disables the
//!    layer for the process, prints one line, and gives the hook's `on_panic` answer;
//! 4. turns the body's [`HookResult`] into the C return value and errno exactly once.
//!
//! Bodies return `Ok(Outcome::Done(v))` to answer the call themselves,
//! `Ok(Outcome::Passthrough)` to let libc answer it, or `Err(HookError(errno))` to fail
//! it the way libc would (`-1` and errno).

use std::cell::Cell;

use laysocks_sys::Errno;

use crate::layer;

/// What a hook body decided.
pub enum Outcome<T> {
    /// Return this value to the program.
    Done(T),
    /// Call the real function with the program's arguments.
    Passthrough,
}

/// A failure to report as `-1` with this errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HookError(pub Errno);

impl From<Errno> for HookError {
    fn from(e: Errno) -> Self {
        HookError(e)
    }
}

/// The result type of every hook body.
pub type HookResult<T> = Result<Outcome<T>, HookError>;

/// What a hook does when its body panicked, and on every later call once the layer has
/// disabled itself: calls that could leak (connect, name lookups) fail closed.
#[derive(Clone, Copy)]
pub enum OnPanic<T> {
    /// Call the real function: right for calls where doing what the program asked is
    /// always safe (close, dup, read…).
    Passthrough,
    /// Fail with this errno: right for `connect`, where the real call could go direct.
    Fail(i32),
    /// Return this value: for calls that report failure in their return value
    /// (`getaddrinfo`'s `EAI_*` codes, a NULL `hostent`).
    Return(T),
}

/// C return types a hook can fail with.
pub trait HookRet {
    /// The value that means "failed, see errno".
    const FAILED: Self;
}

impl HookRet for libc::c_int {
    const FAILED: Self = -1;
}

impl HookRet for libc::ssize_t {
    const FAILED: Self = -1;
}

impl HookRet for libc::c_long {
    const FAILED: Self = -1;
}

impl HookRet for () {
    const FAILED: Self = ();
}

impl HookRet for *mut libc::hostent {
    const FAILED: Self = std::ptr::null_mut();
}

thread_local! {
    // Const-initialised and without a destructor, so access is a plain TLS load and
    // works on any thread at any time, including while the thread is exiting.
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// Held while a hook body runs on this thread.
pub struct Guard(());

impl Drop for Guard {
    fn drop(&mut self) {
        IN_HOOK.with(|f| f.set(false));
    }
}

/// How a hook call proceeds.
pub enum Entry {
    /// Call libc directly: the layer is inactive, or this thread is already in a hook.
    Real,
    /// The layer disabled itself after a panic: apply the hook's [`OnPanic`] policy.
    Disabled,
    /// Run the body; the guard marks this thread as inside a hook.
    Run(Guard),
}

/// Enters a hook.
#[inline]
pub fn enter() -> Entry {
    if !layer::is_active() {
        return if layer::is_disabled() {
            Entry::Disabled
        } else {
            Entry::Real
        };
    }
    IN_HOOK.with(|f| {
        if f.get() {
            Entry::Real
        } else {
            f.set(true);
            Entry::Run(Guard(()))
        }
    })
}

/// A call after the layer disabled itself: the hook's panic policy, without its body.
pub fn refuse<T: HookRet>(on_panic: OnPanic<T>, real: impl FnOnce() -> T) -> T {
    match on_panic {
        OnPanic::Passthrough => real(),
        OnPanic::Fail(e) => {
            Errno(e).set();
            T::FAILED
        }
        OnPanic::Return(v) => v,
    }
}

/// Turns a body's result into the C return value (called by [`hook!`] only).
pub fn finish<T: HookRet>(
    guard: Guard,
    result: std::thread::Result<HookResult<T>>,
    on_panic: OnPanic<T>,
    real: impl FnOnce() -> T,
) -> T {
    match result {
        Ok(Ok(Outcome::Done(v))) => v,
        // The guard stays held: anything libc calls back into passes straight through.
        Ok(Ok(Outcome::Passthrough)) => real(),
        Ok(Err(HookError(e))) => {
            drop(guard);
            e.set();
            T::FAILED
        }
        Err(_) => {
            layer::disable_after_panic();
            match on_panic {
                OnPanic::Passthrough => real(),
                other => {
                    drop(guard);
                    refuse(other, real)
                }
            }
        }
    }
}

/// Defines an exported hook; see the module docs.
///
/// ```text
/// hook! {
///     /// docs
///     fn close(fd: c_int) -> c_int;
///     fast_path: !fdtable::is_ours(fd);
///     on_panic: OnPanic::Passthrough;
///     body: lifecycle::on_close(fd)
/// }
/// ```
/// The real function is `laysocks_sys::real::<name>()`; the body is an expression of
/// type `HookResult<ret>`, with its own `unsafe` blocks (and `// SAFETY:` lines) where it
/// touches the program's pointers.
#[macro_export]
macro_rules! hook {
    (
        $(#[$doc:meta])*
        fn $name:ident($($arg:ident : $ty:ty),* $(,)?) -> $ret:ty;
        fast_path: $fast:expr;
        on_panic: $on_panic:expr;
        body: $body:expr
    ) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// Called by C code with the arguments of the libc function of the same name,
        /// under that function's contract.
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            // SAFETY: the real function gets exactly the arguments the program gave us,
            // under the contract the program already accepted for this libc call.
            let real = move || unsafe { laysocks_sys::real::$name()($($arg),*) };
            if $fast {
                return real();
            }
            let guard = match $crate::hook::enter() {
                $crate::hook::Entry::Run(g) => g,
                $crate::hook::Entry::Real => return real(),
                $crate::hook::Entry::Disabled => return $crate::hook::refuse($on_panic, real),
            };
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(
                || -> $crate::hook::HookResult<$ret> { $body },
            ));
            $crate::hook::finish(guard, result, $on_panic, real)
        }
    };
}
