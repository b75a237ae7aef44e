//! Our client against our server, in memory: two engines, two byte pipes, no sockets.
//! The "network" moves a pseudo-random number of bytes per step in each direction, and the
//! client reads only what `bytes_needed()` allows, as the preload driver does.

use crate::fuzzing::Prng;
use crate::testutil::*;
use crate::*;

struct Outcome {
    client: ClientStatus,
    server: ServerStatus,
    /// Bytes the server put after its reply, left unread by the client.
    left_for_app: Vec<u8>,
    /// Bytes the client sent after the handshake, left unread by the server.
    left_for_relay: Vec<u8>,
    seen_credentials: Option<Credentials>,
    request: Option<Request>,
}

/// Run `client` against `server`; the server accepts credentials equal to `valid` and
/// answers every request with `code` and `bound`.
fn run(
    mut client: ClientHandshake,
    mut server: ServerHandshake,
    valid: Option<&Credentials>,
    code: ReplyCode,
    bound: &TargetAddr,
    seed: u64,
) -> Outcome {
    let mut rng = Prng::new(seed);
    let mut c2s: Vec<u8> = Vec::new();
    let mut s2c: Vec<u8> = Vec::new();
    let mut seen = None;
    let mut server_done_sent_app = false;
    let mut client_sent_app = false;
    for _ in 0..10_000 {
        // Client writes a piece of what it has.
        let out = client.pending_output();
        if !out.is_empty() {
            let n = rng.range(1, out.len());
            c2s.extend_from_slice(&out[..n]);
            client.consume_output(n);
        }
        // Server reads what has arrived (it may read more than it needs: it keeps the rest).
        if !c2s.is_empty() {
            match server.handle_input(&c2s) {
                Ok(n) => {
                    c2s.drain(..n);
                }
                Err(_) => c2s.clear(),
            }
        }
        match server.status() {
            ServerStatus::CheckCredentials => {
                let c = server.credentials().unwrap().clone();
                server.accept_credentials(Some(&c) == valid);
                seen = Some(c);
            }
            ServerStatus::Request(_) => server.reply(code, bound),
            ServerStatus::Done if !server_done_sent_app => {
                // The target speaks first: its banner follows the reply immediately.
                s2c.extend_from_slice(b"220 banner\r\n");
                server_done_sent_app = true;
            }
            _ => {}
        }
        let out = server.pending_output();
        if !out.is_empty() {
            let n = rng.range(1, out.len());
            s2c.extend_from_slice(&out[..n]);
            server.consume_output(n);
        }
        // Client reads at most bytes_needed, and at most what has arrived.
        let need = client.bytes_needed();
        if need > 0 && !s2c.is_empty() {
            let n = need.min(s2c.len()).min(rng.range(1, need));
            match client.handle_input(&s2c[..n]) {
                Ok(used) => {
                    assert_eq!(used, n, "an exact read is consumed whole");
                    s2c.drain(..used);
                }
                Err(_) => s2c.clear(),
            }
        }
        if let ClientStatus::Done(_) = client.status() {
            if !client_sent_app {
                c2s.extend_from_slice(b"EHLO\r\n");
                client_sent_app = true;
            }
        }
        let c_final = matches!(
            client.status(),
            ClientStatus::Done(_) | ClientStatus::Failed(_)
        );
        let s_final = matches!(
            server.status(),
            ServerStatus::Done | ServerStatus::Failed(_)
        );
        if c_final && s_final && server.pending_output().is_empty() {
            if matches!(server.status(), ServerStatus::Done) && !server_done_sent_app {
                continue;
            }
            return Outcome {
                client: client.status(),
                server: server.status(),
                left_for_app: s2c,
                left_for_relay: c2s,
                seen_credentials: seen,
                request: server.request(),
            };
        }
        // A failed client closes: the server then sees nothing more (once its answer is
        // written).
        if matches!(client.status(), ClientStatus::Failed(_)) && server.pending_output().is_empty()
        {
            return Outcome {
                client: client.status(),
                server: server.status(),
                left_for_app: s2c,
                left_for_relay: c2s,
                seen_credentials: seen,
                request: server.request(),
            };
        }
    }
    panic!("pair did not settle");
}

#[test]
fn no_auth_every_atyp() {
    for (i, target) in targets().into_iter().enumerate() {
        for bound in targets() {
            let o = run(
                ClientHandshake::new(&target, None),
                ServerHandshake::new(ServerAuth::NoAuth),
                None,
                ReplyCode::Succeeded,
                &bound,
                i as u64,
            );
            assert_eq!(o.client, ClientStatus::Done(bound));
            assert_eq!(o.server, ServerStatus::Done);
            assert_eq!(
                o.request,
                Some(Request {
                    command: Command::Connect,
                    target
                })
            );
            assert_eq!(o.left_for_app, b"220 banner\r\n");
            assert_eq!(o.left_for_relay, b"EHLO\r\n");
        }
    }
}

#[test]
fn user_pass_accepted() {
    let c = creds("alice", "s3cret");
    for auth in [ServerAuth::UserPass, ServerAuth::Either] {
        for (i, target) in targets().into_iter().enumerate() {
            let bound = v4([127, 0, 0, 1], 1080);
            let o = run(
                ClientHandshake::new(&target, Some(&c)),
                ServerHandshake::new(auth),
                Some(&c),
                ReplyCode::Succeeded,
                &bound,
                100 + i as u64,
            );
            assert_eq!(o.client, ClientStatus::Done(bound));
            assert_eq!(o.server, ServerStatus::Done);
            assert_eq!(o.seen_credentials.as_ref(), Some(&c));
            assert_eq!(o.request.unwrap().target, target);
            assert_eq!(o.left_for_app, b"220 banner\r\n");
        }
    }
}

#[test]
fn user_pass_rejected() {
    let good = creds("alice", "s3cret");
    let bad = creds("alice", "guess");
    let o = run(
        ClientHandshake::new(&v4([198, 51, 100, 1], 80), Some(&bad)),
        ServerHandshake::new(ServerAuth::UserPass),
        Some(&good),
        ReplyCode::Succeeded,
        &v4([0, 0, 0, 0], 0),
        7,
    );
    assert_eq!(o.client, ClientStatus::Failed(Error::AuthRejected(1)));
    assert_eq!(o.server, ServerStatus::Failed(Error::AuthRejected(1)));
    assert_eq!(o.request, None);
    if let ClientStatus::Failed(e) = o.client {
        assert_eq!(e.kind(), ErrorKind::AccessDenied);
    }
}

#[test]
fn server_wants_auth_client_has_none() {
    let o = run(
        ClientHandshake::new(&v4([198, 51, 100, 1], 80), None),
        ServerHandshake::new(ServerAuth::UserPass),
        None,
        ReplyCode::Succeeded,
        &v4([0, 0, 0, 0], 0),
        8,
    );
    assert_eq!(o.client, ClientStatus::Failed(Error::NoAcceptableMethods));
    assert_eq!(o.server, ServerStatus::Failed(Error::NoAcceptableMethods));
}

#[test]
fn either_without_credentials_is_no_auth() {
    let bound = v6("2001:db8::1", 1);
    let o = run(
        ClientHandshake::new(&dom(b"example.com", 80), None),
        ServerHandshake::new(ServerAuth::Either),
        None,
        ReplyCode::Succeeded,
        &bound,
        9,
    );
    assert_eq!(o.client, ClientStatus::Done(bound));
    assert_eq!(o.seen_credentials, None);
}

#[test]
fn error_replies() {
    for rep in 1..=9u8 {
        let code = ReplyCode::from_u8(rep);
        for seed in 0..4 {
            let o = run(
                ClientHandshake::new(&dom(b"example.com", 80), None),
                ServerHandshake::new(ServerAuth::NoAuth),
                None,
                code,
                &v4([0, 0, 0, 0], 0),
                seed,
            );
            assert_eq!(o.client, ClientStatus::Failed(Error::Reply(code)));
            assert_eq!(o.server, ServerStatus::Failed(Error::Reply(code)));
        }
    }
}

#[test]
fn udp_associate() {
    let relay = v4([127, 0, 0, 1], 40000);
    let o = run(
        ClientHandshake::with_command(Command::UdpAssociate, &v4([0, 0, 0, 0], 0), None),
        ServerHandshake::new(ServerAuth::NoAuth),
        None,
        ReplyCode::Succeeded,
        &relay,
        11,
    );
    assert_eq!(o.client, ClientStatus::Done(relay));
    assert_eq!(o.request.unwrap().command, Command::UdpAssociate);
    // And a datagram round trip through the header codec.
    let mut dgram = [0u8; 64];
    let target = dom(b"dns.example", 53);
    let n = encode_udp_header(&target, &mut dgram).unwrap();
    dgram[n..n + 4].copy_from_slice(b"ping");
    let (h, off) = decode_udp_header(&dgram[..n + 4]).unwrap();
    assert_eq!(h.target, target);
    assert_eq!(&dgram[off..n + 4], b"ping");
}

#[test]
fn many_seeds() {
    let c = creds("u", "p");
    for seed in 0..300u64 {
        let targets = targets();
        let target = targets[(seed % 4) as usize];
        let bound = targets[((seed / 4) % 4) as usize];
        let auth = seed % 2 == 0;
        let o = run(
            ClientHandshake::new(&target, auth.then_some(&c)),
            ServerHandshake::new(ServerAuth::Either),
            Some(&c),
            ReplyCode::Succeeded,
            &bound,
            seed,
        );
        assert_eq!(o.client, ClientStatus::Done(bound), "seed {seed}");
        assert_eq!(o.left_for_app, b"220 banner\r\n", "seed {seed}");
        assert_eq!(o.left_for_relay, b"EHLO\r\n", "seed {seed}");
    }
}
