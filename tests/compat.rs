//! The compatibility table (README, "Compatibility"): real programs from Debian's packages
//! under `laysocks` in the rig's client namespace, through real SOCKS5 servers (microsocks
//! and Dante), one row each.
//!
//! Every row checks the program's *result* end to end — the bytes of a 1 MiB file, an
//! echoed line, a query's answer, the address the server saw — and, separately, that
//! nothing left the client namespace except towards the proxy (the kernel's no-route
//! counters, the DNS canary and the UDP watch, read before and after the row). Rows run
//! one after the other on one rig, each judged on its own, so one broken program cannot
//! hide the others; the test fails at the end naming every failed row, prints the table,
//! writes it to `target/compat.md`, and fails too when README.md's copy (between
//! `<!-- compat:begin -->` and `<!-- compat:end -->`) differs from it.
//!
//! Besides the programs issue 7 names, the list has what proxychains-ng users report
//! broken most (its issue tracker): `nmap -sT` and `telnet` showing every port open
//! (a closed port must look closed), `ssh` failing with `select2: Bad file descriptor`,
//! `apt`, Java, FTP clients with a second (data) connection, and scripting languages'
//! own socket libraries (Perl, Ruby).
//!
//! This file has its own `main` (`harness = false`): run with the environment variable
//! `LAYSOCKS_COMPAT_CHILD=tokio`, the binary is the tokio client of
//! `tests/apps/tokio_echo.rs`, which the tokio row starts under the layer.

use std::ffi::OsStr;
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use laysocks_testkit::apps::{POSTGRES_PORT, REDIS_PORT};
use laysocks_testkit::compat::{self, Outcome};
use laysocks_testkit::util::{run_bounded, target_dir, workspace_root};
use laysocks_testkit::{
    big_body, python3, require, Rig, Run, Sshd, HELLO_BODY, HTTP_PORT, PROXY_OUT_V4, REMOTE_NAME,
    TARGET_V4, TARGET_V6,
};

#[path = "apps/tokio_echo.rs"]
mod tokio_echo;

/// The environment variable that turns this binary into the tokio client.
const CHILD_ENV: &str = "LAYSOCKS_COMPAT_CHILD";

/// The longest one program may run.
const LIMIT: Duration = Duration::from_secs(20);

/// A port nothing listens on in the target.
const CLOSED: u16 = 9;

type Check = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)*) => {
        if !$cond {
            return Err(format!($($fmt)*));
        }
    };
}

/// One row: the program's name, its static notes, and the check.
struct Row {
    program: &'static str,
    notes: &'static str,
    check: fn(&Rig) -> Check,
}

const ROWS: &[Row] = &[
    Row {
        program: "curl",
        notes: "1 MiB byte-exact via danted (user/pass); IPv6 target via microsocks",
        check: curl,
    },
    Row {
        program: "wget",
        notes: "1 MiB byte-exact; the host name goes to microsocks (remote DNS)",
        check: wget,
    },
    Row {
        program: "python3 urllib",
        notes: "1 MiB byte-exact via danted",
        check: python_urllib,
    },
    Row {
        program: "python3 asyncio",
        notes: "20 concurrent echo connections from one event loop, peer = target, via microsocks",
        check: python_asyncio,
    },
    Row {
        program: "python3 requests",
        notes: "python3-requests (urllib3); the host name goes to microsocks",
        check: python_requests,
    },
    Row {
        program: "node",
        notes: "net echo (remoteAddress = target) then http.get, via microsocks",
        check: node,
    },
    Row {
        program: "git (http)",
        notes: "clone over dumb HTTP (git-remote-http child) via microsocks",
        check: git_http,
    },
    Row {
        program: "git (ssh)",
        notes: "clone over ssh:// (ssh child, git-upload-pack on the far side) via danted",
        check: git_ssh,
    },
    Row {
        program: "ssh",
        notes: "IPv6 target through an IPv4 proxy (danted); sshd sees the proxy host",
        check: ssh,
    },
    Row {
        program: "scp",
        notes: "1 MiB byte-exact (SFTP protocol, ssh child) via microsocks",
        check: scp,
    },
    Row {
        program: "rsync over ssh",
        notes: "1 MiB byte-exact via microsocks",
        check: rsync,
    },
    Row {
        program: "nc (netcat-openbsd)",
        notes: "echo via microsocks",
        check: nc,
    },
    Row {
        program: "ncat",
        notes: "echo, IPv6 target, via danted",
        check: ncat,
    },
    Row {
        program: "socat",
        notes: "echo via microsocks",
        check: socat,
    },
    Row {
        program: "psql",
        notes: "query answered; server sees the client at the proxy host; via microsocks",
        check: psql,
    },
    Row {
        program: "redis-cli",
        notes: "SET, GET; CLIENT LIST shows the proxy host; via danted",
        check: redis_cli,
    },
    Row {
        program: "java (OpenJDK 17)",
        notes:
            "source launch; HttpURLConnection GET, Socket echo with a connect timeout, via danted",
        check: java,
    },
    Row {
        program: "lynx",
        notes: "-source of a page via microsocks",
        check: lynx,
    },
    Row {
        program: "w3m",
        notes: "-dump of a page via microsocks",
        check: w3m,
    },
    Row {
        program: "aria2c",
        notes: "1 MiB byte-exact via microsocks",
        check: aria2c,
    },
    Row {
        program: "tokio client",
        notes:
            "tests/apps/tokio_echo.rs: 50 concurrent echo connections on one thread, via microsocks",
        check: tokio_client,
    },
    Row {
        program: "nginx (reverse proxy)",
        notes: "nginx under the layer proxies to IPv4 and IPv6 upstreams via microsocks",
        check: nginx,
    },
    Row {
        program: "nmap -sT",
        notes: "open port open, closed port closed (proxychains-ng shows all open), via microsocks",
        check: nmap,
    },
    Row {
        program: "telnet",
        notes: "echo; a closed port is refused, not \"Connected\", via microsocks",
        check: telnet,
    },
    Row {
        program: "openssl s_client",
        notes: "TLS to openssl s_server, certificate and page received, via danted",
        check: openssl,
    },
    Row {
        program: "whois",
        notes: "query answered by a whois server on port 43 via microsocks",
        check: whois,
    },
    Row {
        program: "apt (http method)",
        notes: "apt-helper download-file: apt's http method child, dropped to _apt, via danted",
        check: apt,
    },
    Row {
        program: "lftp (FTP)",
        notes: "1 MiB byte-exact over a passive data connection (pyftpdlib server) via microsocks",
        check: lftp,
    },
    Row {
        program: "mosquitto_pub/_sub",
        notes: "MQTT publish (retained) then subscribe, mosquitto broker, via microsocks",
        check: mosquitto,
    },
    Row {
        program: "npm",
        notes: "npm view against a registry served by the target, via microsocks",
        check: npm,
    },
    Row {
        program: "perl",
        notes: "IO::Socket::INET echo with a connect timeout, HTTP::Tiny GET, via microsocks",
        check: perl,
    },
    Row {
        program: "ruby",
        notes: "TCPSocket echo (remote_address = target), Net::HTTP GET by name, via microsocks",
        check: ruby,
    },
    Row {
        program: "Go net/http (static)",
        notes: "tests/apps/go (CGO_ENABLED=0, no libc): 200 GETs from 20 goroutines, 1 MiB byte-exact, via danted (guard)",
        check: go_static,
    },
    Row {
        program: "busybox wget (static)",
        notes: "busybox-static (no libc to preload): 1 MiB byte-exact via microsocks (guard)",
        check: busybox_wget,
    },
];

fn main() {
    if std::env::var_os(CHILD_ENV).is_some_and(|v| v == "tokio") {
        tokio_echo::main();
        return;
    }
    let start = Instant::now();
    let rig = Rig::new();
    // Every outgoing UDP packet is inspected too (DNS or anything else sent direct).
    rig.udp_watch();
    let mut rows: Vec<Outcome> = Vec::new();
    for row in ROWS {
        let o = compat::run_row(&rig, row.program, row.notes, || (row.check)(&rig));
        eprintln!(
            "compat: {:<24} works={} leak-free={} ({:.1} s)",
            row.program,
            o.works.is_ok(),
            o.leak_free.is_ok(),
            o.elapsed.as_secs_f64()
        );
        rows.push(o);
    }
    drop(rig);
    let table = compat::table(&rows);
    println!("\n{table}");
    println!(
        "{} rows in {:.1} s",
        rows.len(),
        start.elapsed().as_secs_f64()
    );
    let out = target_dir().join("compat.md");
    if let Err(e) = std::fs::write(&out, &table) {
        eprintln!("compat: cannot write {}: {e}", out.display());
    }
    let mut problems = compat::failures(&rows);
    let readme_path = workspace_root().join("README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap_or_default();
    match compat::readme_table(&readme) {
        Some(t) if t == table => {}
        Some(_) => problems.push(format!(
            "README.md's compatibility table differs from this run's; replace the lines \
             between {} and {} with:\n{table}",
            compat::BEGIN,
            compat::END
        )),
        None => problems.push(format!(
            "README.md has no compatibility table between {} and {}",
            compat::BEGIN,
            compat::END
        )),
    }
    let failed = rows.iter().filter(|r| !r.ok()).count();
    println!("compat: {} passed, {failed} failed", rows.len() - failed);
    if !problems.is_empty() {
        panic!(
            "{} problem(s):\n{}\n\nthe table:\n{table}",
            problems.len(),
            problems.join("\n")
        );
    }
}

// ---- running programs ----

/// `laysocks -x <url> -- program args…` in the client namespace.
fn cmd<S: AsRef<OsStr>>(
    rig: &Rig,
    url: &str,
    program: impl AsRef<OsStr>,
    args: impl IntoIterator<Item = S>,
) -> Command {
    let mut c = rig.laysocks(url, [OsStr::new("--"), program.as_ref()]);
    c.args(args);
    c
}

/// Runs `c` to completion, bounded by [`LIMIT`].
fn go(c: &mut Command) -> Run {
    show(run_bounded(c, None, LIMIT))
}

/// Runs `c` with `input` on its stdin, bounded by [`LIMIT`].
fn go_stdin(c: &mut Command, input: &[u8]) -> Run {
    show(run_bounded(c, Some(input), LIMIT))
}

/// With `LAYSOCKS_COMPAT_SHOW=1`, every run's command line and output go to stderr.
fn show(run: Run) -> Run {
    if std::env::var_os("LAYSOCKS_COMPAT_SHOW").is_some_and(|v| v == "1") {
        eprintln!("{run}");
    }
    run
}

/// `laysocks -x <url> -- program args…`, run to completion.
fn under(rig: &Rig, url: &str, program: &str, args: &[&str]) -> Run {
    go(&mut cmd(rig, url, program, args))
}

fn succeeded(run: &Run) -> Check {
    ensure!(run.success(), "the program failed:\n{run}");
    Ok(())
}

fn stdout_is(run: &Run, want: &str) -> Check {
    succeeded(run)?;
    ensure!(run.stdout == want, "stdout should be {want:?}:\n{run}");
    Ok(())
}

fn stdout_has(run: &Run, needle: &str) -> Check {
    ensure!(
        run.stdout.contains(needle),
        "stdout lacks {needle:?}:\n{run}"
    );
    Ok(())
}

/// Succeeded, and the file at `path` holds exactly `want`.
fn file_is(run: &Run, path: &Path, want: &[u8]) -> Check {
    succeeded(run)?;
    let got = std::fs::read(path).unwrap_or_default();
    ensure!(
        got == want,
        "{} has {} bytes, {} expected, or different content:\n{run}",
        path.display(),
        got.len(),
        want.len()
    );
    Ok(())
}

fn target() -> String {
    TARGET_V4.to_string()
}

fn big_path(rig: &Rig) -> PathBuf {
    rig.http().root.join("big.bin")
}

fn dest(rig: &Rig, name: &str) -> PathBuf {
    rig.dir().join(format!("compat-{name}"))
}

/// `ssh` options for a non-interactive login (without `-p` and the destination).
fn ssh_opts(s: &Sshd) -> Vec<String> {
    let mut a = s.ssh_args("unused");
    a.truncate(a.len() - 3);
    a
}

fn micro(rig: &Rig) -> String {
    rig.microsocks().url()
}

fn dante(rig: &Rig) -> String {
    rig.danted().url()
}

/// An echo round trip through `program args…` (which sends its stdin to the echo server).
fn echo_through(rig: &Rig, url: &str, program: &str, args: &[&str], line: &str) -> Check {
    rig.echo();
    let run = go_stdin(&mut cmd(rig, url, program, args), line.as_bytes());
    ensure!(
        run.stdout == line,
        "the echo should come back as {line:?}:\n{run}"
    );
    Ok(())
}

/// Starts a server in the target and waits until it listens on `port`.
fn target_app<'r, S: AsRef<OsStr>>(
    rig: &'r Rig,
    label: &str,
    program: impl AsRef<OsStr>,
    args: impl IntoIterator<Item = S>,
    port: u16,
) -> laysocks_testkit::apps::App<'r> {
    let app = rig.spawn_app(rig.target_ns(), label, program, args);
    app.wait_listening(rig.target_ns(), IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
    app
}

// ---- the rows ----

fn curl(rig: &Rig) -> Check {
    let http = rig.http();
    let out = dest(rig, "curl.bin");
    let run = under(
        rig,
        &dante(rig),
        "curl",
        &[
            "-sS",
            "-m",
            "15",
            "-o",
            out.to_str().unwrap(),
            &http.url("big.bin"),
        ],
    );
    file_is(&run, &out, &big_body())?;
    let run = under(
        rig,
        &micro(rig),
        "curl",
        &["-sS", "-m", "15", &http.url_v6("hello.txt")],
    );
    stdout_is(&run, HELLO_BODY)
}

fn wget(rig: &Rig) -> Check {
    let http = rig.http();
    let out = dest(rig, "wget.bin");
    let url = http.url_named(REMOTE_NAME, "big.bin");
    let run = under(
        rig,
        &micro(rig),
        "wget",
        &[
            "-q",
            "-T",
            "15",
            "-t",
            "1",
            "-O",
            out.to_str().unwrap(),
            &url,
        ],
    );
    file_is(&run, &out, &big_body())
}

fn python_urllib(rig: &Rig) -> Check {
    let http = rig.http();
    let out = dest(rig, "urllib.bin");
    let script = "import sys, urllib.request\n\
                  body = urllib.request.urlopen(sys.argv[1], timeout=15).read()\n\
                  open(sys.argv[2], 'wb').write(body)\n";
    let run = under(
        rig,
        &dante(rig),
        python3().to_str().unwrap(),
        &["-c", script, &http.url("big.bin"), out.to_str().unwrap()],
    );
    file_is(&run, &out, &big_body())
}

fn python_asyncio(rig: &Rig) -> Check {
    rig.echo();
    let script = r#"
import asyncio, sys
async def one(i):
    r, w = await asyncio.wait_for(asyncio.open_connection(sys.argv[1], 7), 15)
    w.write(b"a%d\n" % i)
    line = await asyncio.wait_for(r.readline(), 15)
    peer = w.get_extra_info("peername")[0]
    w.close()
    return "%s %s" % (peer, line.decode().strip())
async def main():
    for line in await asyncio.gather(*[one(i) for i in range(20)]):
        print(line)
asyncio.run(main())
"#;
    let run = under(
        rig,
        &micro(rig),
        python3().to_str().unwrap(),
        &["-c", script, &target()],
    );
    let want: String = (0..20).map(|i| format!("{TARGET_V4} a{i}\n")).collect();
    stdout_is(&run, &want)
}

fn python_requests(rig: &Rig) -> Check {
    let http = rig.http();
    let script = "import sys, requests\n\
                  r = requests.get(sys.argv[1], timeout=15)\n\
                  sys.stdout.write('%d %s' % (r.status_code, r.text))\n";
    let url = http.url_named(REMOTE_NAME, "hello.txt");
    let run = under(
        rig,
        &micro(rig),
        python3().to_str().unwrap(),
        &["-c", script, &url],
    );
    stdout_is(&run, &format!("200 {HELLO_BODY}"))
}

fn node(rig: &Rig) -> Check {
    require("node", "nodejs");
    rig.echo();
    rig.http();
    let script = r#"
const net = require('net'), http = require('http');
const [host, port, hport] = [process.argv[1], +process.argv[2], +process.argv[3]];
const s = net.connect(port, host, () => s.write('node-echo\n'));
let d = '';
s.on('error', e => { console.log('error ' + e.message); process.exit(1); });
s.on('data', c => {
  d += c;
  if (!d.includes('\n')) return;
  console.log('echo=' + d.trim() + ' peer=' + s.remoteAddress);
  s.destroy();
  http.get(`http://${host}:${hport}/hello.txt`, r => {
    let b = ''; r.on('data', c => b += c);
    r.on('end', () => process.stdout.write('http=' + r.statusCode + ' ' + b));
  }).on('error', e => { console.log('error ' + e.message); process.exit(1); });
});
"#;
    let run = under(
        rig,
        &micro(rig),
        "node",
        &["-e", script, &target(), "7", &HTTP_PORT.to_string()],
    );
    stdout_is(
        &run,
        &format!("echo=node-echo peer={TARGET_V4}\nhttp=200 {HELLO_BODY}"),
    )
}

/// `git clone -q <url> <dest>` under the layer; the clone's README must be the fixture's.
fn git_clone(rig: &Rig, url: &str, proxy: &str, name: &str, ssh: Option<String>) -> Check {
    let git = rig.git();
    let out = dest(rig, name);
    let mut c = cmd(
        rig,
        proxy,
        "git",
        ["clone", "-q", url, out.to_str().unwrap()],
    );
    c.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null");
    if let Some(s) = ssh {
        c.env("GIT_SSH_COMMAND", s);
    }
    let run = go(&mut c);
    file_is(&run, &out.join("README"), git.readme.as_bytes())
}

fn git_http(rig: &Rig) -> Check {
    let git = rig.git();
    git_clone(rig, &git.http_url, &micro(rig), "git-http", None)
}

fn git_ssh(rig: &Rig) -> Check {
    let sshd = rig.sshd();
    let bare = rig.http().root.join("repo.git");
    rig.git();
    let url = format!("ssh://root@{TARGET_V4}{}", bare.display());
    let ssh = format!("ssh {}", ssh_opts(&sshd).join(" "));
    git_clone(rig, &url, &dante(rig), "git-ssh", Some(ssh))
}

fn ssh(rig: &Rig) -> Check {
    let sshd = rig.sshd();
    let mut args = sshd.ssh_args(&TARGET_V6.to_string());
    args.push("echo $SSH_CONNECTION".into());
    let run = go(&mut cmd(rig, &dante(rig), "ssh", &args));
    succeeded(&run)?;
    // SSH_CONNECTION: client address, client port, server address, server port.
    let f: Vec<&str> = run.stdout.split_whitespace().collect();
    let from_proxy = "2001:db8:2::1";
    ensure!(
        f.len() == 4 && f[0] == from_proxy && f[2] == TARGET_V6.to_string() && f[3] == "22",
        "sshd should see the proxy host {from_proxy} connecting to [{TARGET_V6}]:22:\n{run}"
    );
    Ok(())
}

fn scp(rig: &Rig) -> Check {
    let sshd = rig.sshd();
    let out = dest(rig, "scp.bin");
    let mut args = vec!["-q".to_string()];
    args.extend(ssh_opts(&sshd));
    args.extend([
        "-P".into(),
        sshd.port.to_string(),
        format!("root@{TARGET_V4}:{}", big_path(rig).display()),
        out.display().to_string(),
    ]);
    let run = go(&mut cmd(rig, &micro(rig), "scp", &args));
    file_is(&run, &out, &big_body())
}

fn rsync(rig: &Rig) -> Check {
    require("rsync", "rsync");
    let sshd = rig.sshd();
    let out = dest(rig, "rsync.bin");
    let e = format!("ssh {} -p {}", ssh_opts(&sshd).join(" "), sshd.port);
    let src = format!("root@{TARGET_V4}:{}", big_path(rig).display());
    let run = under(
        rig,
        &micro(rig),
        "rsync",
        &["-e", &e, &src, out.to_str().unwrap()],
    );
    file_is(&run, &out, &big_body())
}

fn nc(rig: &Rig) -> Check {
    let t = target();
    echo_through(
        rig,
        &micro(rig),
        "nc",
        &["-N", "-w", "5", &t, "7"],
        "nc-echo\n",
    )
}

fn ncat(rig: &Rig) -> Check {
    let t = TARGET_V6.to_string();
    echo_through(
        rig,
        &dante(rig),
        "ncat",
        &["-w", "5", &t, "7"],
        "ncat-echo\n",
    )
}

fn socat(rig: &Rig) -> Check {
    let addr = format!("TCP:{TARGET_V4}:7");
    echo_through(
        rig,
        &micro(rig),
        "socat",
        &["-T", "5", "-", &addr],
        "socat-echo\n",
    )
}

fn psql(rig: &Rig) -> Check {
    require("psql", "postgresql-client");
    let server = rig.postgres();
    let run = under(
        rig,
        &micro(rig),
        "psql",
        &[
            "-X",
            "-h",
            &target(),
            "-p",
            &POSTGRES_PORT.to_string(),
            "-U",
            "postgres",
            "-Atc",
            "select 40+2, inet_client_addr()",
        ],
    );
    server.kill();
    stdout_is(&run, &format!("42|{PROXY_OUT_V4}\n"))
}

fn redis_cli(rig: &Rig) -> Check {
    require("redis-cli", "redis-tools");
    let server = rig.redis_server();
    let url = dante(rig);
    let t = target();
    let port = REDIS_PORT.to_string();
    let redis = |args: &[&str]| {
        let mut all = vec!["-h", t.as_str(), "-p", port.as_str()];
        all.extend_from_slice(args);
        under(rig, &url, "redis-cli", &all)
    };
    stdout_is(&redis(&["SET", "compat", "v1"]), "OK\n")?;
    stdout_is(&redis(&["GET", "compat"]), "v1\n")?;
    let list = redis(&["CLIENT", "LIST"]);
    succeeded(&list)?;
    ensure!(
        list.stdout.contains(&format!("addr={PROXY_OUT_V4}:")),
        "redis should see its client at the proxy host:\n{list}"
    );
    server.kill();
    Ok(())
}

const JAVA_CLIENT: &str = r#"
import java.io.InputStream;
import java.net.HttpURLConnection;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.URL;
import java.nio.charset.StandardCharsets;

public class Client {
    public static void main(String[] a) throws Exception {
        HttpURLConnection c = (HttpURLConnection) new URL(a[0]).openConnection();
        c.setConnectTimeout(15000);
        c.setReadTimeout(15000);
        String body = new String(c.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        System.out.print("http=" + c.getResponseCode() + " " + body);
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress(a[1], Integer.parseInt(a[2])), 15000);
            s.setSoTimeout(15000);
            s.getOutputStream().write("java-echo\n".getBytes(StandardCharsets.US_ASCII));
            byte[] b = new byte[10];
            int n = 0;
            InputStream in = s.getInputStream();
            while (n < b.length) {
                int r = in.read(b, n, b.length - n);
                if (r < 0) break;
                n += r;
            }
            System.out.println("echo=" + new String(b, 0, n, StandardCharsets.US_ASCII).trim());
        }
    }
}
"#;

fn java(rig: &Rig) -> Check {
    require("java", "openjdk-17-jdk-headless");
    rig.echo();
    let http = rig.http();
    let dir = rig.dir().join("java");
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let src = dir.join("Client.java");
    std::fs::write(&src, JAVA_CLIENT).map_err(|e| format!("write {}: {e}", src.display()))?;
    let run = under(
        rig,
        &dante(rig),
        "java",
        &[
            "-XX:TieredStopAtLevel=1",
            "-XX:+UseSerialGC",
            src.to_str().unwrap(),
            &http.url("hello.txt"),
            &target(),
            "7",
        ],
    );
    stdout_is(&run, &format!("http=200 {HELLO_BODY}echo=java-echo\n"))
}

fn lynx(rig: &Rig) -> Check {
    require("lynx", "lynx");
    let url = rig.http().url("hello.txt");
    let run = under(rig, &micro(rig), "lynx", &["-source", &url]);
    stdout_is(&run, HELLO_BODY)
}

fn w3m(rig: &Rig) -> Check {
    require("w3m", "w3m");
    let url = rig.http().url("hello.txt");
    let run = under(rig, &micro(rig), "w3m", &["-dump", &url]);
    stdout_is(&run, HELLO_BODY)
}

fn aria2c(rig: &Rig) -> Check {
    require("aria2c", "aria2");
    let url = rig.http().url("big.bin");
    let dir = dest(rig, "aria2");
    let run = under(
        rig,
        &micro(rig),
        "aria2c",
        &[
            "-q",
            "--async-dns=false",
            "--connect-timeout=10",
            "--timeout=15",
            "--max-tries=1",
            "-d",
            dir.to_str().unwrap(),
            "-o",
            "big.bin",
            &url,
        ],
    );
    file_is(&run, &dir.join("big.bin"), &big_body())
}

fn tokio_client(rig: &Rig) -> Check {
    rig.echo();
    let me = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let addr = format!("{TARGET_V4}:7");
    let mut c = cmd(rig, &micro(rig), &me, [addr.as_str(), "50"]);
    c.env(CHILD_ENV, "tokio");
    let run = go(&mut c);
    succeeded(&run)?;
    stdout_has(&run, &format!("ok=50 of=50 peer={addr}\n"))
}

fn nginx(rig: &Rig) -> Check {
    let curl = require("curl", "curl");
    rig.http();
    let port = 8081;
    let app = rig.nginx_reverse_proxy(&micro(rig), port);
    for path in ["hello.txt", "v6/hello.txt"] {
        let url = format!("http://127.0.0.1:{port}/{path}");
        // curl itself runs without the layer: it talks to nginx on loopback.
        let run = go(&mut rig.client_cmd(&curl, ["-sS", "--fail", "-m", "15", &url]));
        stdout_is(&run, HELLO_BODY)?;
    }
    app.assert_alive();
    Ok(())
}

fn nmap(rig: &Rig) -> Check {
    require("nmap", "nmap");
    rig.echo();
    let ports = format!("7,{CLOSED}");
    let run = under(
        rig,
        &micro(rig),
        "nmap",
        &[
            "-sT",
            "-Pn",
            "-n",
            "-p",
            &ports,
            "--max-retries",
            "1",
            &target(),
        ],
    );
    succeeded(&run)?;
    let state = |port: u16| {
        let want = format!("{port}/tcp");
        run.stdout_lines()
            .iter()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some(want.as_str())).then(|| f.next().unwrap_or("").to_string())
            })
            .unwrap_or_default()
    };
    ensure!(
        state(7) == "open" && state(CLOSED) == "closed",
        "port 7 should be open and port {CLOSED} closed:\n{run}"
    );
    Ok(())
}

fn telnet(rig: &Rig) -> Check {
    require("telnet", "telnet");
    rig.echo();
    // telnet quits when its stdin ends: keep it open until the echo is back.
    let script = format!("(printf 'telnet-echo\\r\\n'; sleep 2) | telnet {TARGET_V4} 7");
    let run = under(rig, &micro(rig), "sh", &["-c", &script]);
    stdout_has(&run, &format!("Connected to {TARGET_V4}."))?;
    stdout_has(&run, "\ntelnet-echo\r\n")?;
    let run = under(
        rig,
        &micro(rig),
        "telnet",
        &[&target(), &CLOSED.to_string()],
    );
    ensure!(
        !run.success() && run.stderr.contains("Connection refused"),
        "a closed port must be refused:\n{run}"
    );
    ensure!(!run.stdout.contains("Connected"), "{run}");
    Ok(())
}

fn openssl(rig: &Rig) -> Check {
    let openssl = require("openssl", "openssl");
    let dir = rig.dir().join("tls");
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
    let gen = go(Command::new(&openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=laysocks-compat",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    succeeded(&gen)?;
    let port = 4433;
    let _server = target_app(
        rig,
        "s_server",
        &openssl,
        [
            OsStr::new("s_server"),
            OsStr::new("-accept"),
            OsStr::new(&port.to_string()),
            OsStr::new("-cert"),
            cert.as_os_str(),
            OsStr::new("-key"),
            key.as_os_str(),
            OsStr::new("-www"),
        ],
        port,
    );
    let connect = format!("{TARGET_V4}:{port}");
    let mut c = cmd(
        rig,
        &dante(rig),
        &openssl,
        ["s_client", "-quiet", "-connect", &connect],
    );
    let run = go_stdin(&mut c, b"GET / HTTP/1.0\r\n\r\n");
    stdout_has(&run, "HTTP/1.0 200 ok")?;
    ensure!(
        run.stderr.contains("CN = laysocks-compat"),
        "s_client should show the server's certificate:\n{run}"
    );
    Ok(())
}

fn whois(rig: &Rig) -> Check {
    require("whois", "whois");
    let server = r#"
import socketserver, sys
class H(socketserver.StreamRequestHandler):
    def handle(self):
        q = self.rfile.readline().strip()
        self.wfile.write(b"compat-whois-answer for " + q + b"\n")
socketserver.TCPServer.allow_reuse_address = True
socketserver.TCPServer((sys.argv[1], 43), H).serve_forever()
"#;
    let _server = target_app(rig, "whoisd", python3(), ["-c", server, &target()], 43);
    let run = under(
        rig,
        &micro(rig),
        "whois",
        &["-h", &target(), "example.test"],
    );
    succeeded(&run)?;
    stdout_has(&run, "compat-whois-answer for example.test")
}

fn apt(rig: &Rig) -> Check {
    let helper = require("/usr/lib/apt/apt-helper", "apt");
    let url = rig.http().url("hello.txt");
    // A directory `_apt` may write to, so that apt's http method really runs as `_apt`
    // (it drops root after the layer was loaded, with danted's credentials to send).
    let (uid, gid) = user_ids("_apt")?;
    std::fs::set_permissions(
        rig.dir(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .map_err(|e| format!("chmod {}: {e}", rig.dir().display()))?;
    let dir = dest(rig, "apt");
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
        .map_err(|e| format!("chown {}: {e}", dir.display()))?;
    let out = dir.join("hello.txt");
    let run = go(&mut cmd(
        rig,
        &dante(rig),
        &helper,
        ["download-file", url.as_str(), out.to_str().unwrap()],
    ));
    ensure!(
        !run.stderr.contains("unsandboxed"),
        "apt's method should run as _apt:\n{run}"
    );
    file_is(&run, &out, HELLO_BODY.as_bytes())
}

/// The uid and gid of a system user, from /etc/passwd.
fn user_ids(name: &str) -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
        })
        .ok_or_else(|| format!("no user {name} in /etc/passwd (Debian package apt creates _apt)"))
}

fn lftp(rig: &Rig) -> Check {
    require("lftp", "lftp");
    let root = rig.http().root;
    let port = 2121;
    let _server = target_app(
        rig,
        "ftpd",
        python3(),
        [
            OsStr::new("-m"),
            OsStr::new("pyftpdlib"),
            OsStr::new("-i"),
            OsStr::new(&target()),
            OsStr::new("-p"),
            OsStr::new(&port.to_string()),
            OsStr::new("-d"),
            root.as_os_str(),
        ],
        port,
    );
    let out = dest(rig, "lftp.bin");
    let script = format!(
        "set net:max-retries 1; set net:timeout 10; set cmd:fail-exit yes; \
         get ftp://{TARGET_V4}:{port}/big.bin -o {}",
        out.display()
    );
    let run = under(rig, &micro(rig), "lftp", &["-c", &script]);
    file_is(&run, &out, &big_body())
}

fn mosquitto(rig: &Rig) -> Check {
    let broker = require("mosquitto", "mosquitto");
    require("mosquitto_pub", "mosquitto-clients");
    let conf = rig.dir().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener 1883 {TARGET_V4}\nallow_anonymous true\npersistence false\n"),
    )
    .map_err(|e| format!("write {}: {e}", conf.display()))?;
    let _broker = target_app(
        rig,
        "mosquitto",
        broker,
        [OsStr::new("-c"), conf.as_os_str()],
        1883,
    );
    let t = target();
    let topic = "laysocks/compat";
    let run = under(
        rig,
        &micro(rig),
        "mosquitto_pub",
        &["-h", &t, "-t", topic, "-m", "mqtt-payload", "-r", "-q", "1"],
    );
    succeeded(&run)?;
    let run = under(
        rig,
        &micro(rig),
        "mosquitto_sub",
        &["-h", &t, "-t", topic, "-C", "1", "-W", "10"],
    );
    stdout_is(&run, "mqtt-payload\n")
}

fn npm(rig: &Rig) -> Check {
    require("npm", "npm");
    let http = rig.http();
    // A minimal packument (the registry's document for one package), served as a file.
    let doc = format!(
        r#"{{"name":"compat-pkg","dist-tags":{{"latest":"1.2.3"}},"versions":{{"1.2.3":{{"name":"compat-pkg","version":"1.2.3","dist":{{"tarball":"{}"}}}}}}}}"#,
        http.url("compat-pkg-1.2.3.tgz")
    );
    let path = http.root.join("compat-pkg");
    std::fs::write(&path, doc).map_err(|e| format!("write {}: {e}", path.display()))?;
    let cache = dest(rig, "npm-cache");
    let registry = http.url("");
    let run = under(
        rig,
        &micro(rig),
        "npm",
        &[
            "view",
            "compat-pkg",
            "version",
            "--registry",
            &registry,
            "--cache",
            cache.to_str().unwrap(),
            "--no-update-notifier",
            "--fetch-retries",
            "0",
            "--fetch-timeout",
            "15000",
        ],
    );
    stdout_is(&run, "1.2.3\n")
}

fn perl(rig: &Rig) -> Check {
    rig.echo();
    let url = rig.http().url("hello.txt");
    let script = r#"
use IO::Socket::INET; use HTTP::Tiny;
my $s = IO::Socket::INET->new(PeerAddr => $ARGV[0], PeerPort => 7, Timeout => 15)
    or die "connect: $@";
print $s "perl-echo\n";
my $l = <$s>;
print "echo=$l";
close $s;
my $r = HTTP::Tiny->new(timeout => 15)->get($ARGV[1]);
print "http=$r->{status} $r->{content}";
"#;
    let run = under(rig, &micro(rig), "perl", &["-e", script, &target(), &url]);
    stdout_is(&run, &format!("echo=perl-echo\nhttp=200 {HELLO_BODY}"))
}

fn ruby(rig: &Rig) -> Check {
    require("ruby", "ruby");
    rig.echo();
    let url = rig.http().url_named(REMOTE_NAME, "hello.txt");
    let script = r#"
require 'socket'
require 'net/http'
s = TCPSocket.new(ARGV[0], 7, connect_timeout: 15)
s.write("ruby-echo\n")
puts "echo=#{s.gets.chomp} peer=#{s.remote_address.inspect_sockaddr}"
s.close
r = Net::HTTP.get_response(URI(ARGV[1]))
print "http=#{r.code} #{r.body}"
"#;
    let run = under(rig, &micro(rig), "ruby", &["-e", script, &target(), &url]);
    stdout_is(
        &run,
        &format!("echo=ruby-echo peer={TARGET_V4}:7\nhttp=200 {HELLO_BODY}"),
    )
}

fn go_static(rig: &Rig) -> Check {
    let gc = laysocks_testkit::golang::go_build("guardclient", true);
    let http = rig.http();
    let hello = laysocks_testkit::golang::fnv1a64_hex(HELLO_BODY.as_bytes());
    let big = laysocks_testkit::golang::fnv1a64_hex(&big_body());
    let gc = gc.to_str().unwrap();
    let (hello_len, big_len) = (HELLO_BODY.len().to_string(), big_body().len().to_string());
    let run = under(
        rig,
        &dante(rig),
        gc,
        &[
            "http",
            "200",
            "20",
            &http.url("hello.txt"),
            &hello_len,
            &hello,
        ],
    );
    stdout_has(&run, "http ok=200 bad=0\n")?;
    let run = under(
        rig,
        &dante(rig),
        gc,
        &["http", "2", "2", &http.url("big.bin"), &big_len, &big],
    );
    stdout_has(&run, "http ok=2 bad=0\n")?;
    succeeded(&run)
}

fn busybox_wget(rig: &Rig) -> Check {
    let bb = require("/bin/busybox", "busybox-static");
    let http = rig.http();
    let out = dest(rig, "busybox.bin");
    let url = http.url_named(laysocks_testkit::TARGET_NAME, "big.bin");
    let run = under(
        rig,
        &micro(rig),
        bb.to_str().unwrap(),
        &["wget", "-O", out.to_str().unwrap(), &url],
    );
    file_is(&run, &out, &big_body())
}
