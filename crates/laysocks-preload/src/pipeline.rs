//! Pipelined handshakes (opt-in `pipeline`), and what the layer learns about proxies.
//!
//! Pipelining writes the greeting, the RFC 1929 request and the CONNECT request at once
//! (see `laysocks_proto::ClientHandshake::pipelined`), saving one round trip without
//! authentication and two with it. Some proxies cannot take it: microsocks reads the
//! greeting and drops what came with it, then waits forever for a request it already
//! threw away. Such a proxy is recognised by the handshake stalling (or the connection
//! dropping) within a short patience; the layer then reconnects the same socket and
//! runs the ordinary handshake within the same overall deadline, and remembers the proxy
//! for the rest of the process, so the program sees nothing but one slower connect.

use std::net::SocketAddr;

use laysocks_proto::{ClientHandshake, Command, TargetAddr};

use crate::driver::Failure;
use crate::fdtable::SpinLock;
use crate::layer;

/// Proxies seen to stall on a pipelined handshake (few: one per configured address).
static REFUSERS: SpinLock<Vec<SocketAddr>> = SpinLock::new(Vec::new());

/// Whether to pipeline the handshake with `proxy`.
pub fn wanted(proxy: &SocketAddr) -> bool {
    layer::get().config.pipeline && !REFUSERS.with(|r| r.contains(proxy))
}

/// Remembers that `proxy` does not take pipelined handshakes.
pub fn remember_refuser(proxy: SocketAddr) {
    REFUSERS.with(|r| {
        if !r.contains(&proxy) && r.len() < 64 {
            r.push(proxy);
        }
    });
}

/// How long a pipelined handshake may go without finishing before we assume the proxy
/// stalled on it, given the round trip the TCP connect to the proxy took: four round
/// trips plus 250 ms for the proxy's own connect to the target, and never more than a
/// third of the connect timeout (the ordinary handshake needs the rest).
pub fn patience_ms(proxy_rtt_ms: u64) -> u64 {
    let third = u64::from(layer::get().config.connect_timeout_ms) / 3;
    (4 * proxy_rtt_ms + 250).min(third).max(50)
}

/// Whether a failure of a pipelined attempt looks like the proxy choking on it (rather
/// than a real answer such as "connection refused", which is final either way).
pub fn is_stall(f: &Failure) -> bool {
    matches!(
        f,
        Failure::Timeout { .. } | Failure::ProxyClosed(_) | Failure::Broken(..) | Failure::Io(_)
    )
}

/// The engine for a CONNECT to `target` through `proxy`.
pub fn engine(target: &TargetAddr, pipelined: bool) -> ClientHandshake {
    let creds = layer::get().credentials.as_ref();
    if pipelined {
        ClientHandshake::pipelined(Command::Connect, target, creds)
    } else {
        ClientHandshake::new(target, creds)
    }
}
