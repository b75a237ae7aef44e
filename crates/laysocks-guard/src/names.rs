//! Remote DNS for the guard: the run's shared name ↔ placeholder table (the one the
//! preload layer maps, so a name gets the same placeholder whichever layer resolved
//! it) and the DNS responder that answers programs with their own resolver from it.

use std::sync::Arc;

use laysocks_config::LayerConfig;
use laysocks_names::NameMap;

use crate::{DnsAddrs, GuardConfig};

/// The name table, with remote DNS on: the launcher's shared file, or a private table.
pub fn open(cfg: &LayerConfig) -> Result<Option<Arc<NameMap>>, String> {
    if !cfg.remote_dns {
        return Ok(None);
    }
    let map = match &cfg.names_file {
        Some(path) => laysocks_names::open_shared(path, cfg.names_capacity, cfg.pool4, cfg.pool6)
            .map_err(|e| format!("cannot map the name table {path}: {e}"))?,
        None => laysocks_names::open_private(cfg.names_capacity, cfg.pool4, cfg.pool6)
            .map_err(|e| format!("cannot create a name table: {e}"))?,
    };
    Ok(Some(Arc::new(map)))
}

/// Starts the DNS responder (with remote DNS on).
pub fn responder(map: Option<Arc<NameMap>>, cfg: &GuardConfig) -> Result<Option<DnsAddrs>, String> {
    if !cfg.layer.remote_dns {
        // `--dns local`: programs' DNS goes to their resolver, as libc's does.
        return Ok(None);
    }
    let r = crate::dns::start(map, &cfg.layer, cfg.credentials.clone())
        .map_err(|e| format!("cannot start the guard's DNS responder on loopback: {e}"))?;
    Ok(Some(DnsAddrs {
        udp4: r.udp4,
        udp6: r.udp6,
        tcp4: r.tcp4,
        tcp6: r.tcp6,
    }))
}

/// `dns_server` as a target: `host:port`, an address, or a name (port 53 by default) —
/// the preload layer's reading of the same key.
pub use laysocks_names::policy::parse_server;
