//! mltenant-operator: per-team environment namespaces and sealed credentials from one
//! `MLTenant` object.
//!
//! The folders follow the architecture (docs/architecture.md): `api` (the kinds and their
//! bounds), `crypto` and `unseal` (sealing formats, opening a bundle), `keys` (the key ring and
//! the key Secrets' lifecycle), `reconcile` (the controllers), `access` (who can read, who did
//! read), `server` (everything that listens on a port), `runtime` (client, leadership,
//! readiness, logging), `metrics`, `cli`; `text` and `striped` are leaf helpers.

pub mod access;
pub mod api;
pub mod cli;
pub mod crypto;
pub mod keys;
pub mod metrics;
pub mod reconcile;
pub mod runtime;
pub mod server;
pub mod striped;
pub mod text;
pub mod unseal;
