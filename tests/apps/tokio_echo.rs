//! A tokio client for the event-loop tests: N concurrent connections from one
//! current-thread runtime (epoll, edge-triggered), each sending a line and reading it back
//! from an echo server. Prints `ok=<n> of=<N> peer=<first peer>` and `maxlag_ms=<m>`, the
//! longest the runtime went without running a 1 ms ticker — a connect that blocked the
//! thread would show up there.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub fn main() {
    let mut args = std::env::args().skip(1);
    let addr: String = args.next().expect("usage: tokio_echo HOST:PORT N");
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(50);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let ticker = tokio::spawn(async {
            let mut worst = Duration::ZERO;
            loop {
                let t = Instant::now();
                tokio::time::sleep(Duration::from_millis(1)).await;
                worst = worst.max(t.elapsed().saturating_sub(Duration::from_millis(1)));
                if worst > Duration::from_secs(3600) {
                    return worst;
                }
                LAG.with(|l| l.set(worst));
            }
        });
        let mut tasks = Vec::new();
        for i in 0..n {
            let addr = addr.clone();
            tasks.push(tokio::spawn(async move {
                let mut s = TcpStream::connect(&addr).await.ok()?;
                let peer = s.peer_addr().ok()?;
                let msg = format!("tokio {i}\n");
                s.write_all(msg.as_bytes()).await.ok()?;
                let mut back = vec![0u8; msg.len()];
                s.read_exact(&mut back).await.ok()?;
                (back == msg.as_bytes()).then_some(peer)
            }));
        }
        let mut ok = 0;
        let mut first = None;
        for t in tasks {
            if let Ok(Some(peer)) = t.await {
                ok += 1;
                first.get_or_insert(peer);
            }
        }
        let lag = LAG.with(|l| l.get());
        ticker.abort();
        let peer = first.map(|p| p.to_string()).unwrap_or_default();
        println!("ok={ok} of={n} peer={peer}");
        println!("maxlag_ms={}", lag.as_millis());
    });
}

thread_local! {
    static LAG: std::cell::Cell<Duration> = const { std::cell::Cell::new(Duration::ZERO) };
}
