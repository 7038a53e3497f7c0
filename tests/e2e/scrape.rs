//! Prometheus (2.42, Debian's version, built from its Go module with the Kubernetes service
//! discovery Debian's package leaves out) scraping the operator's pods as the chart ships them: the scrape configuration is the one prometheus-operator would generate from the
//! chart's ServiceMonitor (rendered with `serviceMonitor.enabled=true`): endpoints of Services
//! in the release's namespace whose labels match its selector, its port name and path, the
//! Service's name as the job. Only the interval is shorter (2 s, not 30 s), for the test's
//! sake. Service discovery goes through the API server as a ServiceAccount with the usual
//! Prometheus RBAC; the scrapes go over the pod network.

use serde_yaml::Value;

use crate::cluster::*;
use crate::harness::{ALERT_RULES, Prometheus};

/// The chart's ServiceMonitor, as `helm template` renders it for the release.
fn service_monitor() -> Value {
    let out = helm(&[
        "template",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
        "--set",
        "serviceMonitor.enabled=true",
        "--show-only",
        "templates/servicemonitor.yaml",
    ]);
    serde_yaml::from_str(&ok("helm template the ServiceMonitor", out)).expect("the ServiceMonitor parses")
}

/// Prometheus' name for a Service label in service discovery.
fn meta_label(label: &str) -> String {
    let sanitized: String = label.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("__meta_kubernetes_service_label_{sanitized}")
}

/// The scrape configuration equivalent to the ServiceMonitor, evaluating the chart's rules.
pub fn config() -> String {
    let monitor = service_monitor();
    let namespace = monitor["metadata"]["namespace"].as_str().expect("a namespace");
    let name = monitor["metadata"]["name"].as_str().expect("a name");
    let endpoint = &monitor["spec"]["endpoints"][0];
    let port = endpoint["port"].as_str().expect("an endpoint port name");
    let path = endpoint["path"].as_str().unwrap_or("/metrics");
    let mut relabel = String::new();
    for (label, value) in monitor["spec"]["selector"]["matchLabels"].as_mapping().expect("matchLabels") {
        let (label, value) = (label.as_str().unwrap(), value.as_str().unwrap());
        relabel += &format!("  - {{action: keep, source_labels: [{}], regex: '{value}'}}\n", meta_label(label));
    }
    relabel +=
        &format!("  - {{action: keep, source_labels: [__meta_kubernetes_endpoint_port_name], regex: '{port}'}}\n");
    for (from, to) in
        [("namespace", "namespace"), ("service_name", "service"), ("pod_name", "pod"), ("service_name", "job")]
    {
        relabel += &format!("  - {{source_labels: [__meta_kubernetes_{from}], target_label: {to}}}\n");
    }
    format!(
        "global: {{scrape_interval: 2s, scrape_timeout: 2s, evaluation_interval: 1s}}\n\
         rule_files: [{ALERT_RULES:?}]\n\
         scrape_configs:\n\
         - job_name: serviceMonitor/{namespace}/{name}/0\n  metrics_path: {path}\n  kubernetes_sd_configs:\n  \
         - {{role: endpoints, kubeconfig_file: {:?}, namespaces: {{names: [{namespace}]}}}}\n  relabel_configs:\n{relabel}",
        env("MLTENANT_E2E_PROMETHEUS_KUBECONFIG"),
    )
}

pub async fn start() -> Prometheus {
    Prometheus::start_with(&config()).await
}

/// The active targets: (job, scrape URL, health).
pub async fn targets(prometheus: &Prometheus) -> Vec<(String, String, String)> {
    let data = prometheus.api("/api/v1/targets?state=active").await;
    data["activeTargets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
            (text(&t["labels"]["job"]), text(&t["scrapeUrl"]), text(&t["health"]))
        })
        .collect()
}

/// The value of an instant query that yields one number (NaN when it yields nothing).
pub async fn number(prometheus: &Prometheus, promql: &str) -> f64 {
    let result = prometheus.query(promql).await;
    result.first().and_then(|s| s["value"][1].as_str()).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}
