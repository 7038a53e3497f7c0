//! The operator replicas of the soak: two at a time sharing one Lease, the leader replaced
//! every few minutes (SIGTERM or SIGKILL, then a new replica), each one's RSS sampled.

use std::time::{Duration, Instant};

use crate::harness::Operator;
use crate::harness::operator::parse_metric;

/// One RSS sample: minutes since the soak started, KiB, whether the replica led then.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub minute: f64,
    pub rss_kib: u64,
    pub leading: bool,
}

pub struct Replica {
    pub id: usize,
    pub op: Operator,
    pub samples: Vec<Sample>,
}

/// A replica that is no longer running, and how it ended.
pub struct Ended {
    pub id: usize,
    pub samples: Vec<Sample>,
    pub how: String,
}

pub struct Replicas {
    run_id: String,
    args: Vec<String>,
    started: Instant,
    pub live: Vec<Replica>,
    pub ended: Vec<Ended>,
    next_id: usize,
    /// Per leader replacement: the signal, and how long until another replica led.
    pub takeovers: Vec<(&'static str, Duration)>,
}

/// Whether `op` says it leads (None: it does not answer).
pub async fn leads(op: &Operator) -> Option<bool> {
    let (_, text) = op.try_get("/metrics").await?;
    Some(parse_metric(&text, "mltenant_leader", &[]) == 1.0)
}

impl Replicas {
    pub fn new(run_id: &str, args: &[&str], started: Instant) -> Self {
        Replicas {
            run_id: run_id.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            started,
            live: Vec::new(),
            ended: Vec::new(),
            next_id: 0,
            takeovers: Vec::new(),
        }
    }

    /// Start one more replica and wait until it is ready.
    pub async fn start(&mut self) {
        self.next_id += 1;
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let op = Operator::start_with(&self.run_id, &args).await;
        self.live.push(Replica { id: self.next_id, op, samples: Vec::new() });
    }

    /// The index of the replica that leads, if exactly one does; the count otherwise.
    pub async fn leader(&self) -> Result<usize, usize> {
        let mut leaders = Vec::new();
        for (i, r) in self.live.iter().enumerate() {
            if leads(&r.op).await == Some(true) {
                leaders.push(i);
            }
        }
        if leaders.len() == 1 { Ok(leaders[0]) } else { Err(leaders.len()) }
    }

    /// Sample every live replica's RSS.
    pub async fn sample(&mut self) {
        let minute = self.started.elapsed().as_secs_f64() / 60.0;
        for r in &mut self.live {
            let leading = leads(&r.op).await == Some(true);
            if let Some(rss_kib) = r.op.rss_kib() {
                r.samples.push(Sample { minute, rss_kib, leading });
            }
        }
    }

    /// Replicas that exited on their own: removed (and reported by the caller), with a
    /// replacement started for each.
    pub async fn reap_dead(&mut self) -> Vec<String> {
        let mut dead = Vec::new();
        let mut i = 0;
        while i < self.live.len() {
            if self.live[i].op.is_running() {
                i += 1;
                continue;
            }
            let r = self.live.remove(i);
            dead.push(format!("replica #{} exited on its own (log {})", r.id, r.op.log_path().display()));
            self.ended.push(Ended { id: r.id, samples: r.samples, how: "exited on its own".into() });
        }
        for _ in 0..dead.len() {
            self.start().await;
        }
        dead
    }

    /// Stop the leader (SIGKILL when `kill`, else SIGTERM, which must end in exit 0 within
    /// 30 s), start a new replica, and wait (up to 2 minutes) until a replica leads again.
    pub async fn replace_leader(&mut self, kill: bool) -> Result<(), String> {
        let index = self.leader().await.map_err(|n| format!("{n} replicas lead, not one"))?;
        let mut r = self.live.remove(index);
        let minute = self.started.elapsed().as_secs_f64() / 60.0;
        if let Some(rss_kib) = r.op.rss_kib() {
            r.samples.push(Sample { minute, rss_kib, leading: true });
        }
        let stopped = Instant::now();
        let how = if kill {
            r.op.kill().await;
            "SIGKILL".to_owned()
        } else {
            let status = r.op.terminate(Duration::from_secs(30)).await;
            if !status.success() {
                return Err(format!("replica #{} exited with {status} on SIGTERM", r.id));
            }
            "SIGTERM".to_owned()
        };
        self.ended.push(Ended { id: r.id, samples: r.samples, how: format!("{how} while leading") });
        self.start().await;
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if self.leader().await.is_ok() {
                self.takeovers.push((if kill { "SIGKILL" } else { "SIGTERM" }, stopped.elapsed()));
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(format!("no replica led within 2 minutes of the leader's {how}"))
    }

    /// Write requests of every live replica, summed.
    pub async fn writes(&self) -> f64 {
        let mut sum = 0.0;
        for r in &self.live {
            sum += r.op.writes().await;
        }
        sum
    }

    /// Stop every replica with SIGTERM.
    pub async fn stop_all(&mut self) {
        for mut r in std::mem::take(&mut self.live) {
            let minute = self.started.elapsed().as_secs_f64() / 60.0;
            let leading = leads(&r.op).await == Some(true);
            if let Some(rss_kib) = r.op.rss_kib() {
                r.samples.push(Sample { minute, rss_kib, leading });
            }
            let status = r.op.terminate(Duration::from_secs(30)).await;
            self.ended.push(Ended { id: r.id, samples: r.samples, how: format!("SIGTERM at the end ({status})") });
        }
    }
}
