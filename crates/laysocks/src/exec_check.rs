//! Programs the layer cannot enter, found before `exec` (DESIGN §3.9).
//!
//! `LD_PRELOAD` is read by the dynamic loader, so anything that keeps the loader from
//! reading it, or makes the program talk to the kernel without libc, would send the
//! program's connections straight out — silently, which is the one thing laysocks must
//! not do. The launcher therefore looks at the file it is about to `exec` and refuses
//! (unless `--allow-direct`) when:
//!
//! - it is an ELF file with no `PT_INTERP` (static, or static-pie): no loader runs;
//! - it is an ELF file for another machine or class (a 32-bit program): the loader
//!   skips a 64-bit `LD_PRELOAD` entry with a warning and runs the program bare;
//! - the `exec` would be *secure* (`AT_SECURE`): glibc's loader then ignores
//!   `LD_PRELOAD` entries with a slash (ours has one). The rules are the kernel's,
//!   from `bprm_fill_uid` (fs/exec.c) and `cap_bprm_creds_from_file`
//!   (security/commoncap.c), and were checked on this machine with a probe printing
//!   `getauxval(AT_SECURE)`:
//!   * set-user-ID whose owner is not our real uid; set-group-ID (with group execute)
//!     whose group is not our real gid — both void on a `nosuid` mount and under
//!     `no_new_privs`;
//!   * file capabilities, for a caller whose real uid is not 0, when the file's
//!     effective bit is set or it would grant a permitted capability (inheritable-only
//!     capabilities the caller does not hold grant nothing and are not secure; root
//!     running a file with capabilities is not secure either). `no_new_privs` does not
//!     change this: the exec is still secure;
//!   * a launcher that itself runs with euid ≠ uid or egid ≠ gid (every exec is secure);
//! - it is a Go program (a `.go.buildinfo` section, or the Go build-id note): the Go
//!   runtime makes its own `connect` system calls, even when dynamically linked;
//! - it is a `#!` script whose interpreter (one level, and `/usr/bin/env NAME` looked
//!   up in `PATH`) is one of the above. The set-ID bits of a script are ignored by
//!   Linux, so only the interpreter's matter.
//!
//! A file we cannot read is not refused: `exec` gives its own error, or runs it. No
//! input makes this module panic: every length read from the file is bounded.
//!
//! **With the guard** (the default; `supervise.rs`) the launcher answers every
//! `connect` the program makes, libc or not, so static, static-pie and Go programs are
//! covered and no longer refused. Two kinds stay refused in both modes:
//! - another machine or word size: the guard's filter refuses non-native system calls
//!   (a 32-bit program on x86-64 could otherwise bypass it through `int 0x80`), so the
//!   program could not run, and the layer cannot enter it either;
//! - a secure exec (set-ID, file capabilities): the guard sets `PR_SET_NO_NEW_PRIVS`
//!   (seccomp(2) requires it of an unprivileged caller), under which the kernel grants no
//!   set-ID or file-capability privileges (prctl(2), `PR_SET_NO_NEW_PRIVS`) — the program
//!   would run without the privileges it exists to have, and fail in its own way.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Who is about to `exec`: what the kernel's decision depends on.
#[derive(Clone, Copy, Debug)]
pub struct Creds {
    pub ruid: u32,
    pub euid: u32,
    pub rgid: u32,
    pub egid: u32,
    /// Supplementary groups do not matter to `AT_SECURE`; only the real gid does.
    pub cap_bnd: u64,
    pub cap_inh: u64,
    pub no_new_privs: bool,
}

impl Creds {
    /// The launcher's own credentials.
    pub fn current() -> Creds {
        // SAFETY: these four calls have no preconditions and cannot fail.
        let (ruid, euid, rgid, egid) = unsafe {
            (
                libc::getuid(),
                libc::geteuid(),
                libc::getgid(),
                libc::getegid(),
            )
        };
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
        };
        let hex = |name: &str, unknown: u64| {
            field(name)
                .and_then(|v| u64::from_str_radix(v, 16).ok())
                .unwrap_or(unknown)
        };
        Creds {
            ruid,
            euid,
            rgid,
            egid,
            // Unknown: assume the bounding set is full and nothing is inheritable.
            cap_bnd: hex("CapBnd:", u64::MAX),
            cap_inh: hex("CapInh:", 0),
            no_new_privs: field("NoNewPrivs:") == Some("1"),
        }
    }
}

/// Why laysocks cannot cover `exe`, as the start of one line ("X is …: …, so its
/// connections would go direct"), or `None` when it can (or we cannot tell). `guard`:
/// whether the seccomp guard will run beside the preload layer.
pub fn why_not(exe: &Path, path_var: Option<&OsStr>, creds: &Creds, guard: bool) -> Option<String> {
    let shown = exe.display().to_string();
    if let Some(r) = file_reason(exe, creds, guard) {
        return Some(format!("{shown} {r}"));
    }
    let (interp, how) = script_interpreter(exe, path_var)?;
    let r = file_reason(&interp, creds, guard)?;
    Some(format!(
        "{shown} is a script run by {}{how}, which {r}",
        interp.display()
    ))
}

/// The reason for one file itself (not following `#!`), as "is …: …, so …".
fn file_reason(p: &Path, creds: &Creds, guard: bool) -> Option<String> {
    if let Some((r, kind)) = secure_reason(p, creds) {
        return Some(match (guard, kind) {
            (true, Secure::File) => format!(
                "{r}: under the guard (which sets no_new_privs) it would run without its privileges, and without the guard the loader ignores LD_PRELOAD for it"
            ),
            _ => format!(
                "{r}: the loader ignores LD_PRELOAD for it, so its connections would go direct"
            ),
        });
    }
    let elf = read_elf(p)?;
    if !elf.native {
        return Some(format!(
            "is built for another machine or word size ({}): {}",
            elf.describe(),
            if guard {
                "the guard refuses its system calls and the loader cannot load the layer into it"
            } else {
                "the loader cannot load the layer into it, so its connections would go direct"
            }
        ));
    }
    if guard {
        // Static, static-pie and Go programs: covered by the guard.
        return None;
    }
    if elf.go {
        return Some(
            "is a Go program: Go makes its own connect system calls, which bypass the layer, so its connections would go direct"
                .into(),
        );
    }
    if !elf.interp {
        return Some(
            "is statically linked: no dynamic loader runs, so the layer cannot enter it and its connections would go direct"
                .into(),
        );
    }
    None
}

/// Where a secure exec comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Secure {
    /// laysocks itself runs set-ID.
    Launcher,
    /// The file's set-ID bits or capabilities.
    File,
}

/// Whether the kernel would make the `exec` secure (`AT_SECURE`), and why.
fn secure_reason(p: &Path, c: &Creds) -> Option<(String, Secure)> {
    if c.euid != c.ruid || c.egid != c.rgid {
        return Some((
            "would start with laysocks' own set-ID privileges (laysocks runs with effective ids that differ from its real ids)"
                .into(),
            Secure::Launcher,
        ));
    }
    let m = std::fs::metadata(p).ok()?;
    if !m.is_file() || nosuid_mount(p) {
        return None;
    }
    let mode = m.mode();
    if !c.no_new_privs {
        if mode & 0o4000 != 0 && m.uid() != c.ruid {
            return Some((
                format!("is set-user-ID (owner uid {})", m.uid()),
                Secure::File,
            ));
        }
        // Without group execute, S_ISGID marks mandatory locking, not set-group-ID.
        if mode & 0o2010 == 0o2010 && m.gid() != c.rgid {
            return Some((
                format!("is set-group-ID (group gid {})", m.gid()),
                Secure::File,
            ));
        }
    }
    if c.ruid != 0 {
        if let Some(fc) = file_caps(p) {
            if fc.effective || fc.permitted & c.cap_bnd != 0 || fc.inheritable & c.cap_inh != 0 {
                return Some(("has file capabilities".into(), Secure::File));
            }
        }
    }
    None
}

fn nosuid_mount(p: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statvfs is plain data; zeroed is a valid value for it.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is NUL-terminated and st is a valid out pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_flag & libc::ST_NOSUID != 0
}

/// The capability sets of the `security.capability` attribute (`struct vfs_cap_data`,
/// include/uapi/linux/capability.h): revision and flags in the first word, then
/// (permitted, inheritable) pairs of 32-bit words, low half first.
struct FileCaps {
    effective: bool,
    permitted: u64,
    inheritable: u64,
}

fn file_caps(p: &Path) -> Option<FileCaps> {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).ok()?;
    let mut buf = [0u8; 32];
    // SAFETY: c and the attribute name are NUL-terminated; buf is writable for its length.
    let n = unsafe {
        libc::getxattr(
            c.as_ptr(),
            c"security.capability".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let n = usize::try_from(n).ok()?;
    parse_caps(&buf[..n.min(buf.len())])
}

fn parse_caps(b: &[u8]) -> Option<FileCaps> {
    let word = |i: usize| -> Option<u32> {
        let s = b.get(i * 4..i * 4 + 4)?;
        Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    };
    let magic = word(0)?;
    let (p0, i0) = (word(1)?, word(2)?);
    // Revision 1 has one pair; revisions 2 and 3 have two (3 adds the namespace root).
    let (p1, i1) = match magic & 0xff00_0000 {
        0x0100_0000 => (0, 0),
        0x0200_0000 | 0x0300_0000 => (word(3)?, word(4)?),
        _ => return None,
    };
    Some(FileCaps {
        effective: magic & 1 != 0,
        permitted: u64::from(p0) | u64::from(p1) << 32,
        inheritable: u64::from(i0) | u64::from(i1) << 32,
    })
}

/// What an ELF file's headers say.
struct Elf {
    class64: bool,
    machine: u16,
    /// Same class, byte order and machine as this launcher (and so as the layer).
    native: bool,
    /// Has `PT_INTERP`: the dynamic loader runs.
    interp: bool,
    go: bool,
}

impl Elf {
    fn describe(&self) -> String {
        let m = match self.machine {
            3 => "x86",
            62 => "x86-64",
            40 => "ARM",
            183 => "AArch64",
            243 => "RISC-V",
            8 => "MIPS",
            20 => "PowerPC",
            21 => "PowerPC64",
            22 => "S/390",
            _ => "machine",
        };
        format!("{}-bit {m}", if self.class64 { 64 } else { 32 })
    }
}

const MAX_HEADERS: usize = 1 << 20;

/// Reads the ELF header, the program headers and the section names of `p`; `None` for
/// anything that is not a readable ELF executable.
fn read_elf(p: &Path) -> Option<Elf> {
    let mut f = File::open(p).ok()?;
    let mut h = [0u8; 64];
    let got = read_upto(&mut f, &mut h)?;
    if got < 52 || &h[..4] != b"\x7fELF" {
        return None;
    }
    let class64 = match h[4] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let le = match h[5] {
        1 => true,
        2 => false,
        _ => return None,
    };
    let u16_at = |b: &[u8], o: usize| -> u64 {
        let s = [b[o], b[o + 1]];
        u64::from(if le {
            u16::from_le_bytes(s)
        } else {
            u16::from_be_bytes(s)
        })
    };
    let u32_at = |b: &[u8], o: usize| -> u64 {
        let s = [b[o], b[o + 1], b[o + 2], b[o + 3]];
        u64::from(if le {
            u32::from_le_bytes(s)
        } else {
            u32::from_be_bytes(s)
        })
    };
    let u64_at = |b: &[u8], o: usize| -> u64 {
        let mut s = [0u8; 8];
        s.copy_from_slice(&b[o..o + 8]);
        if le {
            u64::from_le_bytes(s)
        } else {
            u64::from_be_bytes(s)
        }
    };
    let word = |b: &[u8], o64: usize, o32: usize| {
        if class64 {
            u64_at(b, o64)
        } else {
            u32_at(b, o32)
        }
    };
    if class64 && got < 64 {
        return None;
    }
    let e_type = u16_at(&h, 16);
    if e_type != 2 && e_type != 3 {
        return None; // not ET_EXEC or ET_DYN: exec fails on its own
    }
    let machine = u16_at(&h, 18) as u16;
    let native = class64 == cfg!(target_pointer_width = "64")
        && le == cfg!(target_endian = "little")
        && machine == NATIVE_MACHINE;
    let phoff = word(&h, 32, 28);
    let shoff = word(&h, 40, 32);
    let (phentsize, phnum) = if class64 {
        (u16_at(&h, 54), u16_at(&h, 56))
    } else {
        (u16_at(&h, 42), u16_at(&h, 44))
    };
    let (shentsize, shnum, shstrndx) = if class64 {
        (u16_at(&h, 58), u16_at(&h, 60), u16_at(&h, 62))
    } else {
        (u16_at(&h, 46), u16_at(&h, 48), u16_at(&h, 50))
    };
    let min_ph = if class64 { 56 } else { 32 };
    let ph = read_table(&mut f, phoff, phentsize, phnum, min_ph)?;
    let mut interp = false;
    let mut go = false;
    for e in ph.chunks(phentsize as usize) {
        match u32_at(e, 0) {
            3 => interp = true, // PT_INTERP
            4 => {
                // PT_NOTE: the Go linker's build id is a note named "Go", type 4.
                let (off, size) = if class64 {
                    (u64_at(e, 8), u64_at(e, 32))
                } else {
                    (u32_at(e, 4), u32_at(e, 16))
                };
                if let Some(notes) = read_at(&mut f, off, size.min(4096)) {
                    go |= has_go_note(&notes, le);
                }
            }
            _ => {}
        }
    }
    // Section names: `.go.buildinfo` is in every Go binary built since Go 1.13.
    let min_sh = if class64 { 64 } else { 40 };
    if !go && shnum > 0 && shstrndx < shnum {
        if let Some(sh) = read_table(&mut f, shoff, shentsize, shnum, min_sh) {
            let ent = |i: u64| &sh[(i * shentsize) as usize..((i + 1) * shentsize) as usize];
            let s = ent(shstrndx);
            let (stroff, strsize) = if class64 {
                (u64_at(s, 24), u64_at(s, 32))
            } else {
                (u32_at(s, 16), u32_at(s, 20))
            };
            if let Some(names) = read_at(&mut f, stroff, strsize.min(MAX_HEADERS as u64)) {
                go = (0..shnum).any(|i| {
                    let at = u32_at(ent(i), 0) as usize;
                    names
                        .get(at..)
                        .and_then(|r| r.split(|&b| b == 0).next())
                        .is_some_and(|n| n == b".go.buildinfo")
                });
            }
        }
    }
    Some(Elf {
        class64,
        machine,
        native,
        interp,
        go,
    })
}

#[cfg(target_arch = "x86_64")]
const NATIVE_MACHINE: u16 = 62;
#[cfg(target_arch = "aarch64")]
const NATIVE_MACHINE: u16 = 183;
#[cfg(target_arch = "x86")]
const NATIVE_MACHINE: u16 = 3;
#[cfg(target_arch = "riscv64")]
const NATIVE_MACHINE: u16 = 243;
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "x86",
    target_arch = "riscv64"
)))]
const NATIVE_MACHINE: u16 = 0;

/// Walks ELF notes (namesz, descsz, type, name padded to 4, desc padded to 4).
fn has_go_note(b: &[u8], le: bool) -> bool {
    let u32_at = |o: usize| -> Option<usize> {
        let s = b.get(o..o + 4)?;
        let a = [s[0], s[1], s[2], s[3]];
        Some(if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        } as usize)
    };
    let mut o = 0usize;
    for _ in 0..64 {
        let (Some(namesz), Some(descsz), Some(ty)) = (u32_at(o), u32_at(o + 4), u32_at(o + 8))
        else {
            return false;
        };
        let name = b.get(o + 12..o + 12 + namesz.min(b.len()));
        if ty == 4 && name.is_some_and(|n| n.strip_suffix(b"\0").unwrap_or(n) == b"Go") {
            return true;
        }
        let pad = |n: usize| n.saturating_add(3) & !3;
        o = o
            .saturating_add(12)
            .saturating_add(pad(namesz))
            .saturating_add(pad(descsz));
        if o >= b.len() {
            return false;
        }
    }
    false
}

fn read_table(f: &mut File, off: u64, entsize: u64, num: u64, min: u64) -> Option<Vec<u8>> {
    if entsize < min || num == 0 || entsize * num > MAX_HEADERS as u64 {
        return None;
    }
    let v = read_at(f, off, entsize * num)?;
    (v.len() as u64 == entsize * num).then_some(v)
}

fn read_at(f: &mut File, off: u64, len: u64) -> Option<Vec<u8>> {
    let len = usize::try_from(len).ok()?.min(MAX_HEADERS);
    f.seek(SeekFrom::Start(off)).ok()?;
    let mut v = vec![0u8; len];
    let n = read_upto(f, &mut v)?;
    v.truncate(n);
    Some(v)
}

fn read_upto(f: &mut File, buf: &mut [u8]) -> Option<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(n)
}

/// The interpreter a `#!` line names, as the kernel reads it (the first 256 bytes,
/// binfmt_script): one path and at most one argument. `/usr/bin/env NAME` (and
/// `env -S NAME …`) is followed to NAME in `PATH`. Returns the interpreter and a phrase
/// saying how it was found.
fn script_interpreter(p: &Path, path_var: Option<&OsStr>) -> Option<(PathBuf, String)> {
    let mut f = File::open(p).ok()?;
    let mut buf = [0u8; 256];
    let n = read_upto(&mut f, &mut buf)?;
    let line = buf[..n].strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next()?;
    let mut words = line
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|w| !w.is_empty());
    let interp = PathBuf::from(OsStr::from_bytes(words.next()?));
    // The kernel passes the rest of the line as one argument; env splits it only with -S.
    let rest: Vec<&[u8]> = words.collect();
    if interp.file_name() == Some(OsStr::new("env")) {
        let mut it = rest.iter().copied();
        let mut name = it.next();
        if name == Some(b"-S") {
            name = it.next();
        } else if let Some(s) = name.and_then(|n| n.strip_prefix(b"-S")) {
            name = Some(s);
        }
        let name = name.filter(|n| !n.starts_with(b"-") && !n.contains(&b'='))?;
        let name = OsStr::from_bytes(name);
        let found = if name.as_bytes().contains(&b'/') {
            PathBuf::from(name)
        } else {
            lookup_path(name, path_var)?
        };
        return Some((found, format!(" (via {})", interp.display())));
    }
    Some((interp, String::new()))
}

/// `name` in `PATH` as `execvp` (and `env`) would find it.
fn lookup_path(name: &OsStr, path_var: Option<&OsStr>) -> Option<PathBuf> {
    let path = path_var
        .map(|p| p.as_bytes())
        .unwrap_or(b"/usr/local/bin:/usr/bin:/bin");
    path.split(|&b| b == b':').find_map(|dir| {
        let dir = if dir.is_empty() {
            Path::new(".")
        } else {
            Path::new(OsStr::from_bytes(dir))
        };
        let cand = dir.join(name);
        let m = std::fs::metadata(&cand).ok()?;
        (m.is_file() && m.mode() & 0o111 != 0).then_some(cand)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    /// The refusals of the preload layer alone (`--no-guard`).
    fn no_guard(exe: &Path, path_var: Option<&OsStr>, creds: &Creds) -> Option<String> {
        why_not(exe, path_var, creds, false)
    }

    const HELLO: &str = "#include <stdio.h>\nint main(void){puts(\"hi\");return 0;}\n";

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn tmp() -> Tmp {
        let d = std::env::temp_dir().join(format!(
            "laysocks-exec-check-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&d).unwrap();
        // Other users must reach the files for the setuid cases.
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        Tmp(d)
    }

    fn cc(dir: &Path, name: &str, src: &str, flags: &[&str]) -> PathBuf {
        let c = dir.join(format!("{name}.c"));
        std::fs::write(&c, src).unwrap();
        let out = dir.join(name);
        let st = Command::new("gcc")
            .args(flags)
            .arg("-o")
            .arg(&out)
            .arg(&c)
            .status()
            .expect("gcc (Debian package gcc) must be installed");
        assert!(
            st.success(),
            "gcc {flags:?} failed (static builds need libc6-dev)"
        );
        out
    }

    fn user(uid: u32) -> Creds {
        Creds {
            ruid: uid,
            euid: uid,
            rgid: uid,
            egid: uid,
            cap_bnd: (1 << 41) - 1,
            cap_inh: 0,
            no_new_privs: false,
        }
    }

    fn chown(p: &Path, uid: u32, gid: u32) {
        let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
        // SAFETY: c is NUL-terminated.
        assert_eq!(
            unsafe { libc::chown(c.as_ptr(), uid, gid) },
            0,
            "chown (run as root)"
        );
    }

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn dynamic_static_and_static_pie() {
        let t = tmp();
        let dynamic = cc(&t.0, "dyn", HELLO, &[]);
        let stat = cc(&t.0, "static", HELLO, &["-static"]);
        let spie = cc(&t.0, "spie", HELLO, &["-static-pie"]);
        let me = user(0);
        assert_eq!(no_guard(&dynamic, None, &me), None);
        for p in [&stat, &spie] {
            let r = no_guard(p, None, &me).unwrap();
            assert!(r.contains("is statically linked"), "{r}");
            assert!(r.contains("would go direct"), "{r}");
        }
        // Not ELF, or unreadable: nothing to say (exec decides).
        assert_eq!(no_guard(Path::new("/etc/passwd"), None, &me), None);
        assert_eq!(no_guard(Path::new("/nonexistent/x"), None, &me), None);
        assert_eq!(no_guard(&t.0, None, &me), None);
        // A truncated ELF file is no crash.
        let bytes = std::fs::read(&stat).unwrap();
        for len in [0, 4, 20, 52, 63, 64, 100, 4096] {
            let p = t.0.join(format!("cut{len}"));
            std::fs::write(&p, &bytes[..len.min(bytes.len())]).unwrap();
            let _ = no_guard(&p, None, &me);
        }
    }

    #[test]
    fn go_programs_are_named_even_when_dynamic() {
        let t = tmp();
        // What the Go linker emits: a section called .go.buildinfo.
        let src = "__attribute__((section(\".go.buildinfo\"), used)) static const char bi[32] = \"\\xff Go buildinf:\";\nint main(void){return 0;}\n";
        let go = cc(&t.0, "goish", src, &[]);
        let r = no_guard(&go, None, &user(0)).unwrap();
        assert!(r.contains("is a Go program"), "{r}");
        // The Go build-id note alone (a stripped binary without section headers).
        let note = [
            3u32.to_le_bytes(),
            4u32.to_le_bytes(),
            4u32.to_le_bytes(),
            *b"Go\0\0",
            *b"abcd",
        ]
        .concat();
        assert!(has_go_note(&note, true));
        let gnu = [
            4u32.to_le_bytes(),
            4u32.to_le_bytes(),
            3u32.to_le_bytes(),
            *b"GNU\0",
            *b"abcd",
        ]
        .concat();
        assert!(!has_go_note(&gnu, true));
        assert!(!has_go_note(&[0xff; 7], true));
    }

    #[test]
    fn set_id_follows_the_kernel_rules() {
        let t = tmp();
        let base = cc(&t.0, "base", HELLO, &[]);
        let copy = |name: &str, uid: u32, gid: u32, mode: u32| {
            let p = t.0.join(name);
            std::fs::copy(&base, &p).unwrap();
            chown(&p, uid, gid);
            chmod(&p, mode);
            p
        };
        let suid_other = copy("suid-other", 65534, 0, 0o4755);
        let suid_root = copy("suid-root", 0, 0, 0o4755);
        let sgid_other = copy("sgid-other", 0, 65534, 0o2755);
        let sgid_noexec = copy("sgid-noexec", 0, 65534, 0o2745);
        let root = user(0);
        let nobody = user(65534);
        let r = no_guard(&suid_other, None, &root).unwrap();
        assert!(
            r.contains("set-user-ID (owner uid 65534)") && r.contains("LD_PRELOAD"),
            "{r}"
        );
        assert_eq!(no_guard(&suid_other, None, &nobody), None, "owner is us");
        assert_eq!(no_guard(&suid_root, None, &root), None, "owner is us");
        assert!(no_guard(&suid_root, None, &nobody).is_some());
        assert!(no_guard(&sgid_other, None, &root)
            .unwrap()
            .contains("set-group-ID"));
        assert_eq!(no_guard(&sgid_other, None, &nobody), None);
        assert_eq!(
            no_guard(&sgid_noexec, None, &root),
            None,
            "no group x: not set-gid"
        );
        let nnp = Creds {
            no_new_privs: true,
            ..nobody
        };
        assert_eq!(
            no_guard(&suid_root, None, &nnp),
            None,
            "no_new_privs voids set-ID"
        );
        let odd = Creds { euid: 0, ..nobody };
        assert!(no_guard(&base, None, &odd)
            .unwrap()
            .contains("set-ID privileges"));
    }

    #[test]
    fn file_capabilities_matter_only_to_non_root() {
        let t = tmp();
        let base = cc(&t.0, "base", HELLO, &[]);
        let with = |name: &str, caps: &str| {
            let p = t.0.join(name);
            std::fs::copy(&base, &p).unwrap();
            let st = Command::new("setcap")
                .arg(caps)
                .arg(&p)
                .status()
                .expect("setcap (Debian package libcap2-bin) must be installed");
            assert!(st.success(), "setcap {caps}");
            p
        };
        let ep = with("ep", "cap_net_raw+ep");
        let p = with("p", "cap_net_raw+p");
        let i = with("i", "cap_net_raw+i");
        let root = user(0);
        let nobody = user(65534);
        assert_eq!(
            no_guard(&ep, None, &root),
            None,
            "root: caps are not secure"
        );
        assert!(no_guard(&ep, None, &nobody)
            .unwrap()
            .contains("file capabilities"));
        assert!(no_guard(&p, None, &nobody).is_some());
        assert!(no_guard(
            &p,
            None,
            &Creds {
                no_new_privs: true,
                ..nobody
            }
        )
        .is_some());
        assert_eq!(
            no_guard(&i, None, &nobody),
            None,
            "inheritable only grants nothing"
        );
        assert!(no_guard(
            &i,
            None,
            &Creds {
                cap_inh: 1 << 13,
                ..nobody
            }
        )
        .is_some());
        assert!(parse_caps(&[1, 2, 3]).is_none());
        assert!(parse_caps(&[0; 20]).is_none(), "unknown revision");
    }

    #[test]
    fn the_kernel_agrees_about_at_secure() {
        // The rules above, checked against this kernel: a probe prints AT_SECURE.
        let t = tmp();
        let src = "#include <stdio.h>\n#include <sys/auxv.h>\nint main(void){printf(\"%lu\\n\", getauxval(AT_SECURE));return 0;}\n";
        let base = cc(&t.0, "sec", src, &[]);
        chmod(&base, 0o755);
        let caps = t.0.join("sec-caps");
        std::fs::copy(&base, &caps).unwrap();
        assert!(Command::new("setcap")
            .args(["cap_net_raw+ep"])
            .arg(&caps)
            .status()
            .expect("setcap (libcap2-bin)")
            .success());
        let suid = t.0.join("sec-suid");
        std::fs::copy(&base, &suid).unwrap();
        chown(&suid, 0, 0);
        chmod(&suid, 0o4755);
        for (exe, uid) in [(&caps, 65534), (&caps, 0), (&suid, 65534), (&base, 65534)] {
            let mut cmd = Command::new("setpriv");
            cmd.args([
                format!("--reuid={uid}"),
                format!("--regid={uid}"),
                "--clear-groups".into(),
            ]);
            let out = cmd
                .arg(exe)
                .output()
                .expect("setpriv (Debian package util-linux)");
            let kernel = String::from_utf8_lossy(&out.stdout).trim() == "1";
            let ours = no_guard(exe, None, &user(uid)).is_some();
            assert_eq!(kernel, ours, "{} as uid {uid}", exe.display());
        }
    }

    #[test]
    fn scripts_are_judged_by_their_interpreter() {
        let t = tmp();
        let stat = cc(&t.0, "static-sh", HELLO, &["-static"]);
        let dynamic = cc(&t.0, "dyn-sh", HELLO, &[]);
        let script = |name: &str, line: &str| {
            let p = t.0.join(name);
            std::fs::write(&p, format!("{line}\necho hi\n")).unwrap();
            chmod(&p, 0o755);
            p
        };
        let me = user(0);
        let direct = script("a", &format!("#!{}", stat.display()));
        let r = no_guard(&direct, None, &me).unwrap();
        assert!(
            r.contains("is a script run by") && r.contains("statically linked"),
            "{r}"
        );
        let with_arg = script("b", &format!("#! {} -x", stat.display()));
        assert!(no_guard(&with_arg, None, &me).is_some());
        let path = t.0.as_os_str().to_owned();
        let via_env = script("c", "#!/usr/bin/env static-sh");
        let r = no_guard(&via_env, Some(&path), &me).unwrap();
        assert!(r.contains("(via /usr/bin/env)"), "{r}");
        let via_env_s = script("d", "#!/usr/bin/env -S static-sh -a");
        assert!(no_guard(&via_env_s, Some(&path), &me).is_some());
        assert_eq!(
            no_guard(&via_env, Some(OsStr::new("/nonexistent")), &me),
            None
        );
        let fine = script("e", &format!("#!{}", dynamic.display()));
        assert_eq!(no_guard(&fine, None, &me), None);
        let sh = script("f", "#!/bin/sh");
        assert_eq!(no_guard(&sh, None, &me), None);
        let garbage = script("g", "#!");
        assert_eq!(no_guard(&garbage, None, &me), None);
    }

    #[test]
    fn under_the_guard_static_and_go_run_but_set_id_and_foreign_do_not() {
        let t = tmp();
        let stat = cc(&t.0, "static", HELLO, &["-static"]);
        let spie = cc(&t.0, "spie", HELLO, &["-static-pie"]);
        let src = "__attribute__((section(\".go.buildinfo\"), used)) static const char bi[32] = \"\\xff Go buildinf:\";\nint main(void){return 0;}\n";
        let go = cc(&t.0, "goish", src, &[]);
        let me = user(0);
        for p in [&stat, &spie, &go] {
            assert_eq!(why_not(p, None, &me, true), None, "{}", p.display());
            assert!(why_not(p, None, &me, false).is_some());
        }
        // A script run by a static interpreter is covered as well.
        let sc = t.0.join("script");
        std::fs::write(&sc, format!("#!{}\n", stat.display())).unwrap();
        chmod(&sc, 0o755);
        assert_eq!(why_not(&sc, None, &me, true), None);

        // Set-ID: refused in both modes; the guard's reason is no_new_privs.
        let suid = t.0.join("suid");
        std::fs::copy(&stat, &suid).unwrap();
        chown(&suid, 0, 0);
        chmod(&suid, 0o4755);
        let r = why_not(&suid, None, &user(65534), true).unwrap();
        assert!(
            r.contains("set-user-ID")
                && r.contains("no_new_privs")
                && r.contains("without its privileges"),
            "{r}"
        );
        assert!(!r.contains('\n'));
        assert!(why_not(&suid, None, &user(65534), false).is_some());

        // Another machine: the guard refuses its system calls.
        let mut elf = std::fs::read(&stat).unwrap();
        elf[18] = 183; // EM_AARCH64
        elf[19] = 0;
        let foreign = t.0.join("foreign");
        std::fs::write(&foreign, &elf).unwrap();
        let r = why_not(&foreign, None, &me, true).unwrap();
        assert!(
            r.contains("another machine") && r.contains("the guard refuses"),
            "{r}"
        );
        assert!(why_not(&foreign, None, &me, false)
            .unwrap()
            .contains("would go direct"));
    }

    #[test]
    fn this_launcher_is_native_and_dynamic() {
        let me = std::env::current_exe().unwrap();
        let elf = read_elf(&me).unwrap();
        assert!(elf.native && elf.interp && !elf.go);
        assert_eq!(no_guard(&me, None, &Creds::current()), None);
    }
}
