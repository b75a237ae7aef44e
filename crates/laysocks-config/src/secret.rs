//! The credentials file: where the user name and password wait for the layer.
//!
//! The environment is inherited by every child and shows up in `/proc/PID/environ`,
//! crash reports and CI logs, so credentials never go there. The launcher writes them
//! to a fresh `0600` file (created with `O_EXCL`) and puts only its path in the layer
//! config; its companion process removes the file when the program exits.
//!
//! Format: two lines, `user=HEX` and `pass=HEX` (hex so any byte survives).

/// Encodes credentials for the file.
pub fn encode(username: &[u8], password: &[u8]) -> String {
    format!("user={}\npass={}\n", hex(username), hex(password))
}

/// Decodes the file's contents into (username, password).
pub fn decode(text: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let text = std::str::from_utf8(text).ok()?;
    let mut user = None;
    let mut pass = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("user=") {
            user = Some(unhex(v)?);
        } else if let Some(v) = line.strip_prefix("pass=") {
            pass = Some(unhex(v)?);
        }
    }
    Some((user?, pass.unwrap_or_default()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        let text = super::encode(b"bob", b"p@ss:\n\0w");
        assert!(!text.contains("p@ss"));
        assert_eq!(
            super::decode(text.as_bytes()).unwrap(),
            (b"bob".to_vec(), b"p@ss:\n\0w".to_vec())
        );
        assert!(super::decode(b"pass=00\n").is_none());
        assert!(super::decode(b"user=zz\n").is_none());
    }
}
