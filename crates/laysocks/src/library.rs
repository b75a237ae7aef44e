//! Finding `liblaysocks.so`, the layer that goes into `LD_PRELOAD`.
//!
//! The launcher must work straight after `cargo install` with no set-up, so the layer is
//! embedded in the binary (see `build.rs`) and written out once to a cache directory.
//! Packagers and developers can still point at a library of their own, which wins:
//!
//! 1. `$LAYSOCKS_LIBRARY` (an error if it names a missing file);
//! 2. the embedded copy — built from the same sources as this launcher, so it can never be
//!    a stale leftover (a `liblaysocks.so` lying next to a freshly rebuilt launcher in a
//!    cargo target directory often is) — written to `$XDG_CACHE_HOME/laysocks/`, else
//!    `~/.cache/laysocks/`,
//!    else `/tmp/laysocks-<uid>/` (created `0700`, refused unless we own it), named with the
//!    version and a hash of the bytes so that two builds never share a file, and written
//!    through a temporary file and `rename` so that a concurrent start never loads half a
//!    library;
//! 3. for a launcher built without an embedded copy: `liblaysocks.so` next to the
//!    executable, or `../lib/laysocks/liblaysocks.so` relative to it (`/usr/bin` +
//!    `/usr/lib`).
//!
//! `LD_PRELOAD` separates entries with spaces and colons, so a path holding either cannot
//! be used there; such candidates are skipped (or, for `$LAYSOCKS_LIBRARY`, refused).

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The layer built by `build.rs`; empty when that build failed.
pub static EMBEDDED: &[u8] = include_bytes!(env!("LAYSOCKS_EMBEDDED_LIB"));

/// [`fnv1a`] of [`EMBEDDED`], computed by `build.rs`.
const EMBEDDED_HASH: &str = env!("LAYSOCKS_EMBEDDED_HASH");

/// The file name of the layer.
pub const LIB_NAME: &str = "liblaysocks.so";

/// Where the library lookup gets its facts, so tests can supply their own.
pub struct Lookup<'a> {
    /// Reads an environment variable.
    pub env: &'a dyn Fn(&str) -> Option<OsString>,
    /// The launcher's own executable.
    pub exe: Option<PathBuf>,
    /// The embedded library bytes.
    pub embedded: &'a [u8],
    /// The real user id (for `/tmp/laysocks-<uid>`).
    pub uid: u32,
    /// The directory of last resort (normally `/tmp`).
    pub tmp: PathBuf,
}

/// Finds or writes out the layer and returns its absolute path.
pub fn find(l: &Lookup<'_>) -> Result<PathBuf, String> {
    if let Some(p) = (l.env)("LAYSOCKS_LIBRARY").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            return Err(format!(
                "LAYSOCKS_LIBRARY names {}, which is not a file: fix or unset it",
                p.display()
            ));
        }
        let p = fs::canonicalize(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        if !preloadable(&p) {
            return Err(format!(
                "LAYSOCKS_LIBRARY path {} contains a space or a colon, which LD_PRELOAD cannot carry: move the library",
                p.display()
            ));
        }
        return Ok(p);
    }
    if !l.embedded.is_empty() {
        let mut last_err = String::from("no cache directory is usable");
        for dir in cache_dirs(l) {
            match write_cached(&dir, l) {
                Ok(p) => return Ok(p),
                Err(e) => last_err = e,
            }
        }
        return Err(format!(
            "cannot write liblaysocks.so to a cache directory ({last_err}): set LAYSOCKS_LIBRARY or XDG_CACHE_HOME"
        ));
    }
    if let Some(dir) = l
        .exe
        .as_deref()
        .and_then(|e| fs::canonicalize(e).ok())
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        for cand in [
            dir.join(LIB_NAME),
            dir.join("../lib/laysocks").join(LIB_NAME),
        ] {
            if cand.is_file() {
                if let Ok(c) = fs::canonicalize(&cand) {
                    if preloadable(&c) {
                        return Ok(c);
                    }
                }
            }
        }
    }
    Err(
        "this laysocks was built without an embedded liblaysocks.so (the preload crate did not build): \
         set LAYSOCKS_LIBRARY to a liblaysocks.so or rebuild"
            .into(),
    )
}

/// Whether `LD_PRELOAD` can carry this path (it splits on spaces and colons).
fn preloadable(p: &Path) -> bool {
    !p.as_os_str()
        .as_bytes()
        .iter()
        .any(|&b| b == b' ' || b == b':' || b == b'\t' || b == b'\n')
}

/// A directory with the trust it needs: `Shared` ones live in a sticky world-writable
/// place and must be ours and private.
enum CacheDir {
    Private(PathBuf),
    Shared(PathBuf),
}

fn cache_dirs(l: &Lookup<'_>) -> Vec<CacheDir> {
    let mut v = Vec::new();
    let abs = |o: Option<OsString>| o.map(PathBuf::from).filter(|p| p.is_absolute());
    if let Some(x) = abs((l.env)("XDG_CACHE_HOME")) {
        v.push(CacheDir::Private(x.join("laysocks")));
    }
    if let Some(h) = abs((l.env)("HOME")) {
        v.push(CacheDir::Private(h.join(".cache/laysocks")));
    }
    v.push(CacheDir::Shared(l.tmp.join(format!("laysocks-{}", l.uid))));
    v
}

/// FNV-1a, 64 bits: tells two builds' libraries apart (an identity, not a security check).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn write_cached(dir: &CacheDir, l: &Lookup<'_>) -> Result<PathBuf, String> {
    let dir = match dir {
        CacheDir::Private(d) => {
            fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
            d.clone()
        }
        CacheDir::Shared(d) => {
            match fs::DirBuilder::new().mode(0o700).create(d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(format!("{}: {e}", d.display())),
            }
            // Someone else may have created it first in the sticky directory: use it only
            // if it is a real directory that we own and nobody else can write to.
            let m = fs::symlink_metadata(d).map_err(|e| format!("{}: {e}", d.display()))?;
            if !m.is_dir() || m.uid() != l.uid || m.mode() & 0o022 != 0 {
                return Err(format!(
                    "{} is not a private directory owned by uid {}",
                    d.display(),
                    l.uid
                ));
            }
            d.clone()
        }
    };
    let hash = if std::ptr::eq(l.embedded, EMBEDDED) {
        EMBEDDED_HASH.to_string()
    } else {
        format!("{:016x}", fnv1a(l.embedded))
    };
    let name = format!("liblaysocks-{}-{hash}.so", env!("CARGO_PKG_VERSION"));
    let path = dir.join(&name);
    if let Ok(m) = fs::metadata(&path) {
        if m.is_file() && m.len() == l.embedded.len() as u64 {
            return finish(path);
        }
    }
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let res = (|| -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(l.embedded)?;
        f.sync_all()?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644))?;
        fs::rename(&tmp, &path)
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(format!("{}: {e}", path.display()));
    }
    finish(path)
}

fn finish(path: PathBuf) -> Result<PathBuf, String> {
    let p = fs::canonicalize(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if preloadable(&p) {
        Ok(p)
    } else {
        Err(format!("{} contains a space or a colon", p.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Scratch(PathBuf);
    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let p = std::env::temp_dir().join(format!(
                "laysocks-libtest-{tag}-{}-{:?}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            ));
            fs::create_dir_all(&p).unwrap();
            Scratch(p)
        }
    }
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn uid() -> u32 {
        // SAFETY: getuid has no preconditions and cannot fail.
        unsafe { libc::getuid() }
    }

    fn lookup<'a>(
        env: &'a dyn Fn(&str) -> Option<OsString>,
        exe: &Path,
        embedded: &'a [u8],
        tmp: &Path,
    ) -> Lookup<'a> {
        Lookup {
            env,
            exe: Some(exe.to_path_buf()),
            embedded,
            uid: uid(),
            tmp: tmp.to_path_buf(),
        }
    }

    #[test]
    fn order_env_then_embedded_then_beside_then_lib() {
        let s = Scratch::new("order");
        let bin = s.0.join("prefix/bin");
        let lib = s.0.join("prefix/lib/laysocks");
        fs::create_dir_all(&bin).unwrap();
        fs::create_dir_all(&lib).unwrap();
        let exe = bin.join("laysocks");
        fs::write(&exe, b"").unwrap();
        let cache = s.0.join("cache");
        let vars: HashMap<&str, OsString> =
            HashMap::from([("XDG_CACHE_HOME", cache.clone().into_os_string())]);
        let env = |k: &str| vars.get(k).cloned();
        let bytes = b"not really an ELF file".as_slice();

        // Nothing installed: the embedded copy lands in the XDG cache.
        let got = find(&lookup(&env, &exe, bytes, &s.0)).unwrap();
        assert!(
            got.starts_with(fs::canonicalize(&cache).unwrap()),
            "{got:?}"
        );
        assert_eq!(fs::read(&got).unwrap(), bytes);
        let name = got.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.contains(env!("CARGO_PKG_VERSION")), "{name}");
        // A second run reuses it.
        let mtime = fs::metadata(&got).unwrap().modified().unwrap();
        assert_eq!(find(&lookup(&env, &exe, bytes, &s.0)).unwrap(), got);
        assert_eq!(fs::metadata(&got).unwrap().modified().unwrap(), mtime);
        // Different bytes get a different file.
        let other = find(&lookup(&env, &exe, b"other build", &s.0)).unwrap();
        assert_ne!(other, got);

        // A stale library next to the executable never beats the embedded copy...
        fs::write(lib.join(LIB_NAME), b"x").unwrap();
        fs::write(bin.join(LIB_NAME), b"x").unwrap();
        let got = find(&lookup(&env, &exe, bytes, &s.0)).unwrap();
        assert!(
            got.starts_with(fs::canonicalize(&cache).unwrap()),
            "{got:?}"
        );
        // ... but a launcher built without one uses it: next to the executable first,
        // then ../lib/laysocks.
        let got = find(&lookup(&env, &exe, b"", &s.0)).unwrap();
        assert_eq!(got, fs::canonicalize(bin.join(LIB_NAME)).unwrap());
        fs::remove_file(bin.join(LIB_NAME)).unwrap();
        let got = find(&lookup(&env, &exe, b"", &s.0)).unwrap();
        assert_eq!(got, fs::canonicalize(lib.join(LIB_NAME)).unwrap());

        // $LAYSOCKS_LIBRARY beats everything, and must exist.
        let mine = s.0.join("mine.so");
        fs::write(&mine, b"x").unwrap();
        let env2 = |k: &str| {
            if k == "LAYSOCKS_LIBRARY" {
                Some(mine.clone().into_os_string())
            } else {
                env(k)
            }
        };
        assert_eq!(
            find(&lookup(&env2, &exe, bytes, &s.0)).unwrap(),
            fs::canonicalize(&mine).unwrap()
        );
        let missing = s.0.join("missing.so");
        let env3 = |k: &str| (k == "LAYSOCKS_LIBRARY").then(|| missing.clone().into_os_string());
        let err = find(&lookup(&env3, &exe, bytes, &s.0)).unwrap_err();
        assert!(err.contains("LAYSOCKS_LIBRARY"), "{err}");
    }

    #[test]
    fn falls_back_to_private_tmp_dir() {
        let s = Scratch::new("tmp");
        let exe = s.0.join("laysocks");
        fs::write(&exe, b"").unwrap();
        let env = |_: &str| None;
        let got = find(&lookup(&env, &exe, b"bytes", &s.0)).unwrap();
        let dir = s.0.join(format!("laysocks-{}", uid()));
        assert!(got.starts_with(fs::canonicalize(&dir).unwrap()));
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);

        // A group-writable directory there is refused.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let err = find(&lookup(&env, &exe, b"newer bytes", &s.0)).unwrap_err();
        assert!(err.contains("private directory"), "{err}");
    }

    #[test]
    fn empty_embedding_is_a_clear_error() {
        let s = Scratch::new("empty");
        let exe = s.0.join("laysocks");
        let env = |_: &str| None;
        let err = find(&lookup(&env, &exe, b"", &s.0)).unwrap_err();
        assert!(err.contains("LAYSOCKS_LIBRARY"), "{err}");
    }

    #[test]
    fn paths_ld_preload_cannot_carry() {
        assert!(preloadable(Path::new("/a/b/liblaysocks.so")));
        assert!(!preloadable(Path::new("/a b/liblaysocks.so")));
        assert!(!preloadable(Path::new("/a:b/liblaysocks.so")));
    }
}
