//! Logging setup (filter with `RUST_LOG`, default `info`), and how panics are reported.

use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
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
