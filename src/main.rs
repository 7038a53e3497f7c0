//! The `mltenant` binary: command-line parsing and wiring only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use mltenant_operator::access::exposure::identity::{DEFAULT_ADMINS, DEFAULT_CONTROLLERS, Expected, Subject};
use mltenant_operator::access::usage::Usage;
use mltenant_operator::api::labels;
use mltenant_operator::api::limits::Protected;
use mltenant_operator::keys::lifecycle;
use mltenant_operator::keys::ring::KeyRing;
use mltenant_operator::metrics::Metrics;
use mltenant_operator::runtime::{leader, readiness, telemetry};
use mltenant_operator::server::auth::Authorizer;
use mltenant_operator::server::{audit, http};
use mltenant_operator::{api, cli, reconcile};

#[derive(Parser)]
#[command(name = "mltenant", version, about = "ML team environments and sealed credentials from one MLTenant object")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator against the cluster of the current kubeconfig (or in-cluster config).
    Controller(Box<ControllerArgs>),
    /// Print the CustomResourceDefinitions (what `crds/` holds).
    Crds,
    /// Seal values into a ready-to-commit SealedBundle (printed), or add them to one (--merge-into).
    Seal(Box<cli::seal::Args>),
    /// Print the operator's current sealing certificate (for offline `seal --cert` or kubeseal).
    Cert(cli::operator::Source),
    /// Have the operator re-seal SealedBundles (a file, or every one under a directory) to its
    /// newest sealing key.
    Rotate(cli::rotate::Args),
    /// Who can read each of a tenant's Secrets (declared, expected, unexpected, indirect) and when
    /// each declared reader last read it; exit code 2 when anyone unexpected can read one.
    Access(cli::access::Args),
    /// List the sealing keys and the bundles that need each; retire, unretire or delete one.
    Keys(cli::keys::Args),
    /// Check MLTenant and SealedBundle manifests against the CRDs' schema and CEL rules offline
    /// (and, with --server-dry-run, against the API server).
    Validate(cli::validate::Args),
}

#[derive(clap::Args)]
struct ControllerArgs {
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "MLTENANT_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// How often a converged tenant is checked again without any trigger (e.g. 30s, 5m).
    #[arg(long, env = "MLTENANT_RESYNC_PERIOD", default_value = "5m", value_parser = cli::parse_span)]
    resync_period: Duration,
    /// Only handle MLTenants matching this label selector (shard tenants between installations).
    #[arg(long, env = "MLTENANT_TENANT_SELECTOR", value_parser = checked_selector)]
    tenant_selector: Option<String>,
    /// Only report status on SealedBundles matching this label selector (when sharding, give
    /// exactly one installation the bundles' status).
    #[arg(long, env = "MLTENANT_BUNDLE_SELECTOR", value_parser = labels::parse_selector)]
    bundle_selector: Option<kube::core::Selector>,
    /// Namespaces never created, adopted, written into or granted on, in addition to
    /// default, every kube-* namespace and --namespace (comma-separated; a trailing `*`
    /// protects a prefix, e.g. `openshift-*`).
    #[arg(long, env = "MLTENANT_PROTECTED_NAMESPACES", value_delimiter = ',')]
    protected_namespaces: Vec<String>,
    /// Namespace holding the sealing keys (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "mltenant-system")]
    namespace: String,
    /// How often a new sealing key is created; older keys keep opening what they sealed.
    #[arg(long, env = "MLTENANT_KEY_RENEW_PERIOD", default_value = "30d", value_parser = cli::parse_span)]
    key_renew_period: Duration,
    /// Name of the coordination.k8s.io Lease (in --namespace) replicas elect a leader with.
    #[arg(long, env = "MLTENANT_LEASE_NAME", default_value = "mltenant-operator")]
    lease_name: String,
    /// How long the leader's Lease is valid without renewal (failover time), in whole seconds.
    #[arg(long, env = "MLTENANT_LEASE_DURATION", default_value = "15s", value_parser = cli::parse_whole_seconds)]
    lease_duration: Duration,
    /// Reconciles run at once, per controller (tenants, bundles).
    #[arg(long, env = "MLTENANT_CONCURRENCY", default_value_t = 32)]
    concurrency: u16,
    /// Serve /metrics only to callers whose token passes a TokenReview and who may `get` the
    /// non-resource URL /metrics (as kube-rbac-proxy does).
    #[arg(long, env = "MLTENANT_METRICS_AUTH")]
    metrics_auth: bool,
    /// Cluster admins, expected to read every Secret: `group:NAME`, `user:NAME`,
    /// `serviceaccount:NAMESPACE/NAME` (NAME may be `*`), comma-separated.
    #[arg(long, env = "MLTENANT_ACCESS_ADMINS", value_delimiter = ',', default_values_t = strings(DEFAULT_ADMINS))]
    access_admins: Vec<String>,
    /// Controllers expected to read Secrets (the operator itself is always one), in the same
    /// form. Anyone else RBAC lets read a distributed Secret, besides its declared readers, makes
    /// AccessIsolated False.
    #[arg(long, env = "MLTENANT_ACCESS_CONTROLLERS", value_delimiter = ',', default_values_t = strings(DEFAULT_CONTROLLERS))]
    access_controllers: Vec<String>,
    /// Serve the audit sink (the API server's audit webhook backend posts to
    /// https://ADDR/audit) on this address, while leading. Unset: no sink, no usage counted.
    #[arg(long, env = "MLTENANT_AUDIT_SINK_ADDR", requires_all = ["audit_sink_tls_cert", "audit_sink_tls_key"])]
    audit_sink_addr: Option<SocketAddr>,
    /// The sink's serving certificate (PEM, with its chain).
    #[arg(long, env = "MLTENANT_AUDIT_SINK_TLS_CERT")]
    audit_sink_tls_cert: Option<std::path::PathBuf>,
    /// The sink's private key (PEM).
    #[arg(long, env = "MLTENANT_AUDIT_SINK_TLS_KEY")]
    audit_sink_tls_key: Option<std::path::PathBuf>,
    /// CA (PEM) of the client certificate the API server presents to the sink.
    #[arg(long, env = "MLTENANT_AUDIT_SINK_CLIENT_CA")]
    audit_sink_client_ca: Option<std::path::PathBuf>,
    /// Common or DNS names of that certificate accepted as the API server (comma-separated).
    #[arg(long, env = "MLTENANT_AUDIT_SINK_CLIENT_NAMES", value_delimiter = ',')]
    audit_sink_client_names: Vec<String>,
    /// File holding the bearer token the API server sends to the sink (its webhook
    /// kubeconfig's `token`); instead of, or besides, a client certificate.
    #[arg(long, env = "MLTENANT_AUDIT_SINK_TOKEN_FILE")]
    audit_sink_token_file: Option<std::path::PathBuf>,
    /// How stale a declared reader's lastReadAt in a tenant's status may get: a reader reading
    /// all the time makes one status write per period.
    #[arg(long, env = "MLTENANT_USAGE_RECORD_PERIOD", default_value = "1h", value_parser = cli::parse_span)]
    usage_record_period: Duration,
    /// Log format.
    #[arg(long, env = "MLTENANT_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: telemetry::LogFormat,
}

fn strings(entries: &[&str]) -> Vec<String> {
    entries.iter().map(|e| (*e).to_owned()).collect()
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Fail points named in FAILPOINTS, in the tests' build only.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    let cli = command_line();
    let result = match cli.command {
        Command::Crds => {
            print!("{}", api::crds_yaml());
            Ok(())
        }
        Command::Controller(args) => controller(*args).await,
        Command::Seal(args) => cli::seal::run(*args).await.map(|yaml| print!("{}", yaml.unwrap_or_default())),
        Command::Cert(source) => cli::cert::fetch(&source).await.map(|pem| print!("{pem}")),
        Command::Keys(args) => cli::keys::run(args).await.map(|out| print!("{out}")),
        Command::Rotate(args) => cli::rotate::run(args).await.map(|yaml| print!("{}", yaml.unwrap_or_default())),
        Command::Validate(args) => cli::validate::run(&args).await.map(|summary| println!("{summary}")),
        Command::Access(args) => match cli::access::run(&args).await {
            Ok((report, isolated)) => {
                print!("{report}");
                // 2, not 1: the check ran, and found someone unexpected.
                return if isolated { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::from(2) };
            }
            Err(error) => Err(error),
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Parse the command line. Installed on PATH as `kubectl-mltenant`, the binary is a kubectl
/// plugin (`kubectl mltenant seal ...` runs it with kubectl's environment); usage lines and
/// errors then name the command the user typed.
fn command_line() -> Cli {
    let invoked_as = std::env::args_os().next().map(std::path::PathBuf::from);
    let plugin = invoked_as.as_deref().and_then(std::path::Path::file_name).is_some_and(|n| n == "kubectl-mltenant");
    let mut command = Cli::command();
    if plugin {
        command = command.bin_name("kubectl mltenant").display_name("kubectl-mltenant");
    }
    Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit())
}

async fn controller(args: ControllerArgs) -> anyhow::Result<()> {
    let mut expected = Expected::parse(&args.access_admins, &args.access_controllers)
        .map_err(|e| anyhow::anyhow!("--access-*: {e}"))?;
    let sink = match args.audit_sink_addr {
        Some(addr) => {
            let config = audit::Config {
                addr,
                tls_cert: args.audit_sink_tls_cert.clone().unwrap_or_default(),
                tls_key: args.audit_sink_tls_key.clone().unwrap_or_default(),
                client_ca: args.audit_sink_client_ca.clone(),
                client_names: args.audit_sink_client_names.clone(),
                token_file: args.audit_sink_token_file.clone(),
            };
            config.check().map_err(anyhow::Error::msg)?;
            Some(audit::prepare(&config).context("the audit sink")?)
        }
        None => None,
    };
    telemetry::init(args.log_format);
    telemetry::report_panics_without_their_message();
    let shutdown = shutdown_signal()?;
    let keys = Arc::new(KeyRing::default());
    let metrics = Arc::new(Metrics::new(keys.clone()));
    let kube_config = kube::Config::infer().await.context("no Kubernetes configuration (KUBECONFIG or in-cluster)")?;
    // The pod name (downward API) names this replica in the Lease and in Events.
    let pod_name = std::env::var("POD_NAME").ok();
    let identity = pod_name.clone().unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
    let lease_config = leader::Config {
        namespace: args.namespace.clone(),
        lease_name: args.lease_name,
        identity,
        lease_duration: args.lease_duration,
    };
    let leadership = Arc::new(leader::Leadership::new(&lease_config));
    // Lease renewals and the reviews of HTTP callers go through clients of their own:
    // mltenant_kube_requests_total is about what reconciling costs, the Lease must be writable
    // while not leading, and callers of the HTTP endpoints (anyone who reaches the pod) must not
    // be able to queue requests in front of a Lease renewal.
    let lease_client = kube::Client::try_from(kube_config.clone()).context("building the Kubernetes client")?;
    let review_client = kube::Client::try_from(kube_config.clone()).context("building the Kubernetes client")?;
    let client = mltenant_operator::runtime::client::build(kube_config, leadership.clone(), metrics.clone())
        .context("building the Kubernetes client")?;

    let readiness = Arc::new(readiness::Readiness::default());
    let (leading_tx, leading) = tokio::sync::watch::channel(false);
    let election = leader::run(lease_client.clone(), lease_config.clone(), leadership, leading_tx);
    let key_config = lifecycle::Config { namespace: args.namespace.clone(), renew_period: args.key_renew_period };
    let sealing_keys = lifecycle::run(client.clone(), key_config, keys.clone(), readiness.track(), leading.clone());
    let served = http::Served {
        metrics: metrics.clone(),
        readiness: readiness.clone(),
        keys: keys.clone(),
        authorizer: Arc::new(Authorizer::new(review_client.clone())),
        metrics_auth: args.metrics_auth,
    };
    let server = http::serve(args.http_addr, served);
    // The operator reads every Secret it distributes: it is expected, whatever the flags say.
    let me = mltenant_operator::server::auth::who_am_i(&review_client)
        .await
        .context("asking the API server who the operator is")?;
    expected.controllers.add(Subject::user(&me));
    let config = reconcile::Config {
        resync: args.resync_period,
        tenant_selector: args.tenant_selector,
        bundle_selector: args.bundle_selector.unwrap_or_default(),
        instance: pod_name,
        protected: Protected::new(&args.namespace, args.protected_namespaces),
        concurrency: args.concurrency,
        expected,
    };
    metrics.follow_leadership(leading.clone());
    metrics.key_renew_period(args.key_renew_period);
    // Every replica serves the sink; what it counts goes to the leader's current term (its
    // controllers tell it which Secrets are whose, and only it writes what was counted into the
    // tenants' status). A standby asks the API server to try again, on another connection.
    let (term_tx, term) = tokio::sync::watch::channel(None);
    let counting = match &sink {
        Some(sink) => audit::serve(sink.clone(), term, config.expected.clone(), metrics.clone()).boxed(),
        None => futures::future::pending().boxed(),
    };
    let controllers = leader::while_leading(leading, shutdown.clone(), || {
        let usage = sink.as_ref().map(|_| Arc::new(Usage::new(args.usage_record_period)));
        let term = audit::Term::start(&term_tx, usage.clone());
        let clients = reconcile::Clients { main: client.clone(), reviews: review_client.clone() };
        let controllers = reconcile::run(
            clients,
            config.clone(),
            metrics.clone(),
            keys.clone(),
            readiness.clone(),
            usage,
            shutdown.clone(),
        );
        async move {
            controllers.await;
            drop(term);
        }
    });
    // After SIGTERM the controllers finish their reconciles in flight, for at most
    // DRAIN_BUDGET (the election keeps renewing meanwhile, so the writes stay within a term).
    let drained = leader::drain(controllers, shutdown.clone(), leader::DRAIN_BUDGET);
    let drained = tokio::select! {
        result = server => {
            result.context("HTTP server")?;
            anyhow::bail!("the HTTP server stopped")
        }
        () = sealing_keys => anyhow::bail!("the sealing key watch ended"),
        () = election => anyhow::bail!("leader election ended"),
        () = counting => anyhow::bail!("the audit sink stopped"),
        drained = drained => drained,
    };
    // Shutting down: the controllers have stopped and, the election dropped, nothing renews the
    // Lease any more. Releasing it spares the standby waiting for it to expire; but a write
    // dropped unanswered could still land until the term lapses, so after a drain that did not
    // finish the Lease is left to expire.
    if drained {
        leader::release(lease_client, &lease_config, leader::RELEASE_BUDGET).await;
    } else {
        tracing::warn!(
            budget = ?leader::DRAIN_BUDGET,
            "reconciles still in flight after the drain budget: stopped them; the leader Lease expires on its own"
        );
    }
    Ok(())
}

/// Resolves on SIGTERM (how Kubernetes stops a pod) or Ctrl-C. Installed once, up front, for
/// the whole process: a handler replaces the default action (exit) for good, so whatever
/// must stop (controllers, election, a standby waiting to lead) waits on a clone of this.
fn shutdown_signal() -> anyhow::Result<Shared<BoxFuture<'static, ()>>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::info!("shutting down");
    }
    .boxed()
    .shared())
}

/// A label selector the API server will take, checked up front for a one-line error.
fn checked_selector(text: &str) -> Result<String, String> {
    labels::parse_selector(text).map(|_| text.to_owned())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "mltenant".into())
}
