//! What the program under the layer must see for one layer-fuzz input, from the protocol
//! oracle (`laysocks_proto::fuzzing::client_oracle`, a plain parser written apart from the
//! engine) and DESIGN §3.5's errno mapping. Shared by the cargo-fuzz target
//! (`fuzz_targets/layer.rs`) and the corpus replay (`tests/layer_fuzz.rs`) through
//! `#[path]`, because the testkit that runs the harness does not depend on the engine.

use laysocks_proto::fuzzing::{client_expected_output, client_oracle, Outcome};
use laysocks_proto::{
    Command, Credentials, DomainName, Error, ErrorKind, Host, ReplyCode, TargetAddr,
};
use laysocks_testkit::layerfuzz::{End, Expect, Expected, Input, Target, PASS, TARGET_PORT, USER};
use laysocks_testkit::{REMOTE_NAME, TARGET_V4, TARGET_V6};

/// The request's destination for each target kind.
pub fn target_addr(t: Target) -> TargetAddr {
    let host = match t {
        Target::V4 => Host::V4(TARGET_V4),
        Target::V6 => Host::V6(TARGET_V6),
        Target::Name => Host::Domain(DomainName::new(REMOTE_NAME.as_bytes()).expect("valid")),
    };
    TargetAddr {
        host,
        port: TARGET_PORT,
    }
}

/// DESIGN §3.5: the errno a direct connect would have given. For a name the proxy
/// resolves, "general failure" and "host unreachable" both mean the name led nowhere.
pub fn errno_for(e: Error, named: bool) -> i32 {
    if named
        && matches!(
            e,
            Error::Reply(ReplyCode::GeneralFailure | ReplyCode::HostUnreachable)
        )
    {
        return libc::EHOSTUNREACH;
    }
    match e.kind() {
        ErrorKind::ConnectionRefused => libc::ECONNREFUSED,
        ErrorKind::NetworkUnreachable => libc::ENETUNREACH,
        ErrorKind::HostUnreachable => libc::EHOSTUNREACH,
        ErrorKind::TimedOut => libc::ETIMEDOUT,
        ErrorKind::AccessDenied => libc::EACCES,
        ErrorKind::Unsupported => libc::EAFNOSUPPORT,
        ErrorKind::ProtocolError => libc::EPROTO,
    }
}

/// The expectation for `input`.
pub fn expect(input: &Input) -> Expect {
    let target = target_addr(input.target);
    let creds = input
        .credentials
        .then(|| Credentials::new(USER.as_bytes(), PASS.as_bytes()).expect("valid"));
    let s = &input.stream;
    let (outcome, chose_auth) = client_oracle(s, input.credentials);
    let (full, greeting, auth_end) =
        client_expected_output(Command::Connect, &target, creds.as_ref(), chose_auth);
    // How far the client gets: each message goes out only after the answer it depends on.
    let method_ok = s.len() >= 2 && s[0] == 5 && (s[1] == 0 || (s[1] == 2 && input.credentials));
    let sends = if !method_ok {
        greeting
    } else if chose_auth && !(s.len() >= 4 && s[2] == 1 && s[3] == 0) {
        auth_end
    } else {
        full.len()
    };
    let outcome = match outcome {
        Outcome::Done { consumed, .. } => Expected::Connected {
            tail: s[consumed..].to_vec(),
        },
        Outcome::Failed(e) => Expected::Fails {
            errno: errno_for(e, input.target == Target::Name),
        },
        Outcome::Incomplete => match input.end {
            // EOF in the handshake is ECONNRESET (the proxy hung up), as is a reset.
            End::Fin | End::Rst => Expected::Fails {
                errno: libc::ECONNRESET,
            },
            End::Hold => Expected::TimesOut,
        },
    };
    Expect {
        sends: full[..sends].to_vec(),
        outcome,
    }
}

/// The same bytes as an input of the engine's own `client` check (target kind and
/// credentials in byte 0, the seed in byte 1), so that the fuzzer's coverage — which
/// cannot see into the child process — follows the engine code the layer runs.
pub fn engine_input(input: &Input) -> Vec<u8> {
    let kind = match input.target {
        Target::V4 => 0,
        Target::V6 => 1,
        Target::Name => 2,
    };
    let mut v = vec![kind | (u8::from(input.credentials) << 2), input.seed];
    v.extend_from_slice(&input.stream);
    v
}
