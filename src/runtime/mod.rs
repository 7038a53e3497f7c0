//! What every replica runs on: the Kubernetes client with its write fence (`client`) and
//! request budget (`throttle`), leader election (`leader`), readiness, and logging
//! (`telemetry`).

pub mod client;
pub mod leader;
pub mod readiness;
pub mod telemetry;
pub mod throttle;
