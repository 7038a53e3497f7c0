//! The soak (`make soak`, `hack/soak.sh`; not part of `make test`): two replicas of the release
//! build share a Lease on a control plane of their own, with a fleet of tenants (200 by
//! default) under continuous churn for 30 minutes (`SOAK_MINUTES`, `SOAK_TENANTS`): tenants
//! created, edited and deleted, bundles re-sealed, managed objects deleted and edited by hand,
//! a new sealing key every 2 minutes (`--key-renew-period 2m`), the leader replaced every 5
//! minutes (SIGTERM and SIGKILL in turn). Every few seconds the fleet's invariants are checked
//! (tests/faults/fleet/; a finding is a violation when it outlasts a grace period, a corrupt
//! Secret at once), the replicas' liveness and RSS sampled. At the end the fleet must converge,
//! and a full resync with no churn must write nothing. The report goes to stdout and
//! `target/soak-report.txt`; the exit code says whether anything was violated.

// Shared with the integration tests and the fault suite, each of which uses a part of it.
#[allow(dead_code, unused_imports)]
#[path = "../integration/harness/mod.rs"]
mod harness;

#[allow(dead_code, unused_imports)]
#[path = "../faults/fleet/mod.rs"]
mod fleet;

mod churn;
mod replicas;
mod report;
mod tracker;

use std::fmt::Write as _;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::{Duration, Instant};

use mltenant_operator::crypto::Certificate;

use churn::Churn;
use fleet::Fleet;
use harness::{admin, sealing_keys, unique};
use replicas::Replicas;
use tracker::Tracker;

struct Config {
    minutes: f64,
    tenants: usize,
    seed: u64,
    /// How long a finding may last before it is a violation.
    grace: Duration,
    action_every: Duration,
    check_every: Duration,
    restart_every: Duration,
}

fn env_or<T: FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("{name}={text} is not a valid value")),
        Err(_) => default,
    }
}

impl Config {
    fn from_env() -> Self {
        let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970");
        Config {
            minutes: env_or("SOAK_MINUTES", 30.0),
            tenants: env_or("SOAK_TENANTS", 200),
            seed: env_or("SOAK_SEED", clock.as_nanos() as u64),
            grace: Duration::from_secs(env_or("SOAK_GRACE_SECONDS", 90)),
            action_every: Duration::from_millis(env_or("SOAK_ACTION_MS", 1500)),
            check_every: Duration::from_secs(env_or("SOAK_CHECK_SECONDS", 5)),
            restart_every: Duration::from_secs_f64(60.0 * env_or("SOAK_RESTART_MINUTES", 5.0)),
        }
    }
}

/// Replicas' flags: keys rotate every 2 minutes; a resync every 2 minutes bounds the quiet
/// window at the end (a full resync must be seen to happen in it).
const OPERATOR_ARGS: [&str; 4] = ["--key-renew-period", "2m", "--resync-period", "2m"];
const RESYNC: Duration = Duration::from_secs(120);
/// Whatever the soak waits for, it waits at most this long for one step.
const STEP_TIMEOUT: Duration = Duration::from_secs(180);

fn main() -> ExitCode {
    let config = Config::from_env();
    // Named: the harness's test logs are named after the thread, and printed if it panics.
    let soak = std::thread::Builder::new().name("soak".into()).spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
        runtime.block_on(soak(config))
    });
    match soak.expect("start the soak").join() {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

async fn soak(c: Config) {
    let started = Instant::now();
    let minute = move || started.elapsed().as_secs_f64() / 60.0;
    println!(
        "soak: {} minutes, {} tenants, seed {} (SOAK_SEED reproduces the churn), grace {:?}",
        c.minutes, c.tenants, c.seed, c.grace
    );
    let client = admin().await;
    let run = unique("soak");
    let mut replicas = Replicas::new(&run, &OPERATOR_ARGS, started);
    replicas.start().await;
    replicas.start().await;
    let keys_at_start = sealing_keys(&client, "mltenant-system").await.len();
    let cert = served_cert(&replicas).await.expect("a replica serves a certificate");
    let mut fleet = Fleet::new(&client, &run, cert).await;
    let mut churn = Churn::new(c.seed, c.tenants);
    let mut tracker = Tracker::new(c.grace);

    let members = (0..c.tenants).map(|_| churn.member()).collect();
    fleet.create_all(members, 16).await;
    let initial = fleet.converged_within(Duration::from_secs(600)).await.expect("the initial fleet converges");
    println!("[{:6.1} min] initial fleet of {} tenants converged in {initial:.1?}", minute(), c.tenants);

    let end = Instant::now() + Duration::from_secs_f64(c.minutes * 60.0);
    let (mut next_action, mut next_check, mut next_restart) =
        (Instant::now(), Instant::now(), Instant::now() + c.restart_every);
    let mut kill = false;
    let mut no_leader_since: Option<Instant> = None;
    let mut failed_snapshots = 0;
    while Instant::now() < end {
        let now = Instant::now();
        if now >= next_check {
            next_check = now + c.check_every;
            for dead in replicas.reap_dead().await {
                tracker.violation(minute(), dead);
            }
            match replicas.leader().await {
                Ok(_) => no_leader_since = None,
                Err(0) => {
                    let since = *no_leader_since.get_or_insert(now);
                    if now - since > c.grace {
                        tracker.violation(minute(), format!("no replica has led for {:?}", now - since));
                        no_leader_since = None;
                    }
                }
                Err(n) => tracker.violation(minute(), format!("{n} replicas lead at once")),
            }
            replicas.sample().await;
            fleet.tampered.retain(|_, at| at.elapsed() < c.grace * 2);
            match fleet.snapshot().await {
                Ok(snap) => tracker.observe(&fleet.check(&snap), minute()),
                Err(error) => {
                    failed_snapshots += 1;
                    println!("[{:6.1} min] snapshot failed: {error}", minute());
                }
            }
            if tracker.checks.is_multiple_of(60) {
                println!(
                    "[{:6.1} min] {} checks, {} open findings, {} violations; {} members; churn {:?}",
                    minute(),
                    tracker.checks,
                    tracker.open(),
                    tracker.violations.len(),
                    fleet.members.len(),
                    churn.counts
                );
            }
        }
        if now >= next_restart {
            next_restart = now + c.restart_every;
            match tokio::time::timeout(STEP_TIMEOUT, replicas.replace_leader(kill)).await {
                Ok(Ok(())) => {
                    let (signal, took) = replicas.takeovers.last().expect("a takeover");
                    println!("[{:6.1} min] leader replaced ({signal}); another led {took:.1?} later", minute());
                }
                Ok(Err(error)) => tracker.violation(minute(), error),
                Err(_) => tracker.violation(minute(), "replacing the leader hung".into()),
            }
            kill = !kill;
            // Keys rotate: seal new values to the newest one, as `mltenant seal` would.
            if let Some(cert) = served_cert(&replicas).await {
                fleet.cert = cert;
            }
        }
        if now >= next_action {
            next_action = now + c.action_every;
            if tokio::time::timeout(STEP_TIMEOUT, churn.step(&mut fleet)).await.is_err() {
                tracker.violation(minute(), "a churn action hung".into());
            }
        }
        let wake = next_action.min(next_check).min(next_restart);
        tokio::time::sleep_until(wake.into()).await;
    }

    println!("[{:6.1} min] churn stopped: waiting for the fleet to converge", minute());
    let settle = fleet.converged_within(Duration::from_secs(600)).await;
    if let Err(error) = &settle {
        tracker.violation(minute(), format!("after the churn: {error}"));
    }
    let rest = writes_at_rest(&replicas, &fleet, &client).await;
    match &rest {
        Ok(rest) if rest.writes != 0.0 || rest.decryptions != 0.0 => {
            tracker.violation(minute(), format!("at rest: {} writes, {} decryptions", rest.writes, rest.decryptions))
        }
        Ok(_) => {}
        Err(error) => tracker.violation(minute(), format!("at rest: {error}")),
    }
    let keys_at_end = sealing_keys(&client, "mltenant-system").await.len();
    replicas.stop_all().await;

    let mut out = String::new();
    let _ = writeln!(out, "soak report (seed {})", c.seed);
    let _ = writeln!(out, "  duration: {:.1} min of churn, {:.1} min in all", c.minutes, minute());
    let _ = writeln!(
        out,
        "  tenants: {} at start, {} at the end, {} deleted; initial converge {initial:.1?}",
        c.tenants,
        fleet.members.len(),
        fleet.gone.len()
    );
    let _ = writeln!(out, "  churn: {:?}", churn.counts);
    let _ = writeln!(out, "  sealing keys: {keys_at_start} -> {keys_at_end} (rotation every 2 min)");
    let _ = writeln!(out, "  leader replacements: {:?}", replicas.takeovers);
    let _ = writeln!(
        out,
        "  invariant checks: {} ({} failed snapshots); transient findings resolved: {} (longest {:.1?})",
        tracker.checks, failed_snapshots, tracker.resolved, tracker.longest_resolved
    );
    let _ = writeln!(out, "  converged after the churn: {settle:.1?}");
    let _ = writeln!(out, "  at rest: {rest:?}");
    let _ = writeln!(out, "  RSS (slope by least squares, first minute of each phase left out):");
    report::rss_lines(&replicas.ended, &mut out);
    let _ = writeln!(out, "  violations: {}", tracker.violations.len());
    for v in &tracker.violations {
        let _ = writeln!(out, "    {v}");
    }
    println!("{out}");
    let path = harness::logs::log_dir().with_file_name("soak-report.txt");
    std::fs::write(&path, &out).expect("write the soak report");
    let samples = path.with_file_name("soak-rss.csv");
    std::fs::write(&samples, report::rss_csv(&replicas.ended)).expect("write the RSS samples");
    println!("report written to {}, RSS samples to {}", path.display(), samples.display());
    assert!(tracker.violations.is_empty(), "{} invariant violations (see above)", tracker.violations.len());
}

/// The newest sealing certificate, as a replica serves it.
async fn served_cert(replicas: &Replicas) -> Option<Certificate> {
    for r in &replicas.live {
        if let Some((200, pem)) = r.op.try_get("/v1/cert.pem").await {
            return Certificate::from_pem(&pem).ok();
        }
    }
    None
}

/// What a full resync of the converged fleet cost, with nothing changing.
#[derive(Debug)]
#[allow(dead_code)] // read through Debug, in the report
struct AtRest {
    writes: f64,
    decryptions: f64,
    /// Writes that were sealing-key creations (the rotation does not stop for the window).
    key_creations: usize,
    reconciles: f64,
    window: Duration,
}

/// Watch the leader over a full resync with no churn: at least one resync period (every
/// member's periodic resync falls into it) and as many reconciles as members; writes other
/// than sealing-key creations, and decryptions, must be zero.
async fn writes_at_rest(replicas: &Replicas, fleet: &Fleet, client: &kube::Client) -> Result<AtRest, String> {
    let leader = &replicas.live[replicas.leader().await.map_err(|n| format!("{n} leaders"))?].op;
    let start = Instant::now();
    let (writes, keys) = (replicas.writes().await, sealing_keys(client, "mltenant-system").await.len());
    let decryptions = leader.metric("mltenant_decryptions_total", &[]).await;
    let reconciles = leader.successful_reconciles("tenant").await;
    assert!(writes > 0.0, "the replicas counted no write at all: the write counter does not count");
    let wanted = reconciles + fleet.members.len() as f64 + 2.0;
    while start.elapsed() < RESYNC + Duration::from_secs(10) || leader.successful_reconciles("tenant").await < wanted {
        if start.elapsed() > RESYNC + STEP_TIMEOUT {
            return Err(format!("fewer than {} tenant reconciles in {:?}", fleet.members.len(), start.elapsed()));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let key_creations = sealing_keys(client, "mltenant-system").await.len() - keys;
    let snap = fleet.snapshot().await?;
    let findings = fleet.check(&snap);
    if !findings.is_clean() {
        return Err(format!("not converged at the end of the window: {}", findings.summary()));
    }
    Ok(AtRest {
        writes: replicas.writes().await - writes - key_creations as f64,
        decryptions: leader.metric("mltenant_decryptions_total", &[]).await - decryptions,
        key_creations,
        reconciles: leader.successful_reconciles("tenant").await - reconciles,
        window: start.elapsed(),
    })
}
