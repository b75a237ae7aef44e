//! `laysocks`: run a program with its connections through a SOCKS5 proxy.
//!
//! The launcher reads settings and writes what the preload layer needs. With the guard
//! (the default) it then forks the program under a seccomp filter and stays beside it as
//! its supervisor, ending with the program's exit status or signal (`supervise.rs`).
//! With `--no-guard` it `exec`s the program, which keeps the launcher's pid, exit status,
//! signals and terminal. Beside either runs a small companion process (see
//! `companion.rs`) when there is something to clean up or serve.

mod check;
mod cli;
mod companion;
mod config;
mod exec_check;
mod library;
mod run;
mod server;
mod supervise;

use std::process::ExitCode;

/// Exit status for the launcher's own failures: bad usage or configuration (as `env`,
/// `nice` and `timeout` do, so the program's own 1s and 2s stay distinguishable).
pub const EXIT_USAGE: u8 = 125;
/// The program exists but cannot be run.
pub const EXIT_CANNOT_RUN: u8 = 126;
/// The program was not found.
pub const EXIT_NOT_FOUND: u8 = 127;

/// Prints one line to stderr, prefixed with `laysocks: `.
pub fn say(msg: impl std::fmt::Display) {
    eprintln!("laysocks: {msg}");
}

fn main() -> ExitCode {
    cli::main()
}
