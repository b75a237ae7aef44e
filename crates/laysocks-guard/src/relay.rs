//! The proxy's UDP relay addresses, learnt by asking the proxy.
//!
//! The preload layer carries a libc program's UDP through SOCKS5 UDP ASSOCIATE: it asks
//! the proxy for a relay and sends its wrapped datagrams to the address in the reply
//! (BND.ADDR, RFC 1928 §6, §7). That address need not be one of the proxy's configured
//! addresses: a dual-stack proxy reached over IPv6 may relay on IPv4, or on another
//! interface. Those datagrams leave the program through `sendto`/`sendmsg`, so the
//! guard traps them too, and must tell them from UDP that would bypass the proxy.
//!
//! The guard cannot see the preload layer's ASSOCIATE reply (it is read by the program
//! from its own TCP connection), so it asks the proxy the same question: a UDP ASSOCIATE
//! from the supervisor (greeting, RFC 1929 username/password when configured, ASSOCIATE
//! for `0.0.0.0:0`), reads BND.ADDR (`0.0.0.0`/`::` meaning the proxy's own address,
//! §6) and closes the connection, which ends that association (§7). A relay is on the
//! proxy's side, so letting datagrams to a relay IP go as they are sends nothing
//! anywhere but to the proxy host — as far as the proxy's word goes, which is what the
//! preload layer trusts too.
//!
//! The answer is cached (IPs only: the relay port differs per association). An unknown
//! destination asks again at most once per [`RETRY_MS`], so UDP to ordinary hosts does
//! not hammer the proxy, and a proxy that refuses UDP ASSOCIATE (or does not speak
//! SOCKS5) is remembered and never asked again. One probe runs at a time; workers that
//! need one meanwhile wait for its result. Each probe is bounded by `connect_timeout_ms`.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::Duration;

use laysocks_config::net::canonical;
use laysocks_config::LayerConfig;
use laysocks_proto::{ClientHandshake, ClientStatus, Command, Credentials, TargetAddr};
use laysocks_sys::time;

/// How long an unknown destination waits before the proxy is asked again.
pub const RETRY_MS: u64 = 30_000;
/// The most relay IPs kept (a proxy has a handful of addresses at most).
const MAX_RELAYS: usize = 16;
/// The most proxy addresses asked per probe.
const MAX_ASKED: usize = 4;

/// What is known about the relays of one list of proxy addresses.
#[derive(Debug, Default)]
struct Cache {
    proxies: Vec<SocketAddr>,
    relays: Vec<IpAddr>,
    probed_ms: Option<u64>,
    no_udp: bool,
}

/// The result of asking the proxy.
#[derive(Debug, PartialEq, Eq)]
enum Probe {
    /// Relay IPs (canonical), from every proxy address that answered.
    Relays(Vec<IpAddr>),
    /// The proxy answered and refused (or is not SOCKS5): asking again will not help.
    Refused,
    /// The proxy could not be reached or did not answer in time.
    Unreachable,
}

impl Cache {
    /// Forgets everything when the proxy list is another one.
    fn for_proxies(&mut self, proxies: &[SocketAddr]) {
        if self.proxies != proxies {
            *self = Cache {
                proxies: proxies.to_vec(),
                ..Cache::default()
            };
        }
    }

    fn known(&self, ip: IpAddr) -> bool {
        self.relays.contains(&ip)
    }

    /// Whether asking the proxy now is allowed.
    fn may_probe(&self, now_ms: u64) -> bool {
        !self.no_udp
            && self
                .probed_ms
                .is_none_or(|t| now_ms.saturating_sub(t) >= RETRY_MS)
    }

    fn learn(&mut self, now_ms: u64, probe: Probe) {
        self.probed_ms = Some(now_ms);
        match probe {
            Probe::Relays(ips) => {
                for ip in ips {
                    if !self.relays.contains(&ip) && self.relays.len() < MAX_RELAYS {
                        self.relays.push(ip);
                    }
                }
            }
            Probe::Refused => self.no_udp = self.relays.is_empty(),
            Probe::Unreachable => {}
        }
    }
}

static CACHE: Mutex<Cache> = Mutex::new(Cache {
    proxies: Vec::new(),
    relays: Vec::new(),
    probed_ms: None,
    no_udp: false,
});
/// Held for the length of a probe: one at a time.
static PROBING: Mutex<()> = Mutex::new(());

fn cache() -> std::sync::MutexGuard<'static, Cache> {
    CACHE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether a datagram starts like one wrapped for a relay (RFC 1928 §7: RSV `00 00`,
/// FRAG 0 — the preload layer never fragments — and ATYP 1, 3 or 4).
pub fn looks_wrapped(data: &[u8]) -> bool {
    data.len() >= 4 && data[..3] == [0, 0, 0] && matches!(data[3], 1 | 3 | 4)
}

/// Whether `ip` is one of the proxy's UDP relays. With `may_ask`, the proxy is asked if
/// the IP is not known yet and the last question is older than [`RETRY_MS`].
pub fn is_relay(
    cfg: &LayerConfig,
    credentials: Option<&Credentials>,
    ip: IpAddr,
    may_ask: bool,
) -> bool {
    let ip = canonical(ip);
    {
        let mut c = cache();
        c.for_proxies(&cfg.proxy_addrs);
        if c.known(ip) {
            return true;
        }
        if !may_ask || !c.may_probe(time::now_ms()) {
            return false;
        }
    }
    let _one = PROBING.lock().unwrap_or_else(|p| p.into_inner());
    // Another worker may have asked while this one waited.
    {
        let c = cache();
        if c.known(ip) {
            return true;
        }
        if !c.may_probe(time::now_ms()) {
            return false;
        }
    }
    let probe = probe(
        &cfg.proxy_addrs,
        credentials,
        u64::from(cfg.connect_timeout_ms),
    );
    let mut c = cache();
    c.for_proxies(&cfg.proxy_addrs);
    c.learn(time::now_ms(), probe);
    c.known(ip)
}

/// Asks each proxy address (at most [`MAX_ASKED`]) for a relay, all within `timeout_ms`.
fn probe(proxies: &[SocketAddr], credentials: Option<&Credentials>, timeout_ms: u64) -> Probe {
    let deadline = time::now_ms() + timeout_ms.max(1);
    let mut found = Vec::new();
    let mut refused = false;
    for proxy in proxies.iter().take(MAX_ASKED) {
        match associate(*proxy, credentials, deadline) {
            Ok(ip) => {
                if !found.contains(&ip) {
                    found.push(ip);
                }
            }
            Err(Probe::Refused) => refused = true,
            Err(_) => {}
        }
    }
    if !found.is_empty() {
        Probe::Relays(found)
    } else if refused {
        Probe::Refused
    } else {
        Probe::Unreachable
    }
}

/// Time left until `deadline` (monotonic ms), `None` once it has passed.
fn left(deadline: u64) -> Option<Duration> {
    let now = time::now_ms();
    (now < deadline).then(|| Duration::from_millis(deadline - now))
}

/// One UDP ASSOCIATE with `proxy`: the relay's IP (canonical). The connection closes on
/// return, which ends the association (RFC 1928 §7).
fn associate(
    proxy: SocketAddr,
    credentials: Option<&Credentials>,
    deadline: u64,
) -> Result<IpAddr, Probe> {
    let t = left(deadline).ok_or(Probe::Unreachable)?;
    let mut s = TcpStream::connect_timeout(&proxy, t).map_err(|_| Probe::Unreachable)?;
    let _ = s.set_nodelay(true);
    let from = TargetAddr::from(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
    let mut hs = ClientHandshake::with_command(Command::UdpAssociate, &from, credentials);
    let mut buf = [0u8; 512];
    // Bounded: every turn moves bytes or ends; the deadline bounds each wait.
    for _ in 0..1000 {
        match hs.status() {
            ClientStatus::Done(bound) => {
                let relay = bound.to_socket_addr().ok_or(Probe::Refused)?.ip();
                let relay = canonical(relay);
                return Ok(if relay.is_unspecified() {
                    canonical(proxy.ip())
                } else {
                    relay
                });
            }
            ClientStatus::Failed(_) => return Err(Probe::Refused),
            ClientStatus::NeedWrite => {
                let t = left(deadline).ok_or(Probe::Unreachable)?;
                s.set_write_timeout(Some(t))
                    .map_err(|_| Probe::Unreachable)?;
                match s.write(hs.pending_output()) {
                    Ok(0) | Err(_) => return Err(Probe::Unreachable),
                    Ok(n) => hs.consume_output(n),
                }
            }
            ClientStatus::NeedRead => {
                let t = left(deadline).ok_or(Probe::Unreachable)?;
                s.set_read_timeout(Some(t))
                    .map_err(|_| Probe::Unreachable)?;
                let want = hs.bytes_needed().clamp(1, buf.len());
                match s.read(&mut buf[..want]) {
                    // A hang-up may be load or a restart: asked again later.
                    Ok(0) => return Err(Probe::Unreachable),
                    Ok(n) => {
                        if hs.handle_input(&buf[..n]).is_err() {
                            return Err(Probe::Refused);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => return Err(Probe::Unreachable),
                }
            }
        }
    }
    Err(Probe::Unreachable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn only_wrapped_datagrams_ask() {
        assert!(looks_wrapped(&[0, 0, 0, 1, 203, 0, 113, 2, 0, 7, b'x']));
        assert!(looks_wrapped(&[0, 0, 0, 3, 4]));
        assert!(
            !looks_wrapped(&[0, 0, 1, 1, 203, 0, 113, 2, 0, 7]),
            "a fragment"
        );
        assert!(!looks_wrapped(&[0x12, 0x34, 1, 0]), "a DNS query");
        assert!(!looks_wrapped(&[0, 0, 0]));
    }

    #[test]
    fn retries_at_most_every_30_s_and_remembers_a_refusal() {
        let p: SocketAddr = "[2001:db8:1::1]:1080".parse().unwrap();
        let relay: IpAddr = "198.51.100.1".parse().unwrap();
        let mut c = Cache::default();
        c.for_proxies(&[p]);
        assert!(c.may_probe(1_000));
        c.learn(1_000, Probe::Unreachable);
        assert!(!c.may_probe(1_000 + RETRY_MS - 1));
        assert!(c.may_probe(1_000 + RETRY_MS));
        c.learn(40_000, Probe::Relays(vec![relay]));
        assert!(c.known(relay));
        c.learn(80_000, Probe::Refused);
        assert!(!c.no_udp, "a proxy that once relayed is not written off");
        c.for_proxies(&["[2001:db8:1::1]:1081".parse().unwrap()]);
        assert!(!c.known(relay), "another proxy list forgets");
        c.learn(90_000, Probe::Refused);
        assert!(!c.may_probe(90_000 + 10 * RETRY_MS));
    }

    /// A one-shot SOCKS5 server on loopback: no-auth, replies to UDP ASSOCIATE with `bnd`.
    fn server(bnd: [u8; 4]) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let at = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut greeting = [0u8; 3];
            s.read_exact(&mut greeting).unwrap();
            assert_eq!(greeting, [5, 1, 0]);
            s.write_all(&[5, 0]).unwrap();
            let mut req = [0u8; 10];
            s.read_exact(&mut req).unwrap();
            assert_eq!(
                req,
                [5, 3, 0, 1, 0, 0, 0, 0, 0, 0],
                "UDP ASSOCIATE 0.0.0.0:0"
            );
            let mut reply = vec![5, 0, 0, 1];
            reply.extend_from_slice(&bnd);
            reply.extend_from_slice(&4000u16.to_be_bytes());
            s.write_all(&reply).unwrap();
        });
        at
    }

    #[test]
    fn asks_the_proxy_for_its_relay() {
        let p = server([198, 51, 100, 1]);
        assert_eq!(
            probe(&[p], None, 2_000),
            Probe::Relays(vec!["198.51.100.1".parse().unwrap()])
        );
        // An unspecified BND.ADDR is the proxy's own address (RFC 1928 §6).
        let p = server([0, 0, 0, 0]);
        assert_eq!(
            probe(&[p], None, 2_000),
            Probe::Relays(vec!["127.0.0.1".parse().unwrap()])
        );
    }

    #[test]
    fn a_proxy_that_is_not_socks5_refuses_and_a_closed_port_is_unreachable() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let at = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
            std::thread::sleep(Duration::from_millis(200));
        });
        assert_eq!(probe(&[at], None, 2_000), Probe::Refused);
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        assert_eq!(probe(&[closed], None, 2_000), Probe::Unreachable);
    }
}
