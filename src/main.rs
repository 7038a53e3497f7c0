//! The `mltenant` binary: command-line parsing and wiring only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use kube::client::ClientBuilder;
use mltenant_operator::metrics::Metrics;
use mltenant_operator::{api, http, reconcile, telemetry};

#[derive(Parser)]
#[command(name = "mltenant", version, about = "ML team environments and sealed credentials from one MLTenant object")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator against the cluster of the current kubeconfig (or in-cluster config).
    Controller(ControllerArgs),
    /// Print the CustomResourceDefinitions (what `crds/` holds).
    Crds,
}

#[derive(clap::Args)]
struct ControllerArgs {
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "MLTENANT_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// How often a converged tenant is checked again without any trigger (e.g. 30s, 5m).
    #[arg(long, env = "MLTENANT_RESYNC_PERIOD", default_value = "5m", value_parser = parse_duration)]
    resync_period: Duration,
    /// Only handle MLTenants matching this label selector (shard tenants between installations).
    #[arg(long, env = "MLTENANT_TENANT_SELECTOR")]
    tenant_selector: Option<String>,
    /// Log format.
    #[arg(long, env = "MLTENANT_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: telemetry::LogFormat,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let span: jiff::SignedDuration =
        text.parse().map_err(|e| format!("{text:?} is not a duration like 30s or 5m: {e}"))?;
    Duration::try_from(span).map_err(|_| format!("{text:?} must be positive"))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crds => {
            print!("{}", api::crds_yaml());
            Ok(())
        }
        Command::Controller(args) => controller(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn controller(args: ControllerArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format);
    let metrics = Arc::new(Metrics::new());
    let kube_config = kube::Config::infer().await.context("no Kubernetes configuration (KUBECONFIG or in-cluster)")?;
    let counted = metrics.clone();
    let client = ClientBuilder::try_from(kube_config)
        .context("building the Kubernetes client")?
        .with_layer(&tower::util::MapRequestLayer::new(move |req: ::http::Request<kube::client::Body>| {
            counted.kube_request(req.method());
            req
        }))
        .build();

    let readiness = Arc::new(reconcile::Readiness::default());
    let server = http::serve(args.http_addr, http::router(metrics.clone(), readiness.clone()));
    let config = reconcile::Config {
        resync: args.resync_period,
        tenant_selector: args.tenant_selector,
        instance: std::env::var("POD_NAME").ok(),
    };
    tokio::select! {
        result = server => result.context("HTTP server")?,
        () = reconcile::run(client, config, metrics, readiness) => {}
    }
    Ok(())
}
