//! The HTTP server's connections, accepted by one loop that bounds what the process holds for
//! them, so that peers opening connections they never use cannot take the file descriptors or
//! the memory, and a kubelet probe always gets in:
//!
//! * at most [`Limits::total`] connections at once: when they are all taken, the one idle
//!   longest (no request in flight; a connection that has not finished sending a request head
//!   is idle) is closed to make room, and only if every one has a request in flight, the one
//!   whose request has waited longest; a deep listen queue ([`BACKLOG`]) holds a burst of new
//!   ones meanwhile, so a probe's SYN is not dropped;
//! * at most [`Limits::per_peer`] from one IP address: one more is closed at once;
//! * a request head must arrive within [`Limits::header_read`] of the connection's start or of
//!   the previous answer (hyper's header-read timer, which runs whenever the connection waits
//!   for a head, so it is the keep-alive idle timeout too), and may not exceed
//!   [`Limits::max_header_bytes`].
//!
//! What happens to a connection is counted in `mltenant_http_connections` (open now) and
//! `mltenant_http_connections_closed_total{reason}` (a closed set: [`Closed`]), or the audit
//! sink's own pair ([`Counters`]). A server with TLS (the audit sink) completes the handshake
//! within the header-read time too, and hands each request the client's certificate, if it
//! presented one the handshake verified ([`PeerCertificate`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tower::ServiceExt as _;

use crate::metrics::Counters;

/// What the server holds at most.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections open at once.
    pub total: usize,
    /// Connections open at once from one IP address.
    pub per_peer: usize,
    /// Time to receive a request head, from the connection's start or the previous answer.
    pub header_read: Duration,
    /// Bytes a request head may take (hyper's read buffer; at least 8 KiB).
    pub max_header_bytes: usize,
}

impl Default for Limits {
    /// 256 connections: far more than the operator's callers need (kubelet probes, Prometheus,
    /// the API server's service proxy), few enough that their buffers stay within a few MiB. 32
    /// per address: the proxy and Prometheus each come from one. 10 s for a head; 32 KiB for
    /// it (a bearer token is 1-2 KiB).
    fn default() -> Self {
        Limits { total: 256, per_peer: 32, header_read: Duration::from_secs(10), max_header_bytes: 32 * 1024 }
    }
}

/// Why the server closed a connection itself: the `reason` label of
/// `mltenant_http_connections_closed_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// Over the per-address limit: closed as soon as accepted.
    PeerLimit,
    /// Idle longest when the total limit was reached: closed to make room.
    EvictedIdle,
    /// Every connection had a request in flight: the longest-waiting one closed to make room.
    EvictedBusy,
    /// No room was made in time (a connection evicted did not close): the new one closed.
    Full,
    /// No complete request head within the header-read time.
    HeaderTimeout,
    /// No TLS handshake within the header-read time, or one that failed (a client certificate
    /// the configured CA did not sign, among others).
    Handshake,
}

impl Closed {
    pub const ALL: [Closed; 6] = [
        Closed::PeerLimit,
        Closed::EvictedIdle,
        Closed::EvictedBusy,
        Closed::Full,
        Closed::HeaderTimeout,
        Closed::Handshake,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Closed::PeerLimit => "peer_limit",
            Closed::EvictedIdle => "evicted_idle",
            Closed::EvictedBusy => "evicted_busy",
            Closed::Full => "full",
            Closed::HeaderTimeout => "header_timeout",
            Closed::Handshake => "tls_handshake",
        }
    }
}

/// The client certificate a TLS connection presented, verified by the handshake (an extension of
/// each of its requests).
#[derive(Clone, Debug)]
pub struct PeerCertificate(pub Arc<rustls_pki_types::CertificateDer<'static>>);

/// How long the accept loop waits for an evicted connection to close before giving up on the
/// new one. An evicted connection's task closes it as soon as it runs again.
const EVICTION_WAIT: Duration = Duration::from_secs(1);

/// Evicted connections whose sockets may still be closing while new ones are admitted: the
/// accept loop goes on without waiting for each, and the descriptors held stay within the
/// limit plus this many.
pub const CLOSING: usize = 16;

/// Connections the kernel completes and queues before the server accepts them (capped by
/// `net.core.somaxconn`). A burst of new connections fills it faster than the loop accepts; a
/// probe whose SYN finds it full is dropped and only retried a second later, which is a
/// kubelet's whole timeout. Rust's and tokio's default is 128.
pub const BACKLOG: u32 = 4096;

/// A listener on `addr` with a [`BACKLOG`]-deep queue.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Serve `router` on `listener` (see [`listen`]) within `limits`, behind `tls` when given,
/// until the future is dropped.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    counters: Counters,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::io::Result<()> {
    for reason in Closed::ALL {
        counters.closed_by(reason.label(), 0);
    }
    let registry = Arc::new(Registry { state: Mutex::default(), counters: counters.clone() });
    // One permit per socket, released only once it is closed: the registry holds at most
    // `total` connections, and at most `CLOSING` more evicted ones may be closing.
    let slots = Arc::new(Semaphore::new(limits.total + CLOSING));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .max_buf_size(limits.max_header_bytes.max(8 * 1024));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                if !is_connection_error(&error) {
                    // Out of descriptors or memory: give what is open a moment to finish.
                    tracing::warn!(%error, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
        };
        let peer = peer.ip().to_canonical();
        if registry.open_from(peer) >= limits.per_peer {
            counters.closed_by(Closed::PeerLimit.label(), 1);
            continue;
        }
        if registry.open() >= limits.total
            && let Some(evicted) = registry.evict()
        {
            counters.closed_by(evicted.label(), 1);
        }
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            // More evicted connections still closing than `CLOSING`: wait for one.
            Err(_) => match tokio::time::timeout(EVICTION_WAIT, slots.clone().acquire_owned()).await {
                Ok(Ok(slot)) => slot,
                _ => {
                    counters.closed_by(Closed::Full.label(), 1);
                    continue;
                }
            },
        };
        let (id, evicted) = registry.insert(peer);
        let ticket = Ticket { registry: registry.clone(), id, _slot: slot };
        let connection = Accepted { builder: builder.clone(), router: router.clone(), registry: registry.clone(), id };
        let (counters, tls) = (counters.clone(), tls.clone());
        tokio::spawn(async move {
            let served = async {
                match tls {
                    None => connection.serve(stream, None, &counters).await,
                    Some(acceptor) => match tokio::time::timeout(limits.header_read, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let certificate = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).cloned();
                            let peer = certificate.map(|c| PeerCertificate(Arc::new(c.into_owned())));
                            connection.serve(stream, peer, &counters).await;
                        }
                        _ => counters.closed_by(Closed::Handshake.label(), 1),
                    },
                }
            };
            tokio::select! {
                () = served => {}
                // Evicted: dropping the connection closes its socket.
                _ = evicted => {}
            }
            // Only now, the socket closed, is its slot given back.
            drop(ticket);
        });
    }
}

/// What serving one accepted connection needs.
struct Accepted {
    builder: hyper::server::conn::http1::Builder,
    router: Router,
    registry: Arc<Registry>,
    id: u64,
}

impl Accepted {
    /// Serve requests on `io` until it closes, each marked in flight while it is, and carrying
    /// `peer` when there is one.
    async fn serve<IO>(self, io: IO, peer: Option<PeerCertificate>, counters: &Counters)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Accepted { builder, router, registry, id } = self;
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            let in_flight = registry.request_started(id);
            if let Some(peer) = &peer {
                request.extensions_mut().insert(peer.clone());
            }
            let router = router.clone();
            async move {
                let response = router.oneshot(request).await;
                drop(in_flight);
                response
            }
        });
        if builder.serve_connection(TokioIo::new(io), service).await.is_err_and(|error| error.is_timeout()) {
            counters.closed_by(Closed::HeaderTimeout.label(), 1);
        }
    }
}

/// Errors of one connection that `accept` reports (it was reset before being accepted, ...):
/// nothing to wait for.
fn is_connection_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(error.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset)
}

/// The open connections: who they are from, whether a request is in flight and since when.
struct Registry {
    state: Mutex<State>,
    counters: Counters,
}

#[derive(Default)]
struct State {
    next_id: u64,
    open: HashMap<u64, Connection>,
    per_peer: HashMap<IpAddr, usize>,
}

struct Connection {
    peer: IpAddr,
    in_flight: usize,
    /// When it was accepted, or its last request started or was answered.
    since: Instant,
    close: oneshot::Sender<()>,
}

impl Registry {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn open(&self) -> usize {
        self.state().open.len()
    }

    fn open_from(&self, peer: IpAddr) -> usize {
        self.state().per_peer.get(&peer).copied().unwrap_or(0)
    }

    /// Register a connection from `peer`: its id, and what resolves when it is evicted.
    fn insert(&self, peer: IpAddr) -> (u64, oneshot::Receiver<()>) {
        let (close, evicted) = oneshot::channel();
        let mut state = self.state();
        let id = state.next_id;
        state.next_id += 1;
        state.open.insert(id, Connection { peer, in_flight: 0, since: Instant::now(), close });
        *state.per_peer.entry(peer).or_default() += 1;
        self.counters.opened(state.open.len());
        (id, evicted)
    }

    fn remove(&self, id: u64) -> Option<Connection> {
        let mut state = self.state();
        let connection = state.open.remove(&id)?;
        if let Some(count) = state.per_peer.get_mut(&connection.peer) {
            *count -= 1;
            if *count == 0 {
                state.per_peer.remove(&connection.peer);
            }
        }
        self.counters.opened(state.open.len());
        Some(connection)
    }

    /// Close the connection [`victim`] picks; which kind it was.
    fn evict(&self) -> Option<Closed> {
        let id = victim(self.state().open.iter().map(|(id, c)| (*id, c.in_flight > 0, c.since)))?;
        let connection = self.remove(id)?;
        // Its task may have ended meanwhile; then there is nothing left to close.
        let _ = connection.close.send(());
        Some(if connection.in_flight > 0 { Closed::EvictedBusy } else { Closed::EvictedIdle })
    }

    /// Mark a request in flight on `id` until the returned guard is dropped.
    fn request_started(self: &Arc<Self>, id: u64) -> InFlight {
        if let Some(connection) = self.state().open.get_mut(&id) {
            connection.in_flight += 1;
            connection.since = Instant::now();
        }
        InFlight { registry: self.clone(), id }
    }
}

/// The connection to close to make room: the one idle longest, else the one whose request has
/// been in flight longest. Entries are (id, a request in flight, since when).
fn victim(connections: impl Iterator<Item = (u64, bool, Instant)>) -> Option<u64> {
    connections.min_by_key(|&(_, busy, since)| (busy, since)).map(|(id, ..)| id)
}

/// A request in flight on a connection; dropped when it is answered (or abandoned).
struct InFlight {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(connection) = self.registry.state().open.get_mut(&self.id) {
            connection.in_flight = connection.in_flight.saturating_sub(1);
            connection.since = Instant::now();
        }
    }
}

/// A connection's place: its registry entry and its slot, given back when dropped.
struct Ticket {
    registry: Arc<Registry>,
    id: u64,
    _slot: OwnedSemaphorePermit,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpStream;

    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn the_idle_longest_goes_first_then_the_longest_in_flight() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        type Open<'a> = &'a [(u64, bool, Instant)];
        let rows: [(&str, Open, Option<u64>); 5] = [
            ("nothing open", &[], None),
            ("idle longest", &[(1, false, at(5)), (2, false, at(1)), (3, false, at(9))], Some(2)),
            ("idle before busy, however old", &[(1, true, at(0)), (2, false, at(9))], Some(2)),
            ("all busy: the longest in flight", &[(1, true, at(7)), (2, true, at(3))], Some(2)),
            ("a probe just answered is the youngest idle", &[(1, false, at(1)), (9, false, at(10))], Some(1)),
        ];
        for (name, connections, expected) in rows {
            assert_eq!(victim(connections.iter().copied()), expected, "{name}");
        }
    }

    /// A server on a free loopback port with `limits`, its metrics, and its address.
    async fn server(limits: Limits) -> (std::net::SocketAddr, Arc<Metrics>) {
        let listener = listen(([127, 0, 0, 1], 0).into()).unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::new(Default::default()));
        let router = Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
        tokio::spawn(serve(listener, router, limits, metrics.http_counters(), None));
        (addr, metrics)
    }

    async fn connect_from(source: [u8; 4], addr: std::net::SocketAddr) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((std::net::Ipv4Addr::from(source), 0).into()).unwrap();
        socket.connect(addr).await.unwrap()
    }

    /// Send a GET /healthz on `stream` (keep-alive) and read the answer's status line.
    async fn healthz(stream: &mut TcpStream) -> String {
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
        let mut answer = vec![0; 256];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer)).await.unwrap().unwrap();
        String::from_utf8_lossy(&answer[..n]).lines().next().unwrap_or_default().to_owned()
    }

    /// Whether the server closed `stream` (EOF or reset) within `within`.
    async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
        let mut byte = [0; 1];
        matches!(tokio::time::timeout(within, stream.read(&mut byte)).await, Ok(Ok(0) | Err(_)))
    }

    fn closed_count(metrics: &Metrics, reason: Closed) -> u64 {
        let text = metrics.render();
        let series = format!("mltenant_http_connections_closed_total{{reason=\"{}\"}} ", reason.label());
        text.lines().find_map(|l| l.strip_prefix(&series)?.parse().ok()).unwrap_or(0)
    }

    #[tokio::test]
    async fn when_full_the_idle_longest_is_closed_and_the_newcomer_served() {
        let limits = Limits { total: 4, per_peer: 10, header_read: Duration::from_secs(30), ..Limits::default() };
        let (addr, metrics) = server(limits).await;
        let mut idle = Vec::new();
        for _ in 0..4 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        // One of them answered a request: it is no longer the idle longest.
        assert_eq!(healthz(&mut idle[0]).await, "HTTP/1.1 200 OK");
        let mut probe = TcpStream::connect(addr).await.unwrap();
        assert_eq!(healthz(&mut probe).await, "HTTP/1.1 200 OK", "the newcomer is served");
        assert!(closed_within(&mut idle[1], Duration::from_secs(5)).await, "the idle longest was closed");
        assert_eq!(closed_count(&metrics, Closed::EvictedIdle), 1);
        assert_eq!(healthz(&mut idle[0]).await, "HTTP/1.1 200 OK", "the recently used one stays");
        assert!(metrics.render().contains("mltenant_http_connections 4\n"), "{}", metrics.render());
    }

    #[tokio::test]
    async fn one_address_over_its_limit_is_closed_at_once_others_still_get_in() {
        let limits = Limits { total: 100, per_peer: 3, header_read: Duration::from_secs(30), ..Limits::default() };
        let (addr, metrics) = server(limits).await;
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(connect_from([127, 0, 0, 2], addr).await);
        }
        // The fourth from 127.0.0.2 is closed unanswered; 127.0.0.3 is another peer.
        let mut over = connect_from([127, 0, 0, 2], addr).await;
        assert!(closed_within(&mut over, Duration::from_secs(5)).await);
        assert_eq!(closed_count(&metrics, Closed::PeerLimit), 1);
        let mut other = connect_from([127, 0, 0, 3], addr).await;
        assert_eq!(healthz(&mut other).await, "HTTP/1.1 200 OK");
        // Once one closes, the address may connect again (as soon as the server has seen it go).
        drop(held.pop());
        let status = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let mut stream = connect_from([127, 0, 0, 2], addr).await;
                if stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").await.is_ok() {
                    let mut answer = vec![0; 64];
                    if let Ok(n) = stream.read(&mut answer).await
                        && n > 0
                    {
                        return String::from_utf8_lossy(&answer[..n]).into_owned();
                    }
                }
            }
        })
        .await
        .expect("the address gets in again once under its limit");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    }

    #[tokio::test]
    async fn a_head_that_does_not_arrive_in_time_closes_the_connection_also_between_requests() {
        let limits = Limits { header_read: Duration::from_millis(300), ..Limits::default() };
        let (addr, metrics) = server(limits).await;
        let start = Instant::now();
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ").await.unwrap();
        assert!(closed_within(&mut slow, Duration::from_secs(5)).await, "a partial head is cut off");
        assert!(start.elapsed() >= Duration::from_millis(300), "not before the header-read time");
        let mut silent = TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut silent, Duration::from_secs(5)).await, "a connection that sends nothing");
        // Keep-alive: the timer runs again once the answer is sent.
        let mut kept = TcpStream::connect(addr).await.unwrap();
        assert_eq!(healthz(&mut kept).await, "HTTP/1.1 200 OK");
        assert!(closed_within(&mut kept, Duration::from_secs(5)).await, "an idle keep-alive connection");
        assert!(closed_count(&metrics, Closed::HeaderTimeout) >= 2, "{}", metrics.render());
    }
}
