//! Logging setup (filter with `RUST_LOG`, default `info`), and how panics are reported.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterExt as _, filter_fn};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer as _, fmt};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The target of kube's client, whose warnings about a response it could not decode quote the
/// whole response: a list of objects, or a Secret with its data.
const KUBE_CLIENT: &str = "kube_client::client";

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Whatever RUST_LOG says: no log line carries an object's body. (The operator reads every
    // object through `reconcile::guard`, so such a warning is not expected; this is the second
    // wall.)
    let no_bodies = filter_fn(|meta| !(meta.target() == KUBE_CLIENT && *meta.level() == tracing::Level::WARN));
    let filter = filter.and(no_bodies);
    let layer = fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Text => tracing_subscriber::registry().with(layer.with_filter(filter)).init(),
        LogFormat::Json => tracing_subscriber::registry().with(layer.json().with_filter(filter)).init(),
    }
}

/// Replace the default panic report (which prints the panic's message, and a message could
/// quote data from a spec) by its location only. For the whole process: a panicking reconcile
/// is caught and reported by the controllers (`reconcile::failures`), this is its log line.
pub fn report_panics_without_their_message() {
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map_or_else(|| "unknown".to_owned(), ToString::to_string);
        tracing::error!(%location, "panic (message withheld)");
    }));
}
