//! The soak's figures: RSS slopes per replica (least squares), and the report text.

use std::fmt::Write as _;

use crate::replicas::{Ended, Sample};

/// The least-squares slope of `points` (x, y), None for fewer than three points or no spread.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let (mx, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// Samples of one phase (leading or standby), without the first `warmup` minutes of it: a
/// replica that starts leading fills its caches, a step rather than a trend.
fn phase(samples: &[Sample], leading: bool, warmup: f64) -> Vec<(f64, f64)> {
    let first = samples.iter().find(|s| s.leading == leading).map(|s| s.minute);
    let Some(first) = first else { return Vec::new() };
    samples
        .iter()
        .filter(|s| s.leading == leading && s.minute >= first + warmup)
        .map(|s| (s.minute, s.rss_kib as f64))
        .collect()
}

/// One line per replica: life, RSS, slope per phase.
pub fn rss_lines(replicas: &[Ended], out: &mut String) {
    for r in replicas {
        let Some((first, last)) = r.samples.first().zip(r.samples.last()) else {
            let _ = writeln!(out, "  replica #{}: no samples ({})", r.id, r.how);
            continue;
        };
        let max = r.samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
        let describe = |leading: bool| {
            let points = phase(&r.samples, leading, 1.0);
            // The later half alone: whether the growth of a new leader levels off.
            let later = &points[points.len() / 2..];
            match (slope(&points), slope(later)) {
                (Some(all), Some(late)) => {
                    format!("{all:+.0} KiB/min over {} samples (later half {late:+.0})", points.len())
                }
                _ => "too short".to_owned(),
            }
        };
        let _ = writeln!(
            out,
            "  replica #{}: minutes {:.1}-{:.1}, {}; RSS {} -> {} KiB (max {max}); slope leading {}, standby {}",
            r.id,
            first.minute,
            last.minute,
            r.how,
            first.rss_kib,
            last.rss_kib,
            describe(true),
            describe(false),
        );
    }
}

/// Every RSS sample: `replica,minute,rss_kib,leading`.
pub fn rss_csv(replicas: &[Ended]) -> String {
    let mut out = String::from("replica,minute,rss_kib,leading\n");
    for r in replicas {
        for s in &r.samples {
            let _ = writeln!(out, "{},{:.3},{},{}", r.id, s.minute, s.rss_kib, s.leading);
        }
    }
    out
}
