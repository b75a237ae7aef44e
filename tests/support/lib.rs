//! Shared helpers for the end-to-end tests under `tests/`. The rig itself lives in
//! `laysocks-testkit`; this crate only exists so Cargo has a package to hang `tests/` on.
