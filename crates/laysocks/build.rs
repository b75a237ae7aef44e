//! Builds the preload layer (`liblaysocks.so`) with a nested cargo and hands its path to
//! the launcher, which embeds the bytes with `include_bytes!`.
//!
//! Why: `cargo install --path crates/laysocks` installs one binary and nothing else, and
//! a cdylib cannot be a normal dependency of a binary. Embedding the layer means the
//! installed `laysocks` needs no set-up: it writes the library out once at run time (see
//! `src/library.rs`).
//!
//! The nested build gets its own target directory under `OUT_DIR`, so it never waits on
//! the lock of the outer build's target directory. Several variables that cargo sets for
//! build scripts describe the *outer* invocation and would confuse the inner one; they are
//! removed below, each with the reason.
//!
//! If the preload crate fails to build, a debug build of the launcher still succeeds: it
//! prints a warning and embeds nothing, and the launcher then says at run time that it
//! has no embedded layer (`$LAYSOCKS_LIBRARY` or a `liblaysocks.so` next to the binary
//! still work). Several people edit the preload crate while the launcher is developed;
//! a half-written layer must not stop the launcher, `serve` and `check` from building.
//! A release build (what `cargo install` makes) fails instead, so nobody installs a
//! launcher without its layer. `LAYSOCKS_REQUIRE_EMBED=1` / `=0` forces either way.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let workspace = manifest_dir
        .parent()
        .and_then(Path::parent)
        .expect("crates/laysocks sits two levels below the workspace root")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets it"));
    let profile = env::var("PROFILE").unwrap_or_else(|_| "debug".into());
    let target = env::var("TARGET").unwrap_or_default();
    let host = env::var("HOST").unwrap_or_default();

    for dir in [
        "crates/laysocks-preload",
        "crates/laysocks-proto",
        "crates/laysocks-config",
        "crates/laysocks-sys",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    println!("cargo:rerun-if-env-changed=LAYSOCKS_REQUIRE_EMBED");

    let preload_target = out_dir.join("preload-target");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("-p")
        .arg("laysocks-preload")
        .arg("--lib")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &preload_target)
        // The outer build may name a target dir in config; ours wins via the variable,
        // but drop the config-style override too so nothing points two ways.
        .env_remove("CARGO_BUILD_TARGET_DIR")
        // `cargo clippy` runs build scripts with clippy-driver as the workspace wrapper;
        // inherited, it would lint the preload crate with the outer `-D warnings` and
        // fail the launcher's build over someone else's lint.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CLIPPY_ARGS")
        .env_remove("CLIPPY_CONF_DIR")
        // `cargo fix` / `cargo check` internals: the inner build must really link.
        .env_remove("__CARGO_FIX_PLZ")
        .env_remove("__CARGO_FIX_YOLO")
        // Set for build scripts from the outer profile; the inner cargo derives its own.
        .env_remove("CARGO_PRIMARY_PACKAGE")
        .env_remove("DEBUG")
        .env_remove("OPT_LEVEL")
        .env_remove("PROFILE")
        // The embedded copy needs no debug info: it only makes the launcher bigger.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "0");
    // CARGO_ENCODED_RUSTFLAGS is kept on purpose: it carries the user's RUSTFLAGS for
    // this target, and the layer should be compiled with the same flags as the launcher.
    // CARGO_MAKEFLAGS is kept too, so the inner cargo shares the outer jobserver and the
    // machine is not oversubscribed.
    if profile == "release" {
        cmd.arg("--release");
    }
    let cross = !target.is_empty() && target != host;
    if cross {
        cmd.arg("--target").arg(&target);
    }

    let mut artifact = preload_target.clone();
    if cross {
        artifact.push(&target);
    }
    artifact.push(if profile == "release" {
        "release"
    } else {
        "debug"
    });
    artifact.push("liblaysocks.so");

    let embedded = out_dir.join("embedded-liblaysocks.so");
    let ok = match cmd.status() {
        Ok(s) if s.success() && artifact.is_file() => {
            std::fs::copy(&artifact, &embedded).expect("copy liblaysocks.so into OUT_DIR");
            true
        }
        Ok(s) => {
            report(&format!(
                "building laysocks-preload failed ({s}); this laysocks has no embedded liblaysocks.so"
            ));
            false
        }
        Err(e) => {
            report(&format!(
                "cannot run cargo for laysocks-preload: {e}; this laysocks has no embedded liblaysocks.so"
            ));
            false
        }
    };
    if !ok {
        std::fs::write(&embedded, b"").expect("write empty placeholder into OUT_DIR");
    }
    // The cache file name carries a hash of the library; computing it here keeps the
    // launcher from hashing megabytes at every start.
    let bytes = std::fs::read(&embedded).expect("read the embedded library back");
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in &bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    println!("cargo:rustc-env=LAYSOCKS_EMBEDDED_HASH={h:016x}");
    println!(
        "cargo:rustc-env=LAYSOCKS_EMBEDDED_LIB={}",
        embedded.display()
    );
}

fn report(msg: &str) {
    let require = match env::var("LAYSOCKS_REQUIRE_EMBED").as_deref() {
        Ok("1") => true,
        Ok("0") => false,
        _ => env::var("PROFILE").is_ok_and(|p| p == "release"),
    };
    if require {
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
    println!("cargo:warning={msg}");
}
