//! The operator's HTTP port flooded as any pod that can reach it would: RSA work through
//! `/v1/verify`, thousands of idle connections, connections churned from many addresses. What
//! they assert is a timing the kubelet enforces (a health probe answered within its default
//! 1 s timeout), so they run here, one at a time, where no other test competes for the cores.

use std::time::{Duration, Instant};

use mltenant_operator::api::BundleScope;
use mltenant_operator::crypto::Certificate;

use crate::harness::*;

#[tokio::test]
async fn a_verify_flood_leaves_healthz_answering() {
    let client = admin().await;
    let name = unique("flood");
    let op = Operator::start(&unique("run")).await;
    let cert = Certificate::from_pem(&op.get("/v1/cert.pem").await.1).unwrap();
    let values: Vec<(String, Vec<u8>)> = (0..128).map(|i| (format!("K{i}"), vec![b'v'; 32])).collect();
    let refs: Vec<(&str, &[u8])> = values.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
    let data = sealed(&cert, BundleScope::Tenant, &name, "", &refs);
    let body = bundle(&name, BundleScope::Tenant, Some(&name), None, data);
    drop(client);

    let token = token_of("MLTENANT_TEST_SEALER_KUBECONFIG");
    let op = std::sync::Arc::new(op);
    let deadline = Instant::now() + Duration::from_secs(8);
    let flooders: Vec<_> = (0..16)
        .map(|_| {
            let (op, body, token) = (op.clone(), body.clone(), token.clone());
            tokio::spawn(async move {
                let mut opened = 0;
                while Instant::now() < deadline {
                    opened += usize::from(op.post_bundle_as(Some(&token), "/v1/verify", &body).await.0 == 200);
                }
                opened
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    while Instant::now() < deadline {
        let start = Instant::now();
        assert_eq!(op.get("/healthz").await.0, 200);
        slowest = slowest.max(start.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut opened = 0;
    for flooder in flooders {
        opened += flooder.await.unwrap();
    }
    assert!(opened >= 10, "the flood opened only {opened} bundles of 128 values: it was no flood");
    println!("verify flood: {opened} bundles x 128 RSA decryptions in 8 s; slowest /healthz answer {slowest:?}");
    // A kubelet probe times out after 1 s by default: a probe that slow would restart the pod.
    assert!(slowest < Duration::from_secs(1), "/healthz took {slowest:?} under the flood");
}

/// Raise this process's soft limit on open files to `wanted` (at most the hard limit) with
/// util-linux's prlimit (the crate forbids unsafe code, so no setrlimit here); the soft limit
/// afterwards.
fn raise_open_files(wanted: u64) -> u64 {
    let limits = || {
        let text = std::fs::read_to_string("/proc/self/limits").unwrap();
        let line = text.lines().find(|l| l.starts_with("Max open files")).unwrap().to_owned();
        let parse = |field: &str| field.parse::<u64>().unwrap_or(u64::MAX);
        let fields: Vec<&str> = line.split_whitespace().collect();
        (parse(fields[3]), parse(fields[4]))
    };
    let (soft, hard) = limits();
    if soft < wanted {
        let target = wanted.min(hard);
        let raised = std::process::Command::new("prlimit")
            .args(["--pid", &std::process::id().to_string(), &format!("--nofile={target}:{hard}")])
            .output();
        assert!(raised.is_ok_and(|o| o.status.success()), "prlimit could not raise the open-files limit");
    }
    limits().0
}

/// Thousands of connections that never send a byte, from a hundred loopback addresses (more
/// than the per-address limit from each), and one that sends half a request head and stalls.
/// The operator holds at most its limit of them (the rest closed: the idle longest to make
/// room, those over an address's limit at once), its descriptors stay within the limit, and
/// `/healthz` keeps answering within the kubelet's default probe timeout, while they are opened
/// as fast as one client can and while they are held.
#[tokio::test]
async fn idle_connections_cannot_starve_health_probes() {
    use mltenant_operator::server::http::connections::{CLOSING, Limits};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let limits = Limits::default();
    let op = Operator::start(&unique("run")).await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], op.port()));
    let baseline_fds = op.open_fds().unwrap();
    let wanted = 4000;
    let files = raise_open_files(wanted + 1024);
    let count = usize::try_from(files.saturating_sub(1024)).unwrap_or(usize::MAX).min(wanted as usize);
    assert!(count >= 8 * limits.total, "{count} connections cannot show the limit of {}", limits.total);
    let per_address = limits.per_peer + 8;
    let metric = async |reason: &str| op.metric("mltenant_http_connections_closed_total", &[("reason", reason)]).await;

    let mut held = Vec::new();
    let mut most_fds = baseline_fds;
    let started = Instant::now();
    let opening = std::sync::atomic::AtomicBool::new(true);
    let prober = async {
        let mut slowest = Duration::ZERO;
        while opening.load(std::sync::atomic::Ordering::Relaxed) {
            let start = Instant::now();
            assert_eq!(op.get("/healthz").await.0, 200);
            slowest = slowest.max(start.elapsed());
            tokio::task::yield_now().await;
        }
        slowest
    };
    let flood = async {
        for i in 0..count {
            let host = 2 + i / per_address;
            let source =
                std::net::Ipv4Addr::new(127, 0, u8::try_from(host / 250).unwrap(), u8::try_from(host % 250).unwrap());
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind((source, 0).into()).unwrap();
            held.push(socket.connect(addr).await.unwrap_or_else(|e| panic!("connection {i} from {source}: {e}")));
            if i % 64 == 0 {
                most_fds = most_fds.max(op.open_fds().unwrap());
            }
            tokio::task::yield_now().await;
        }
        opening.store(false, std::sync::atomic::Ordering::Relaxed);
    };
    let (slowest_opening, ()) = tokio::join!(prober, flood);
    let opened_in = started.elapsed();
    assert!(slowest_opening < Duration::from_secs(1), "the slowest /healthz while opening took {slowest_opening:?}");

    // The limits were reached: this request's connection makes the server full, and it closed
    // connections over each address's limit and the idle longest to make room.
    let open = op.metric("mltenant_http_connections", &[]).await;
    assert_eq!(open, limits.total as f64, "connections the server holds while {count} are opened");
    let over_address = metric("peer_limit").await;
    let evicted = metric("evicted_idle").await;
    let addresses = count / per_address;
    assert!(
        over_address >= (addresses * (per_address - limits.per_peer)) as f64,
        "{over_address} closed over the limit"
    );
    assert!(evicted >= (count - limits.total) as f64 - over_address, "{evicted} idle connections closed");
    // What the attacker holds: no more than the limit; the server closed the rest.
    let still_open = wait_until("the server to close all but its limit", TIMEOUT, || {
        let open = held
            .iter()
            .filter(|s| matches!(s.try_read(&mut [0; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock))
            .count();
        async move { if open <= limits.total { Ok(open) } else { Err(format!("{open} still open")) } }
    })
    .await;

    // Health probes get in, each within the kubelet's default timeout (1 s).
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let start = Instant::now();
        assert_eq!(op.get("/healthz").await.0, 200);
        slowest = slowest.max(start.elapsed());
    }
    assert!(slowest < Duration::from_secs(1), "the slowest /healthz took {slowest:?}");
    most_fds = most_fds.max(op.open_fds().unwrap());
    assert!(
        most_fds <= baseline_fds + limits.total + CLOSING + 8,
        "the operator held {most_fds} descriptors ({baseline_fds} before, a limit of {} connections)",
        limits.total
    );
    println!(
        "{count} idle connections opened in {opened_in:?} (slowest /healthz meanwhile {slowest_opening:?}): {still_open} left open, {over_address} closed over an address's limit, {evicted} evicted; descriptors {baseline_fds} -> at most {most_fds}; slowest of 20 /healthz while they are held {slowest:?}"
    );
    drop(held);
    wait_until("the server to see the flood go", TIMEOUT, || async {
        let open = op.metric("mltenant_http_connections", &[]).await;
        if open <= 1.0 { Ok(()) } else { Err(format!("{open} connections")) }
    })
    .await;

    // Slowloris: half a request head, then nothing. The header-read timer closes it, not
    // eviction (nothing else is open).
    let timeouts = metric("header_timeout").await;
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: operator\r\nX-Slow: ").await.unwrap();
    let start = Instant::now();
    let read = tokio::time::timeout(limits.header_read + Duration::from_secs(10), slow.read(&mut [0; 64])).await;
    let waited = start.elapsed();
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "the stalled connection is still open after {waited:?}: {read:?}");
    assert!(
        waited >= limits.header_read - Duration::from_secs(1),
        "closed after {waited:?}, before the header timeout"
    );
    assert!(metric("header_timeout").await > timeouts, "the close was not counted as a header timeout");
}

/// Any pod with many source addresses (here 12 loopback addresses) opens and drops connections
/// as fast as it can, 32 per address, so that each new one evicts the connection idle longest;
/// meanwhile a kubelet's probe asks /healthz every 100 ms: never two in a row may fail (a
/// security review's attack, which held).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connection_churn_from_many_addresses_leaves_probes_answering() {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let run = unique("run");
    let op = Operator::start_with(&run, &[]).await;
    let port = op.port();
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for a in 2..14u8 {
        let (stop, opened) = (stop.clone(), opened.clone());
        tasks.push(tokio::spawn(async move {
            let mut held = std::collections::VecDeque::new();
            while !stop.load(Ordering::Relaxed) {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, a), 0))).unwrap();
                if let Ok(stream) = socket.connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await {
                    held.push_back(stream);
                    opened.fetch_add(1, Ordering::Relaxed);
                }
                if held.len() >= 32 {
                    held.pop_front();
                }
            }
        }));
    }
    let (mut failed, mut slowest, mut streak, mut longest_streak) = (0, Duration::ZERO, 0, 0);
    let base = format!("http://127.0.0.1:{port}");
    let probes = 150;
    for _ in 0..probes {
        let start = Instant::now();
        let answer = tokio::time::timeout(
            Duration::from_secs(1),
            mltenant_operator::cli::operator::direct(&base, "GET", "/healthz", &[], b""),
        )
        .await;
        let took = start.elapsed();
        match answer {
            Ok(Ok((200, _))) => {
                slowest = slowest.max(took);
                streak = 0;
            }
            other => {
                failed += 1;
                streak += 1;
                longest_streak = longest_streak.max(streak);
                println!(
                    "probe failed after {took:?}: {:?}",
                    other.map(|r| r.map(|(s, _)| s).map_err(|e| e.to_string()))
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let evicted = op.metric("mltenant_http_connections_closed_total", &[]).await;
    println!(
        "connections opened by the attacker: {}, closed by the server: {evicted}; probes failed: {failed}/{probes} (longest streak {longest_streak}), slowest answered {slowest:?}",
        opened.load(Ordering::Relaxed)
    );
    assert!(longest_streak < 3, "three health probes in a row failed: a kubelet restarts the pod");
}
