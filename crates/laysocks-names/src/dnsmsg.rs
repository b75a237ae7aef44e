//! DNS messages without I/O: parse a query, build the response (RFC 1035 §4.1).
//!
//! Why here: the guard's responder answers programs that speak DNS themselves (Go's
//! pure resolver, c-ares, `dig`) from the shared name table, so it must read their
//! queries and write answers a stub resolver accepts. Only the little a stub resolver
//! needs is implemented: one question, A/AAAA/PTR answers, the error codes, EDNS(0)
//! tolerated (RFC 6891), and the truncation rule for relaying larger answers over UDP.
//!
//! Everything is bounds-checked; a query comes from an arbitrary program, so nothing it
//! contains can make a parse read out of bounds, loop, or allocate more than its size:
//! - names (§3.1, §4.1.4): at most 255 octets in wire form, labels of at most 63,
//!   compression pointers only to *earlier* octets (so following them terminates), at
//!   most 127 of them; label types 01 and 10 (RFC 6891 §5, obsolete) are a format error;
//! - counts: QDCOUNT must be 1 (RFC 9619), records in the other sections are skipped
//!   with their lengths checked, at most one OPT (RFC 6891 §6.1.1), OPT owner = root.
//!
//! Responses echo the id, opcode, RD and CD bits and the question exactly as sent
//! (resolvers that randomise the case of names, "0x20", compare it), set QR and RA, and
//! point their answers' owner names at the question (§4.1.4, offset 12). A query with an
//! OPT record gets one back (our payload size [`EDNS_PAYLOAD`], DO copied per RFC 3225
//! §3); an EDNS version other than 0 gets BADVERS (RFC 6891 §6.1.3).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The fixed header (§4.1.1).
pub const HEADER_LEN: usize = 12;
/// What a UDP response may carry without EDNS (§2.3.4, §4.2.1).
pub const UDP_PLAIN_MAX: usize = 512;
/// The UDP payload size we advertise in our OPT records: the value the DNS flag day
/// 2020 agreed on, which avoids IP fragmentation on any common path.
pub const EDNS_PAYLOAD: u16 = 1232;

/// Record types (§3.2.2, RFC 3596 for AAAA, RFC 6891 for OPT, RFC 9460 for SVCB/HTTPS).
pub mod rtype {
    pub const A: u16 = 1;
    pub const NS: u16 = 2;
    pub const CNAME: u16 = 5;
    pub const SOA: u16 = 6;
    pub const PTR: u16 = 12;
    pub const MX: u16 = 15;
    pub const TXT: u16 = 16;
    pub const AAAA: u16 = 28;
    pub const SRV: u16 = 33;
    pub const OPT: u16 = 41;
    pub const SVCB: u16 = 64;
    pub const HTTPS: u16 = 65;
    pub const ANY: u16 = 255;
}

/// The Internet class (§3.2.4).
pub const CLASS_IN: u16 = 1;

/// Response codes (§4.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rcode {
    NoError = 0,
    FormErr = 1,
    ServFail = 2,
    NxDomain = 3,
    NotImp = 4,
    Refused = 5,
}

impl Rcode {
    pub fn name(self) -> &'static str {
        match self {
            Rcode::NoError => "NOERROR",
            Rcode::FormErr => "FORMERR",
            Rcode::ServFail => "SERVFAIL",
            Rcode::NxDomain => "NXDOMAIN",
            Rcode::NotImp => "NOTIMP",
            Rcode::Refused => "REFUSED",
        }
    }
}

/// A type's usual name, for messages.
pub fn type_name(t: u16) -> String {
    match t {
        rtype::A => "A".into(),
        rtype::NS => "NS".into(),
        rtype::CNAME => "CNAME".into(),
        rtype::SOA => "SOA".into(),
        rtype::PTR => "PTR".into(),
        rtype::MX => "MX".into(),
        rtype::TXT => "TXT".into(),
        rtype::AAAA => "AAAA".into(),
        rtype::SRV => "SRV".into(),
        rtype::SVCB => "SVCB".into(),
        rtype::HTTPS => "HTTPS".into(),
        rtype::ANY => "ANY".into(),
        t => format!("TYPE{t}"), // RFC 3597 §5
    }
}

/// The EDNS(0) pseudo-record of a query (RFC 6891 §6.1.2–6.1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edns {
    /// The requester's UDP payload size (values below 512 mean 512, §6.2.5).
    pub udp_size: u16,
    pub version: u8,
    /// DNSSEC OK (RFC 3225).
    pub dnssec_ok: bool,
}

/// A parsed query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    pub opcode: u8,
    pub rd: bool,
    pub cd: bool,
    /// The question's name in uncompressed wire form, as sent (case kept).
    pub qname: Vec<u8>,
    pub qtype: u16,
    pub qclass: u16,
    pub edns: Option<Edns>,
}

/// Why a message gets no regular answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bad {
    /// Not worth an answer: shorter than a header, or itself a response (answering
    /// responses lets two servers bounce a packet between them forever).
    Ignore,
    /// Answer with this header-only response (FORMERR, NOTIMP).
    Reply(Vec<u8>),
}

impl Query {
    /// The name in text form (labels joined with `.`, no trailing dot; empty for the
    /// root), or `None` if a label holds a `.` itself and so has no text form a
    /// resolver library would have asked for.
    pub fn name(&self) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(self.qname.len());
        let mut i = 0;
        while let Some(&len) = self.qname.get(i) {
            if len == 0 {
                break;
            }
            let label = self.qname.get(i + 1..i + 1 + len as usize)?;
            if label.contains(&b'.') {
                return None;
            }
            if !out.is_empty() {
                out.push(b'.');
            }
            out.extend_from_slice(label);
            i += 1 + len as usize;
        }
        Some(out)
    }

    /// The largest response this client takes over UDP (§4.2.1; RFC 6891 §6.2.5).
    pub fn udp_limit(&self) -> usize {
        match self.edns {
            Some(e) => usize::from(e.udp_size).max(UDP_PLAIN_MAX),
            None => UDP_PLAIN_MAX,
        }
    }
}

/// Parses a query (§4.1). Anything that is not a well-formed standard query is a
/// [`Bad`]: dropped, or answered with a header-only error.
pub fn parse_query(msg: &[u8]) -> Result<Query, Bad> {
    if msg.len() < HEADER_LEN {
        return Err(Bad::Ignore);
    }
    let id = be16(msg, 0);
    let flags = be16(msg, 2);
    if flags & 0x8000 != 0 {
        return Err(Bad::Ignore);
    }
    let opcode = ((flags >> 11) & 0x0f) as u8;
    let rd = flags & 0x0100 != 0;
    let cd = flags & 0x0010 != 0;
    let fail = |rcode: Rcode| Err(Bad::Reply(header_only(id, opcode, rd, cd, rcode)));
    if opcode != 0 {
        return fail(Rcode::NotImp);
    }
    let counts = [be16(msg, 4), be16(msg, 6), be16(msg, 8), be16(msg, 10)];
    if counts[0] != 1 {
        return fail(Rcode::FormErr);
    }
    let Some((qname, mut at)) = read_name(msg, HEADER_LEN) else {
        return fail(Rcode::FormErr);
    };
    let Some(q) = msg.get(at..at + 4) else {
        return fail(Rcode::FormErr);
    };
    let qtype = be16(q, 0);
    let qclass = be16(q, 2);
    at += 4;
    let mut edns = None;
    // The other sections: skipped, except for the OPT record in the additional one.
    let records = u32::from(counts[1]) + u32::from(counts[2]) + u32::from(counts[3]);
    let additional_from = u32::from(counts[1]) + u32::from(counts[2]);
    for k in 0..records {
        // Each record takes at least 11 octets: a bogus count ends at the message's end.
        let Some((owner, next)) = read_name(msg, at) else {
            return fail(Rcode::FormErr);
        };
        let Some(fixed) = msg.get(next..next + 10) else {
            return fail(Rcode::FormErr);
        };
        let (rrtype, class) = (be16(fixed, 0), be16(fixed, 2));
        let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
        let rdlen = usize::from(be16(fixed, 8));
        let end = next + 10 + rdlen;
        if end > msg.len() {
            return fail(Rcode::FormErr);
        }
        if rrtype == rtype::OPT {
            // RFC 6891 §6.1.1: only in the additional section, owner is the root, once.
            if k < additional_from || owner != [0] || edns.is_some() {
                return fail(Rcode::FormErr);
            }
            edns = Some(Edns {
                udp_size: class,
                version: (ttl >> 16) as u8,
                dnssec_ok: ttl & 0x8000 != 0,
            });
        }
        at = end;
    }
    Ok(Query {
        id,
        opcode,
        rd,
        cd,
        qname,
        qtype,
        qclass,
        edns,
    })
}

/// Reads the name at `at` (following compression pointers), returning its
/// uncompressed wire form and the offset just past it in the message.
fn read_name(msg: &[u8], mut at: usize) -> Option<(Vec<u8>, usize)> {
    let mut out = Vec::with_capacity(32);
    let mut end = None;
    let mut jumps = 0;
    // Pointers must go strictly backwards, below `floor`: a loop is impossible.
    let mut floor = at;
    loop {
        let len = *msg.get(at)?;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    out.push(0);
                    if out.len() > 255 {
                        return None;
                    }
                    return Some((out, end.unwrap_or(at + 1)));
                }
                let label = msg.get(at + 1..at + 1 + len as usize)?;
                out.push(len);
                out.extend_from_slice(label);
                if out.len() > 255 {
                    return None;
                }
                at += 1 + len as usize;
            }
            0xc0 => {
                let target = usize::from(be16(msg.get(at..at + 2)?, 0) & 0x3fff);
                jumps += 1;
                if target >= floor || jumps > 127 {
                    return None;
                }
                end.get_or_insert(at + 2);
                floor = target;
                at = target;
            }
            _ => return None, // 01 and 10: extended / reserved label types
        }
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// A header-only response (counts zero): for errors found before the question.
pub fn header_only(id: u16, opcode: u8, rd: bool, cd: bool, rcode: Rcode) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&flags(opcode, rd, cd, rcode as u8, false).to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    out
}

fn flags(opcode: u8, rd: bool, cd: bool, rcode: u8, tc: bool) -> u16 {
    0x8000 // QR
        | (u16::from(opcode & 0x0f) << 11)
        | if tc { 0x0200 } else { 0 }
        | if rd { 0x0100 } else { 0 }
        | 0x0080 // RA: we answer recursively, as the resolver the program thinks it asked
        | if cd { 0x0010 } else { 0 }
        | u16::from(rcode & 0x0f)
}

/// An answer record's data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// A name in text form (`remote.test`), for PTR answers.
    Ptr(Vec<u8>),
}

/// The response to `q`: `rcode`, and `answers` (owner = the question's name, class IN,
/// `ttl` seconds). An EDNS version we do not speak makes it BADVERS without answers.
pub fn response(q: &Query, rcode: Rcode, answers: &[Record], ttl: u32) -> Vec<u8> {
    let badvers = q.edns.is_some_and(|e| e.version != 0);
    let answers = if badvers { &[][..] } else { answers };
    let rcode = if badvers { 0 } else { rcode as u8 }; // BADVERS = 16: all in the OPT
    let mut out = Vec::with_capacity(HEADER_LEN + q.qname.len() + 4 + answers.len() * 28 + 11);
    out.extend_from_slice(&q.id.to_be_bytes());
    out.extend_from_slice(&flags(q.opcode, q.rd, q.cd, rcode, false).to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&u16::from(q.edns.is_some()).to_be_bytes());
    out.extend_from_slice(&q.qname);
    out.extend_from_slice(&q.qtype.to_be_bytes());
    out.extend_from_slice(&q.qclass.to_be_bytes());
    for a in answers {
        out.extend_from_slice(&[0xc0, HEADER_LEN as u8]); // the question's name
        let (t, data): (u16, Vec<u8>) = match a {
            Record::A(ip) => (rtype::A, ip.octets().to_vec()),
            Record::Aaaa(ip) => (rtype::AAAA, ip.octets().to_vec()),
            Record::Ptr(name) => (rtype::PTR, encode_name(name).unwrap_or_else(|| vec![0])),
        };
        out.extend_from_slice(&t.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(&data);
    }
    if let Some(e) = q.edns {
        // RFC 6891 §6.1.2: root owner, type OPT, CLASS = payload size, TTL = extended
        // rcode (upper 8 bits of 12), version, DO, Z; no options.
        out.push(0);
        out.extend_from_slice(&rtype::OPT.to_be_bytes());
        out.extend_from_slice(&EDNS_PAYLOAD.to_be_bytes());
        let ext: u32 = if badvers { 1 } else { 0 };
        let ttl = (ext << 24) | if e.dnssec_ok { 0x8000 } else { 0 };
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
    }
    out
}

/// A text name (`a.b`, no trailing dot needed) in wire form, if it is one (labels of
/// 1..=63 octets, at most 255 in all).
pub fn encode_name(text: &[u8]) -> Option<Vec<u8>> {
    let text = text.strip_suffix(b".").unwrap_or(text);
    let mut out = Vec::with_capacity(text.len() + 2);
    if !text.is_empty() {
        for label in text.split(|&b| b == b'.') {
            if label.is_empty() || label.len() > 63 {
                return None;
            }
            out.push(label.len() as u8);
            out.extend_from_slice(label);
        }
    }
    out.push(0);
    (out.len() <= 255).then_some(out)
}

/// A query for `name` (text form): for forwarding and for tests.
pub fn build_query(id: u16, name: &[u8], qtype: u16, rd: bool) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(HEADER_LEN + name.len() + 6);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&(if rd { 0x0100u16 } else { 0 }).to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&encode_name(name)?);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    Some(out)
}

/// Whether `resp` answers `q`: a response with its id and its question (names compared
/// case-insensitively, RFC 4343). A relayed answer that does not is dropped.
pub fn answers(q: &Query, resp: &[u8]) -> bool {
    if resp.len() < HEADER_LEN || be16(resp, 0) != q.id || be16(resp, 2) & 0x8000 == 0 {
        return false;
    }
    if be16(resp, 4) != 1 {
        // A header-only error (FORMERR, NOTIMP, some SERVFAILs) names no question.
        return be16(resp, 4) == 0 && resp[3] & 0x0f != 0;
    }
    let Some((name, at)) = read_name(resp, HEADER_LEN) else {
        return false;
    };
    let Some(tc) = resp.get(at..at + 4) else {
        return false;
    };
    name.eq_ignore_ascii_case(&q.qname) && be16(tc, 0) == q.qtype && be16(tc, 2) == q.qclass
}

/// `resp` made to fit a UDP reply of `limit` octets: as it is if it fits, else its
/// header and question with TC set and the sections emptied (RFC 2181 §9: a client
/// seeing TC asks again over TCP; RFC 1035 §4.2.1).
pub fn fit_udp(resp: Vec<u8>, limit: usize) -> Vec<u8> {
    if resp.len() <= limit || resp.len() < HEADER_LEN {
        return resp;
    }
    let question_end = (be16(&resp, 4) == 1)
        .then(|| read_name(&resp, HEADER_LEN))
        .flatten()
        .map(|(_, at)| at + 4)
        .filter(|&end| end <= resp.len() && end <= limit);
    let mut out = resp[..question_end.unwrap_or(HEADER_LEN)].to_vec();
    out[2] |= 0x02; // TC
    let qd = u16::from(question_end.is_some());
    out[4..6].copy_from_slice(&qd.to_be_bytes());
    out[6..12].fill(0);
    out
}

/// The address a reverse name stands for (`4.3.2.1.in-addr.arpa`, RFC 1035 §3.5; the
/// 32-nibble `ip6.arpa` form, RFC 3596 §2.5), case-insensitively, text form.
pub fn reverse_addr(name: &[u8]) -> Option<IpAddr> {
    let lower = name.to_ascii_lowercase();
    let lower = lower.strip_suffix(b".").unwrap_or(&lower);
    if let Some(rest) = lower.strip_suffix(b".in-addr.arpa") {
        let parts: Vec<&[u8]> = rest.split(|&b| b == b'.').collect();
        if parts.len() != 4 {
            return None;
        }
        let mut o = [0u8; 4];
        for (i, p) in parts.iter().rev().enumerate() {
            let s = std::str::from_utf8(p).ok()?;
            // Decimal without leading zeros, as the reverse tree writes octets.
            if s.is_empty() || (s.len() > 1 && s.starts_with('0')) {
                return None;
            }
            o[i] = s.parse().ok()?;
        }
        return Some(IpAddr::V4(Ipv4Addr::from(o)));
    }
    let rest = lower.strip_suffix(b".ip6.arpa")?;
    let nibbles: Vec<&[u8]> = rest.split(|&b| b == b'.').collect();
    if nibbles.len() != 32 {
        return None;
    }
    let mut v: u128 = 0;
    for n in nibbles.iter().rev() {
        let [c] = n[..] else { return None };
        v = (v << 4) | u128::from((c as char).to_digit(16)?);
    }
    Some(IpAddr::V6(Ipv6Addr::from(v)))
}

/// The rcode of a response (`None` if it is too short to have one).
pub fn rcode_of(resp: &[u8]) -> Option<u8> {
    resp.get(3).map(|b| b & 0x0f)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `dig +norec example.com A` (DiG 9.18.49, Debian 12): AD set, RD clear, EDNS with a
    /// COOKIE option. Captured from a UDP socket on this machine.
    const DIG_QUERY: &[u8] = &[
        0xdd, 0xc7, 0x00, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x07, 0x65, 0x78,
        0x61, 0x6d, 0x70, 0x6c, 0x65, 0x03, 0x63, 0x6f, 0x6d, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00,
        0x00, 0x29, 0x04, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x0a, 0x00, 0x08, 0x00,
        0xa8, 0x1b, 0x0c, 0xd1, 0xb1, 0x8d, 0xc5,
    ];

    /// `dig -x 198.18.0.1` (same dig, RD and AD set): a PTR query. Captured likewise.
    const DIG_PTR_QUERY: &[u8] = &[
        0xf1, 0xa4, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x01, 0x31, 0x01,
        0x30, 0x02, 0x31, 0x38, 0x03, 0x31, 0x39, 0x38, 0x07, 0x69, 0x6e, 0x2d, 0x61, 0x64, 0x64,
        0x72, 0x04, 0x61, 0x72, 0x70, 0x61, 0x00, 0x00, 0x0c, 0x00, 0x01, 0x00, 0x00, 0x29, 0x04,
        0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x0a, 0x00, 0x08, 0x0d, 0x02, 0x94, 0xf2,
        0x36, 0x0c, 0x6d, 0x00,
    ];

    /// Go 1.19's pure resolver (`net.Resolver{PreferGo: true}`) looking up
    /// `Remote.Test.`: the AAAA query, RD set, an OPT with a 1232-byte payload and no
    /// options. Captured likewise.
    const GO_QUERY: &[u8] = &[
        0x8c, 0xae, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x06, 0x52, 0x65,
        0x6d, 0x6f, 0x74, 0x65, 0x04, 0x54, 0x65, 0x73, 0x74, 0x00, 0x00, 0x1c, 0x00, 0x01, 0x00,
        0x00, 0x29, 0x04, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn parses_digs_query_with_edns_cookie() {
        let q = parse_query(DIG_QUERY).unwrap();
        assert_eq!(q.id, 0xddc7);
        assert!(!q.rd, "+norec");
        assert_eq!(q.name().unwrap(), b"example.com");
        assert_eq!((q.qtype, q.qclass), (rtype::A, CLASS_IN));
        assert_eq!(
            q.edns,
            Some(Edns {
                udp_size: 1232,
                version: 0,
                dnssec_ok: false
            })
        );
        assert_eq!(q.udp_limit(), 1232);
    }

    #[test]
    fn answers_gos_query_keeping_the_case_and_the_id() {
        let q = parse_query(GO_QUERY).unwrap();
        assert_eq!(q.name().unwrap(), b"Remote.Test");
        assert!(q.rd);
        let ip: Ipv6Addr = "fd6c:6179:736f:636b::1".parse().unwrap();
        let r = response(&q, Rcode::NoError, &[Record::Aaaa(ip)], 60);
        assert!(answers(&q, &r));
        // Header: id, QR|RD, RA, NOERROR; 1 question, 1 answer, 0, 1 (our OPT).
        assert_eq!(&r[..12], &[0x8c, 0xae, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 1]);
        // The question as sent (case kept), then the answer pointing at it.
        assert_eq!(&r[12..29], &GO_QUERY[12..29]);
        assert_eq!(&r[29..41], &[0xc0, 12, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16]);
        assert_eq!(&r[41..57], &ip.octets());
        assert_eq!(&r[57..], &[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        // Our own parser reads the answer's records as a well-formed message would be.
        let mut as_query = r.clone();
        as_query[2] &= 0x7f;
        let back = parse_query(&as_query).unwrap();
        assert_eq!(back.edns.unwrap().udp_size, EDNS_PAYLOAD);
    }

    #[test]
    fn rejects_what_is_not_a_query() {
        assert_eq!(parse_query(&DIG_QUERY[..11]), Err(Bad::Ignore));
        let mut resp = DIG_QUERY.to_vec();
        resp[2] |= 0x80;
        assert_eq!(
            parse_query(&resp),
            Err(Bad::Ignore),
            "a response is not answered"
        );
        // Opcode 2 (STATUS): NOTIMP, id and opcode echoed, no question.
        let mut status = DIG_QUERY.to_vec();
        status[2] = 0x10;
        let Err(Bad::Reply(r)) = parse_query(&status) else {
            panic!()
        };
        assert_eq!(r, [0xdd, 0xc7, 0x90, 0x80 | 4, 0, 0, 0, 0, 0, 0, 0, 0]);
        // Two questions, none, a truncated name, a cut-off qtype: FORMERR.
        for bad in [
            {
                let mut m = DIG_QUERY.to_vec();
                m[5] = 2;
                m
            },
            {
                let mut m = DIG_QUERY.to_vec();
                m[5] = 0;
                m
            },
            DIG_QUERY[..20].to_vec(),
            DIG_QUERY[..27].to_vec(),
            // ARCOUNT says 2 but only one record follows.
            {
                let mut m = DIG_QUERY.to_vec();
                m[11] = 2;
                m
            },
            // The OPT claims more rdata than there is.
            {
                let mut m = DIG_QUERY.to_vec();
                m[39] = 0x40;
                m
            },
        ] {
            match parse_query(&bad) {
                Err(Bad::Reply(r)) => assert_eq!(r[3] & 0x0f, Rcode::FormErr as u8, "{bad:?}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn two_opt_records_or_an_opt_elsewhere_are_format_errors() {
        let opt = &DIG_QUERY[29..];
        let mut two = DIG_QUERY.to_vec();
        two[11] = 2;
        two.extend_from_slice(opt);
        assert!(matches!(parse_query(&two), Err(Bad::Reply(r)) if r[3] & 0x0f == 1));
        let mut in_answer = DIG_QUERY.to_vec();
        in_answer[7] = 1; // ANCOUNT 1, ARCOUNT 0: the OPT is now an answer record
        in_answer[11] = 0;
        assert!(matches!(parse_query(&in_answer), Err(Bad::Reply(r)) if r[3] & 0x0f == 1));
    }

    #[test]
    fn compression_pointers_are_followed_backwards_only() {
        // A query whose additional record's owner is a pointer to the question name: ok.
        let mut m = build_query(7, b"a.test", rtype::A, true).unwrap();
        m[11] = 1;
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4]);
        assert!(parse_query(&m).is_ok());
        // A question name that points at itself (a loop), or forward: FORMERR.
        let mut looped = build_query(7, b"a.test", rtype::A, true).unwrap();
        looped.truncate(12);
        looped.extend_from_slice(&[1, b'a', 0xc0, 12, 0, 1, 0, 1]);
        assert!(matches!(parse_query(&looped), Err(Bad::Reply(_))));
        let mut forward = build_query(7, b"a.test", rtype::A, true).unwrap();
        forward.truncate(12);
        forward.extend_from_slice(&[0xc0, 14, 0, 1, 0, 1, 0]);
        assert!(matches!(parse_query(&forward), Err(Bad::Reply(_))));
        // The reserved label types 01 and 10.
        let mut ext = build_query(7, b"a.test", rtype::A, true).unwrap();
        ext[12] = 0x41;
        assert!(matches!(parse_query(&ext), Err(Bad::Reply(_))));
        // A chain of backward pointers, each one octet earlier, ends.
        let mut r = vec![0u8; 12];
        r.extend_from_slice(&[0]); // root at 12
        for k in 0..100u16 {
            let at = 13 + 2 * k;
            let target = if k == 0 { 12 } else { at - 2 };
            r.extend_from_slice(&(0xc000 | target).to_be_bytes());
        }
        let (name, _) = read_name(&r, r.len() - 2).unwrap();
        assert_eq!(name, [0]);
    }

    #[test]
    fn names_longer_than_255_octets_are_refused() {
        let mut m = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for _ in 0..5 {
            m.push(63);
            m.extend_from_slice(&[b'a'; 63]);
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert!(matches!(parse_query(&m), Err(Bad::Reply(_))));
        assert!(encode_name(&[b'a'; 64]).is_none());
        assert!(encode_name(b"a..b").is_none());
        assert_eq!(encode_name(b"").unwrap(), [0]);
        assert_eq!(encode_name(b"a.b.").unwrap(), [1, b'a', 1, b'b', 0]);
    }

    #[test]
    fn text_form_of_odd_names() {
        let mut q = parse_query(DIG_QUERY).unwrap();
        q.qname = vec![3, b'a', b'.', b'b', 4, b't', b'e', b's', b't', 0];
        assert_eq!(q.name(), None, "a dot inside a label");
        q.qname = vec![0];
        assert_eq!(q.name().unwrap(), b"");
    }

    #[test]
    fn error_codes_badvers_and_ptr() {
        let q = parse_query(DIG_QUERY).unwrap();
        for rc in [
            Rcode::NxDomain,
            Rcode::ServFail,
            Rcode::Refused,
            Rcode::NotImp,
            Rcode::FormErr,
        ] {
            let r = response(&q, rc, &[], 60);
            assert_eq!(rcode_of(&r), Some(rc as u8));
            assert_eq!(&r[6..8], &[0, 0]);
            assert!(answers(&q, &r));
        }
        let mut v1 = DIG_QUERY.to_vec();
        v1[35] = 1; // EDNS version 1 (the TTL's second octet)
        let q1 = parse_query(&v1).unwrap();
        let r = response(&q1, Rcode::NoError, &[Record::A(Ipv4Addr::LOCALHOST)], 60);
        assert_eq!(&r[6..8], &[0, 0], "no answers with BADVERS");
        let opt = &r[r.len() - 11..];
        assert_eq!(opt[5], 1, "extended rcode 1: BADVERS (16)");
        let q = parse_query(DIG_PTR_QUERY).unwrap();
        assert_eq!(q.qtype, rtype::PTR);
        assert_eq!(
            reverse_addr(&q.name().unwrap()),
            Some("198.18.0.1".parse().unwrap())
        );
        let r = response(
            &q,
            Rcode::NoError,
            &[Record::Ptr(b"remote.test".to_vec())],
            60,
        );
        let before_opt = &r[..r.len() - 11];
        assert!(before_opt.ends_with(&[
            0, 13, 6, b'r', b'e', b'm', b'o', b't', b'e', 4, b't', b'e', b's', b't', 0
        ]));
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_addr(b"1.0.18.198.in-addr.arpa"),
            Some("198.18.0.1".parse().unwrap())
        );
        assert_eq!(
            reverse_addr(b"1.0.18.198.IN-ADDR.ARPA."),
            Some("198.18.0.1".parse().unwrap())
        );
        assert_eq!(reverse_addr(b"1.0.18.in-addr.arpa"), None);
        assert_eq!(reverse_addr(b"01.0.18.198.in-addr.arpa"), None);
        assert_eq!(reverse_addr(b"256.0.18.198.in-addr.arpa"), None);
        let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.b.6.3.6.f.6.3.7.9.7.1.6.c.6.d.f.ip6.arpa";
        assert_eq!(
            reverse_addr(v6.as_bytes()),
            Some("fd6c:6179:736f:636b::1".parse().unwrap())
        );
        assert_eq!(reverse_addr(&v6.as_bytes()[2..]), None);
        assert_eq!(reverse_addr(b"example.com"), None);
    }

    #[test]
    fn large_relayed_answers_are_truncated_for_udp() {
        let q = parse_query(&build_query(5, b"big.test", rtype::TXT, true).unwrap()).unwrap();
        let mut big = response(&q, Rcode::NoError, &[], 60);
        big[7] = 3; // pretend three answers follow
        big.extend_from_slice(&[0u8; 1000]);
        let small = fit_udp(big.clone(), 512);
        assert_eq!(small.len(), 12 + 10 + 4);
        assert_eq!(small[2] & 0x02, 0x02, "TC");
        assert_eq!(&small[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
        assert!(answers(&q, &small));
        assert_eq!(fit_udp(big.clone(), 4096), big);
    }

    #[test]
    fn foreign_responses_are_not_taken() {
        let q = parse_query(DIG_QUERY).unwrap();
        let r = response(&q, Rcode::NoError, &[], 60);
        let mut other_id = r.clone();
        other_id[1] ^= 1;
        assert!(!answers(&q, &other_id));
        let q2 = parse_query(&build_query(0xddc7, b"example.org", rtype::A, false).unwrap());
        assert!(!answers(&q2.unwrap(), &r));
        // Names compare case-insensitively.
        let q3 = parse_query(&build_query(0xddc7, b"EXAMPLE.com", rtype::A, false).unwrap());
        assert!(answers(&q3.unwrap(), &r));
        assert!(!answers(&q, &r[..11]));
    }
}
