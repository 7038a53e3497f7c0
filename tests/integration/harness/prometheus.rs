//! A real Prometheus server per test, for the alert-rule and dashboard tests.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::process::{Child, Command};

use super::operator::{free_port, http_get};
use super::{Operator, TIMEOUT, logs, unique, url_encode, wait_for};

/// A real Prometheus server (the Debian package's, `hack/prometheus.sh`) on loopback, scraping
/// one test operator every second and evaluating the chart's alert rules file, unchanged, every
/// second. Its data directory is its own (removed afterwards); its log is a test log, printed
/// when the test fails.
pub struct Prometheus {
    child: Child,
    port: u16,
    dir: PathBuf,
}

/// The rule file the chart ships (also the PrometheusRule's spec).
pub const ALERT_RULES: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/charts/mltenant-operator/files/prometheus-rules.yaml");

impl Prometheus {
    /// Start Prometheus scraping `op` as job `mltenant-operator` (the job the rules and the
    /// dashboard select) and wait until it is ready.
    pub async fn start(op: &Operator) -> Self {
        let config = format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}\n\
             rule_files: [{ALERT_RULES:?}]\n\
             scrape_configs:\n\
             - job_name: mltenant-operator\n  static_configs: [{{targets: ['127.0.0.1:{}']}}]\n",
            op.port()
        );
        Self::start_with(&config).await
    }

    /// Start Prometheus with the configuration `config` (prometheus.yml) and wait until it is
    /// ready.
    pub async fn start_with(config: &str) -> Self {
        let binary = std::env::var_os("MLTENANT_TEST_PROMETHEUS").unwrap_or_else(|| {
            panic!("MLTENANT_TEST_PROMETHEUS is not set: run the integration tests with hack/test-integration.sh")
        });
        let dir = std::env::temp_dir().join(unique("mltenant-prometheus"));
        std::fs::create_dir_all(dir.join("data")).expect("create the Prometheus directory");
        std::fs::write(dir.join("prometheus.yml"), config).expect("write prometheus.yml");
        let (log, _) = logs::create("prometheus");
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus { child, port, dir };
        wait_for("Prometheus /-/ready", TIMEOUT, || async {
            http_get(prometheus.port, "/-/ready").await.filter(|(status, _)| *status == 200)
        })
        .await;
        prometheus
    }

    /// GET an API path; the `data` of a successful answer.
    pub async fn api(&self, path_and_query: &str) -> serde_json::Value {
        let (status, body) = http_get(self.port, path_and_query)
            .await
            .unwrap_or_else(|| panic!("Prometheus does not answer GET {path_and_query}"));
        let answer: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path_and_query}: {e}: {body}"));
        assert!(status == 200 && answer["status"] == "success", "GET {path_and_query}: {status} {body}");
        answer["data"].clone()
    }

    /// An instant query: the result vector (or scalar) now.
    pub async fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let data = self.api(&format!("/api/v1/query?query={}", url_encode(promql))).await;
        match &data["result"] {
            serde_json::Value::Array(series) => series.clone(),
            scalar => vec![serde_json::json!({"metric": {}, "value": scalar})],
        }
    }

    /// A range query over the last `seconds` with a one-second step: the result matrix.
    pub async fn query_range(&self, promql: &str, seconds: u64) -> Vec<serde_json::Value> {
        let end = jiff::Timestamp::now().as_second();
        let start = end - i64::try_from(seconds).expect("a short range");
        let path = format!("/api/v1/query_range?query={}&start={start}&end={end}&step=1", url_encode(promql));
        self.api(&path).await["result"].as_array().cloned().unwrap_or_default()
    }

    /// The active alerts (pending or firing), each as (alertname, state, labels).
    pub async fn alerts(&self) -> Vec<(String, String, serde_json::Value)> {
        let data = self.api("/api/v1/alerts").await;
        data["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                let name = a["labels"]["alertname"].as_str().unwrap_or_default().to_owned();
                (name, a["state"].as_str().unwrap_or_default().to_owned(), a["labels"].clone())
            })
            .collect()
    }

    /// Every alerting rule, as (name, health, lastError, lastEvaluation).
    pub async fn rules(&self) -> Vec<(String, String, String, jiff::Timestamp)> {
        let data = self.api("/api/v1/rules").await;
        let mut rules = Vec::new();
        for group in data["groups"].as_array().into_iter().flatten() {
            for rule in group["rules"].as_array().into_iter().flatten() {
                let text = |k: &str| rule[k].as_str().unwrap_or_default().to_owned();
                let evaluated = text("lastEvaluation").parse().unwrap_or(jiff::Timestamp::UNIX_EPOCH);
                rules.push((text("name"), text("health"), text("lastError"), evaluated));
            }
        }
        rules
    }

    /// Wait until every rule has been evaluated after `since` (so its result reflects what
    /// Prometheus had scraped by then).
    pub async fn wait_rules_evaluated_after(&self, since: jiff::Timestamp) {
        wait_for("every alert rule to be evaluated again", TIMEOUT, || async {
            let rules = self.rules().await;
            (!rules.is_empty() && rules.iter().all(|(_, _, _, at)| *at > since)).then_some(())
        })
        .await;
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
