//! Go programs for the guard's tests, built at test time from `tests/apps/go/<name>`.
//!
//! Why Go: a Go program makes its socket calls itself (raw `syscall` instructions from
//! its runtime, static or dynamic alike) and brings its own DNS client, so the preload
//! layer never sees them; only the seccomp guard does. A test that wants to prove the
//! guard covers such programs must run a real one.
//!
//! [`go_build`] runs `go build` with the standard library only (`tests/apps/go/go.mod`
//! has no requirements), offline (`GOPROXY=off`, `GOTOOLCHAIN=local`), with its build
//! cache under `target/go/cache` so repeated runs cost about a second, and checks the
//! result's ELF program headers: a static build (`CGO_ENABLED=0`) must have no
//! `PT_INTERP`, a dynamic one (`CGO_ENABLED=1`, linked against glibc) must have one.
//! Each (program, linkage) is built once per test process; the binary is written to a
//! temporary name and renamed into place, so parallel tests and processes never see a
//! half-written file.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::util::{require, run_bounded, target_dir, workspace_root};

/// The longest one `go build` may take (a cold cache builds `net/http` from source).
const BUILD_LIMIT: Duration = Duration::from_secs(300);

/// `tests/apps/go`, the Go module with the test programs.
pub fn go_sources() -> PathBuf {
    workspace_root().join("tests").join("apps").join("go")
}

/// Builds `tests/apps/go/<name>` into `target/go/<name>-static` (`static_link`: no cgo,
/// no `PT_INTERP`) or `target/go/<name>-dynamic` (cgo on, glibc's loader as interpreter)
/// and returns its path. Panics naming the Debian package when `go` (golang-go) or, for
/// a dynamic build, `gcc` is missing, and with the compiler's output when it fails.
pub fn go_build(name: &str, static_link: bool) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<(String, bool), PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let key = (name.to_string(), static_link);
    if let Some(p) = built.get_or_insert_with(HashMap::new).get(&key) {
        return p.clone();
    }
    let go = require("go", "golang-go");
    if !static_link {
        require("gcc", "gcc");
    }
    let src = go_sources();
    assert!(
        src.join(name).is_dir(),
        "no Go program {} (tests/apps/go/{name})",
        src.join(name).display()
    );
    let dir = target_dir().join("go");
    fs::create_dir_all(dir.join("cache"))
        .unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    let linkage = if static_link { "static" } else { "dynamic" };
    let exe = dir.join(format!("{name}-{linkage}"));
    let tmp = dir.join(format!(
        "{name}-{linkage}.{}.{}.tmp",
        std::process::id(),
        crate::util::unique()
    ));
    let mut cmd = Command::new(&go);
    cmd.current_dir(&src)
        .args(["build", "-buildvcs=false", "-o"])
        .arg(&tmp)
        .arg(format!("./{name}"))
        .env("GOCACHE", dir.join("cache"))
        .env("GOPATH", dir.join("path"))
        .env("GOENV", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("GO111MODULE", "on")
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOSUMDB", "off")
        .env("CGO_ENABLED", if static_link { "0" } else { "1" });
    let run = run_bounded(&mut cmd, None, BUILD_LIMIT);
    if !run.success() {
        let _ = fs::remove_file(&tmp);
        panic!("go build of tests/apps/go/{name} ({linkage}) failed:\n{run}");
    }
    let interp = has_interp(&tmp);
    assert_eq!(
        interp,
        !static_link,
        "the {linkage} build of {name} {} a PT_INTERP program header",
        if interp { "has" } else { "lacks" }
    );
    fs::rename(&tmp, &exe).unwrap_or_else(|e| panic!("move {} into place: {e}", exe.display()));
    built
        .get_or_insert_with(HashMap::new)
        .insert(key, exe.clone());
    exe
}

/// Does the ELF file at `path` ask for a program interpreter (a `PT_INTERP` program
/// header, see elf(5))? Only 64-bit little-endian ELF is read; anything else panics.
pub fn has_interp(path: &Path) -> bool {
    let data = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    elf64_has_interp(&data).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The parser behind [`has_interp`], on the file's bytes.
fn elf64_has_interp(data: &[u8]) -> Result<bool, String> {
    const PT_INTERP: u32 = 3;
    if data.len() < 64 || &data[..4] != b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    if data[4] != 2 || data[5] != 1 {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(data[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    if phentsize < 4 {
        return Err("bad program header size".into());
    }
    for i in 0..phnum {
        let o = phoff
            .checked_add(i * phentsize)
            .filter(|o| *o <= data.len().saturating_sub(4))
            .ok_or("program headers past the end of the file")?;
        let p_type = u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
        if p_type == PT_INTERP {
            return Ok(true);
        }
    }
    Ok(false)
}

/// FNV-1a, 64 bits, as Go's `hash/fnv` `New64a`, in the 16 lower-case hex digits the Go
/// programs print: how a test tells them what body to expect.
pub fn fnv1a64_hex(data: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_the_reference_vectors() {
        // From the FNV reference (draft-eastlake-fnv), FNV-1a 64.
        assert_eq!(fnv1a64_hex(b""), "cbf29ce484222325");
        assert_eq!(fnv1a64_hex(b"a"), "af63dc4c8601ec8c");
        assert_eq!(fnv1a64_hex(b"foobar"), "85944171f73967e8");
    }

    #[test]
    fn reads_pt_interp_of_real_programs() {
        // /bin/sh is dynamic on every Debian system.
        assert!(has_interp(Path::new("/bin/sh")));
        assert!(elf64_has_interp(b"not elf").is_err());
    }

    #[test]
    fn a_header_without_program_headers_has_no_interpreter() {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[0x36] = 56;
        assert_eq!(elf64_has_interp(&h), Ok(false));
    }
}
