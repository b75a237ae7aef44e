//! Real applications with their own event loops (nginx, Redis, PostgreSQL), started in
//! the rig's namespaces for end-to-end tests of the layer.
//!
//! Why these: each drives connects its own way. nginx registers an upstream socket in
//! epoll *before* it calls `connect()`, hiredis (`redis-cli`) and libpq (`psql`) do a
//! non-blocking connect and wait in `poll()`. Small C probes cover the mechanisms; these
//! show that unmodified, widely deployed programs agree.
//!
//! Unlike the shared servers in `servers.rs`, an [`App`] belongs to one test: it is
//! killed (its process group, by id) when the handle drops, also while a failing test
//! unwinds, and again by the rig's own drop should anything be left.

use std::ffi::OsStr;
use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::netns::{Rig, TARGET_V4, TARGET_V6};
use crate::servers::HTTP_PORT;
use crate::util::{self, require, run_bounded};

/// Where the Redis server listens in the target.
pub const REDIS_PORT: u16 = 6379;
/// Where PostgreSQL listens in the target.
pub const POSTGRES_PORT: u16 = 5432;

/// A long-running process of one test; killed when dropped.
pub struct App<'r> {
    rig: &'r Rig,
    index: usize,
    label: String,
}

impl App<'_> {
    /// The process id of what was started (`ip netns exec` execs the program).
    pub fn pid(&self) -> u32 {
        self.rig.procs.lock().unwrap()[self.index].child.id()
    }

    /// The last lines of its output (stdout and stderr share one log).
    pub fn log(&self) -> String {
        self.rig.log_of(self.index)
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Panics with its log if it has exited.
    #[track_caller]
    pub fn assert_alive(&self) {
        self.rig.check_alive(self.index);
    }

    /// Waits (bounded) until it listens on TCP `addr:port` in namespace `ns`; panics with
    /// its log if it exits or the deadline passes.
    pub fn wait_listening(&self, ns: &str, addr: IpAddr, port: u16) {
        self.rig.wait_listening(ns, addr, port, Some(self.index));
    }

    /// Kills its process group (by the group id we gave it) and reaps it.
    pub fn kill(&self) {
        let mut procs = self.rig.procs.lock().unwrap_or_else(|e| e.into_inner());
        let child = &mut procs[self.index].child;
        if let Ok(None) = child.try_wait() {
            util::kill_group(child);
        }
    }
}

impl Drop for App<'_> {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Rig {
    /// Starts `program args…` in the background in namespace `ns` (its own process group,
    /// output in `<label>.log` in the rig's dir).
    pub fn spawn_app<S: AsRef<OsStr>>(
        &self,
        ns: &str,
        label: &str,
        program: impl AsRef<OsStr>,
        args: impl IntoIterator<Item = S>,
    ) -> App<'_> {
        let mut cmd = Command::new(program);
        cmd.args(args);
        let index = self.spawn_server(ns, label, cmd);
        App {
            rig: self,
            index,
            label: label.to_string(),
        }
    }

    /// Starts `laysocks -x <proxy_url> args…` in the background in the client namespace.
    pub fn spawn_under_laysocks<S: AsRef<OsStr>>(
        &self,
        label: &str,
        proxy_url: &str,
        args: impl IntoIterator<Item = S>,
    ) -> App<'_> {
        let mut all: Vec<std::ffi::OsString> = vec!["-x".into(), proxy_url.into()];
        all.extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self.spawn_app(self.client_ns(), label, util::laysocks_bin(), all)
    }

    /// nginx under the layer in the client namespace, listening on `127.0.0.1:port` and
    /// reverse-proxying to the target's HTTP server (start [`Rig::http`] first): `/v6/…`
    /// to its IPv6 address, everything else to its IPv4 address. Every request opens a new upstream connection (no keepalive), so each one
    /// is a handshake inside nginx's epoll loop. The master process stays in the
    /// foreground (`daemon off`) with one worker, so killing its group ends both.
    pub fn nginx_reverse_proxy(&self, proxy_url: &str, port: u16) -> App<'_> {
        let nginx = require("nginx", "nginx-light");
        let dir = self.dir().join(format!("nginx-{port}"));
        for sub in ["", "logs", "tmp"] {
            fs::create_dir_all(dir.join(sub))
                .unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.join(sub).display()));
        }
        let d = dir.display();
        let conf = format!(
            "daemon off;\n\
             master_process on;\n\
             worker_processes 1;\n\
             user root;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/logs/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n\
             \x20   access_log {d}/logs/access.log;\n\
             \x20   client_body_temp_path {d}/tmp/body;\n\
             \x20   proxy_temp_path {d}/tmp/proxy;\n\
             \x20   fastcgi_temp_path {d}/tmp/fastcgi;\n\
             \x20   uwsgi_temp_path {d}/tmp/uwsgi;\n\
             \x20   scgi_temp_path {d}/tmp/scgi;\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       location / {{\n\
             \x20           proxy_pass http://{TARGET_V4}:{HTTP_PORT};\n\
             \x20           proxy_connect_timeout 10s;\n\
             \x20       }}\n\
             \x20       location /v6/ {{\n\
             \x20           proxy_pass http://[{TARGET_V6}]:{HTTP_PORT}/;\n\
             \x20           proxy_connect_timeout 10s;\n\
             \x20       }}\n\
             \x20   }}\n\
             }}\n"
        );
        let conf_path = dir.join("nginx.conf");
        fs::write(&conf_path, conf).expect("write nginx.conf");
        let app = self.spawn_under_laysocks(
            "nginx",
            proxy_url,
            [
                OsStr::new("-q"),
                OsStr::new("--"),
                nginx.as_os_str(),
                OsStr::new("-e"),
                dir.join("logs/error.log").as_os_str(),
                OsStr::new("-p"),
                dir.as_os_str(),
                OsStr::new("-c"),
                conf_path.as_os_str(),
            ],
        );
        app.wait_listening(self.client_ns(), IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        app
    }

    /// `redis-server` in the target on `0.0.0.0:6379`, without persistence.
    pub fn redis_server(&self) -> App<'_> {
        let server = require("redis-server", "redis-server");
        let app = self.spawn_app(
            self.target_ns(),
            "redis-server",
            server,
            [
                "--port",
                &REDIS_PORT.to_string(),
                "--bind",
                "0.0.0.0",
                "--protected-mode",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                &self.dir().display().to_string(),
            ],
        );
        app.wait_listening(
            self.target_ns(),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            REDIS_PORT,
        );
        app
    }

    /// A fresh PostgreSQL cluster in the rig's dir, run as the `postgres` user in the
    /// target on `203.0.113.2:5432`, trusting host connections from 203.0.113.0/24 (the
    /// proxy host's side). Its Unix socket lives in the rig's dir, not `/run/postgresql`.
    pub fn postgres(&self) -> App<'_> {
        let bin = postgres_bin_dir();
        let setpriv = require("setpriv", "util-linux");
        let (uid, gid) = postgres_ids();
        // The server runs as `postgres`, which must be able to walk into the rig's dir
        // whatever the umask was when it was made.
        fs::set_permissions(self.dir(), fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", self.dir().display()));
        let base = self.dir().join("pg");
        let data = base.join("data");
        let sock = base.join("sock");
        for d in [&base, &sock] {
            fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
            std::os::unix::fs::chown(d, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", d.display()));
        }
        let as_postgres = |program: &Path| {
            let mut cmd = Command::new(&setpriv);
            cmd.args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(program)
            .current_dir(&base);
            cmd
        };
        let mut initdb = as_postgres(&bin.join("initdb"));
        initdb
            .args([
                "--no-sync",
                "--auth-local=trust",
                "--auth-host=trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "-D",
            ])
            .arg(&data);
        run_bounded(&mut initdb, None, Duration::from_secs(120)).assert_success();
        let hba = data.join("pg_hba.conf");
        let mut text = fs::read_to_string(&hba).expect("read pg_hba.conf");
        text.push_str("host all all 203.0.113.0/24 trust\n");
        fs::write(&hba, text).expect("write pg_hba.conf");
        let program = bin.join("postgres");
        let app = self.spawn_app(
            self.target_ns(),
            "postgres",
            &setpriv,
            [
                OsStr::new("--reuid=postgres"),
                OsStr::new("--regid=postgres"),
                OsStr::new("--init-groups"),
                OsStr::new("--"),
                program.as_os_str(),
                OsStr::new("-D"),
                data.as_os_str(),
                OsStr::new("-k"),
                sock.as_os_str(),
                OsStr::new("-p"),
                OsStr::new(&POSTGRES_PORT.to_string()),
                OsStr::new("-c"),
                OsStr::new(&format!("listen_addresses={TARGET_V4}")),
                OsStr::new("-c"),
                OsStr::new("fsync=off"),
                OsStr::new("-c"),
                OsStr::new("logging_collector=off"),
                // Shared memory segments in the data dir (removed with the rig), not in
                // /dev/shm, where a killed server would leave them behind.
                OsStr::new("-c"),
                OsStr::new("dynamic_shared_memory_type=mmap"),
            ],
        );
        app.wait_listening(self.target_ns(), IpAddr::V4(TARGET_V4), POSTGRES_PORT);
        app
    }
}

/// `/usr/lib/postgresql/<newest>/bin`, where Debian keeps `initdb` and `postgres`.
fn postgres_bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file()).then_some((v, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "no /usr/lib/postgresql/*/bin/initdb: install the Debian package `postgresql` \
             (apt-get install postgresql)"
        ),
    }
}

/// The uid and gid of the `postgres` system user (the `postgresql` package creates it).
fn postgres_ids() -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[0] == "postgres")
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
        })
        .unwrap_or_else(|| {
            panic!(
                "no `postgres` user: install the Debian package `postgresql` \
                 (apt-get install postgresql)"
            )
        })
}
