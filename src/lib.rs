//! mltenant-operator: per-team environment namespaces and sealed credentials from one
//! `MLTenant` object.

pub mod api;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod client;
pub mod crypto;
pub mod exposure;
pub mod http;
pub mod keyring;
pub mod leader;
pub mod metrics;
pub mod readiness;
pub mod reconcile;
pub mod sealing_keys;
pub mod striped;
pub mod telemetry;
pub mod text;
pub mod throttle;
pub mod unseal;
pub mod usage;
