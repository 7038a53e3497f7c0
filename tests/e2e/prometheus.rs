//! Prometheus discovers the operator's pods through the chart's Service with the chart's
//! ServiceMonitor selector (crate::scrape), scrapes both over the pod network, and evaluates
//! the chart's alert rules on them.

use std::collections::BTreeSet;
use std::time::Instant;

use crate::cluster::*;
use crate::harness::{admin, wait_until};
use crate::scrape;

#[tokio::test]
async fn prometheus_scrapes_the_pods_the_service_monitor_selects() {
    let _pods = shared().await;
    let client = admin().await;
    installed(&client).await;
    let start = Instant::now();
    let prometheus = scrape::start().await;
    let expected: BTreeSet<String> = pods(&client)
        .await
        .iter()
        .filter(|p| is_ready(p))
        .map(|p| format!("http://{}:8080/metrics", pod_ip(p)))
        .collect();
    assert_eq!(expected.len(), 2);
    wait_until("both pods scraped and up", ROLLOUT, || async {
        let targets = scrape::targets(&prometheus).await;
        let up: BTreeSet<String> = targets
            .iter()
            .filter(|(job, _, health)| job == RELEASE && health == "up")
            .map(|(_, url, _)| url.clone())
            .collect();
        (up == expected).then_some(()).ok_or(format!("targets {targets:?}"))
    })
    .await;
    println!("e2e: Prometheus scraped both pods through service discovery {:.1?} after it started", start.elapsed());
    wait_until("one leader among the scraped replicas", ROLLOUT, || async {
        let leaders = scrape::number(&prometheus, &format!("sum(mltenant_leader{{job=\"{RELEASE}\"}})")).await;
        let up = scrape::number(&prometheus, &format!("sum(up{{job=\"{RELEASE}\"}})")).await;
        (leaders == 1.0 && up == 2.0).then_some(()).ok_or(format!("leaders {leaders}, up {up}"))
    })
    .await;
    prometheus.wait_rules_evaluated_after(jiff::Timestamp::now()).await;
    let rules = prometheus.rules().await;
    assert!(!rules.is_empty());
    for (name, health, error, _) in &rules {
        assert!(health == "ok" && error.is_empty(), "rule {name}: {health} {error}");
    }
    let down: Vec<_> =
        prometheus.alerts().await.into_iter().filter(|(name, _, _)| name == "MLTenantOperatorDown").collect();
    assert!(down.is_empty(), "MLTenantOperatorDown with both pods up: {down:?}");
}
