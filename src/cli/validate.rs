//! `mltenant validate -f FILE`: check MLTenant and SealedBundle manifests offline, before they
//! are committed: structure, naming rules, scope claims and the sealed format of every value.

use std::path::Path;

use anyhow::{Context as _, bail};
use kube::ResourceExt;
use serde::Deserialize;

use super::read_input;
use crate::api::{BundleScope, MLTenant, SealedBundle};
use crate::crypto;
use crate::reconcile::tenant::environments;

/// Validate every document of `path` (a file, `-`, or a directory of `.yaml`/`.yml` files); the
/// summary lists what was checked.
pub fn run(path: &Path) -> anyhow::Result<String> {
    if path.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        files.sort();
        let summaries = files.iter().map(|f| validate_file(f)).collect::<anyhow::Result<Vec<_>>>()?;
        if summaries.is_empty() {
            bail!("{}: no .yaml files", path.display());
        }
        return Ok(format!("valid: {}", summaries.join(", ")));
    }
    validate_file(path).map(|summary| format!("valid: {summary}"))
}

fn validate_file(path: &Path) -> anyhow::Result<String> {
    let text = read_input(path)?;
    let mut checked = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_slice(&text).enumerate() {
        let value =
            serde_yaml::Value::deserialize(document).with_context(|| format!("document {}: not YAML", index + 1))?;
        if value.is_null() {
            continue;
        }
        let kind = value.get("kind").and_then(serde_yaml::Value::as_str).unwrap_or_default().to_owned();
        let origin = format!("{} document {}", path.display(), index + 1);
        match kind.as_str() {
            "MLTenant" => {
                let tenant: MLTenant =
                    serde_yaml::from_value(value).with_context(|| format!("{origin}: invalid MLTenant"))?;
                environments::plan(&tenant)
                    .map_err(|e| anyhow::anyhow!("{origin}: MLTenant {}: {e}", tenant.name_any()))?;
                checked.push(format!("MLTenant {}", tenant.name_any()));
            }
            "SealedBundle" => {
                let bundle: SealedBundle =
                    serde_yaml::from_value(value).with_context(|| format!("{origin}: invalid SealedBundle"))?;
                check_bundle(&bundle)
                    .map_err(|e| anyhow::anyhow!("{origin}: SealedBundle {}: {e}", bundle.name_any()))?;
                checked.push(format!("SealedBundle {}", bundle.name_any()));
            }
            other => bail!("{origin}: kind {other:?} is neither MLTenant nor SealedBundle"),
        }
    }
    if checked.is_empty() {
        bail!("{}: no MLTenant or SealedBundle found", path.display());
    }
    Ok(checked.join(", "))
}

fn check_bundle(bundle: &SealedBundle) -> anyhow::Result<()> {
    let spec = &bundle.spec;
    let cluster = spec.scope == BundleScope::Cluster;
    if spec.tenant.is_some() == cluster {
        bail!("tenant is required for Tenant and Environment scope and not allowed for Cluster scope");
    }
    if spec.environment.is_some() != (spec.scope == BundleScope::Environment) {
        bail!("environment is required for Environment scope and allowed only there");
    }
    if spec.tenant_selector.is_some() != cluster {
        bail!("tenantSelector is required for Cluster scope (use {{}} to allow every tenant) and allowed only there");
    }
    if spec.encrypted_data.is_empty() {
        bail!("encryptedData is empty");
    }
    for (key, value) in &spec.encrypted_data {
        super::check_key(key, "encryptedData")?;
        crypto::check_format(value).map_err(|e| anyhow::anyhow!("key {key}: {e}"))?;
    }
    Ok(())
}
