//! What the `laysocks` launcher tells the preload layer, and how it travels.
//!
//! The launcher parses command-line options and config files (TOML) into a
//! [`LayerConfig`]; the preload layer, which lives inside somebody else's process,
//! must not parse TOML, read `$HOME` or allocate much before `main`. So the launcher
//! resolves everything first (proxy host names to addresses, exclusions to CIDRs)
//! and hands the layer one flat line in the environment variable [`ENV_LAYER`],
//! which every child inherits through `exec`.
//!
//! Credentials never go into that line (the environment of a process is readable by
//! its children and often ends up in logs): they go into a `0600` file whose path is in
//! the line, removed by the launcher's companion process when the program exits. See
//! [`secret`].
//!
//! No dependencies, no `unsafe`: both sides of the hand-off can be unit-tested here.

#![forbid(unsafe_code)]

pub mod layer;
pub mod net;
pub mod secret;
pub mod url;

pub use layer::{LayerConfig, DEFAULT_NAMES_CAPACITY, DEFAULT_POOL4, DEFAULT_POOL6, ENV_LAYER};
pub use net::{Exclusion, IpNet};
pub use url::{ProxyHost, ProxyUrl, Scheme};
