//! The CRDs' bounds again at run time, from the same constants (`limits`): an object stored
//! under an older CRD, or with a CRD installed without its bounds, is refused by the operator
//! before anything is built from it. What is refused is named by its field and its bound,
//! never by its value (an attacker-sized value has no place in a condition or a log line).

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::limits::{self, *};
use super::{MLTenantSpec, SealedBundleSpec};

/// A field outside its bound: where (`spec.secrets[0].bundle`: indices, never map keys or
/// values) and which bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutOfBounds {
    pub field: String,
    pub bound: String,
}

impl fmt::Display for OutOfBounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is out of bounds: {}", self.field, self.bound)
    }
}

impl std::error::Error for OutOfBounds {}

type Checked = Result<(), OutOfBounds>;

fn out(field: impl Into<String>, bound: impl Into<String>) -> Checked {
    Err(OutOfBounds { field: field.into(), bound: bound.into() })
}

fn dns_label(field: &str, name: &str) -> Checked {
    if limits::fits(name, DNS_LABEL_MAX, DNS_LABEL_PATTERN) {
        return Ok(());
    }
    out(field, format!("must be a DNS-1123 label of at most {DNS_LABEL_MAX} characters"))
}

fn dns_subdomain(field: &str, name: &str) -> Checked {
    if limits::fits(name, DNS_SUBDOMAIN_MAX, DNS_SUBDOMAIN_PATTERN) {
        return Ok(());
    }
    out(field, format!("must be a DNS-1123 subdomain of at most {DNS_SUBDOMAIN_MAX} characters"))
}

fn items(field: &str, count: usize, min: usize, max: usize) -> Checked {
    if (min..=max).contains(&count) {
        return Ok(());
    }
    out(field, format!("must have {min} to {max} items"))
}

fn entries(field: &str, count: usize, max: usize) -> Checked {
    if count <= max {
        return Ok(());
    }
    out(field, format!("may have at most {max} entries"))
}

fn total(field: &str, map: &BTreeMap<String, String>, max: usize) -> Checked {
    if limits::map_chars(map) <= max {
        return Ok(());
    }
    out(field, format!("may hold at most {max} characters in all, keys and values together"))
}

/// A map of labels: entries, keys, values and size, as the CRD bounds it.
fn labels(field: &str, map: &BTreeMap<String, String>, max: usize) -> Checked {
    entries(field, map.len(), max)?;
    total(field, map, MAX_MAP_CHARS)?;
    if !map.keys().all(|k| limits::is_qualified_name(k, false)) {
        return out(
            field,
            "keys must be qualified names (an optional DNS subdomain prefix and '/', then at most 63 characters)",
        );
    }
    if !map.values().all(|v| limits::fits(v, LABEL_VALUE_MAX, LABEL_VALUE_PATTERN)) {
        return out(field, format!("values must be label values of at most {LABEL_VALUE_MAX} characters"));
    }
    Ok(())
}

/// A timestamp within the range the CRD allows.
pub fn time(field: &str, time: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> Checked {
    if limits::time_in_range(time.0) {
        return Ok(());
    }
    out(field, format!("must be a time from {EARLIEST_TIME} up to (not including) {END_OF_TIME}"))
}

impl MLTenantSpec {
    /// Every field within the bounds of the CRD (see `limits`).
    pub fn check_bounds(&self) -> Result<(), OutOfBounds> {
        items("spec.environments", self.environments.len(), 1, MAX_ENVIRONMENTS)?;
        for (i, env) in self.environments.iter().enumerate() {
            let at = format!("spec.environments[{i}]");
            dns_label(&format!("{at}.name"), &env.name)?;
            if let Some(namespace) = &env.namespace {
                dns_label(&format!("{at}.namespace"), namespace)?;
            }
            if let Some(map) = &env.labels {
                labels(&format!("{at}.labels"), map, MAX_LABELS)?;
            }
        }
        let secrets = self.secrets.as_deref().unwrap_or_default();
        items("spec.secrets", secrets.len(), 0, MAX_SECRETS)?;
        for (i, secret) in secrets.iter().enumerate() {
            let at = format!("spec.secrets[{i}]");
            dns_subdomain(&format!("{at}.name"), &secret.name)?;
            dns_subdomain(&format!("{at}.bundle"), &secret.bundle)?;
            if let Some(map) = &secret.environment_bundles {
                let field = format!("{at}.environmentBundles");
                entries(&field, map.len(), MAX_ENVIRONMENTS)?;
                total(&field, map, MAX_MAP_CHARS)?;
                if !map.values().all(|b| limits::fits(b, DNS_SUBDOMAIN_MAX, DNS_SUBDOMAIN_PATTERN)) {
                    return out(
                        field,
                        format!("values must be DNS-1123 subdomains of at most {DNS_SUBDOMAIN_MAX} characters"),
                    );
                }
            }
            if let Some(names) = &secret.environments {
                items(&format!("{at}.environments"), names.len(), 1, MAX_ENVIRONMENTS)?;
                for (j, name) in names.iter().enumerate() {
                    dns_label(&format!("{at}.environments[{j}]"), name)?;
                }
            }
        }
        let readers = self.secret_readers.as_deref().unwrap_or_default();
        items("spec.secretReaders", readers.len(), 0, MAX_READERS)?;
        for (i, reader) in readers.iter().enumerate() {
            let at = format!("spec.secretReaders[{i}]");
            dns_label(&format!("{at}.serviceAccount.namespace"), &reader.service_account.namespace)?;
            dns_subdomain(&format!("{at}.serviceAccount.name"), &reader.service_account.name)?;
            if let Some(names) = &reader.secrets {
                items(&format!("{at}.secrets"), names.len(), 1, MAX_SECRETS)?;
                for (j, name) in names.iter().enumerate() {
                    dns_subdomain(&format!("{at}.secrets[{j}]"), name)?;
                }
            }
        }
        Ok(())
    }
}

impl SealedBundleSpec {
    /// Every field within the bounds of the CRD (see `limits`). The number of values and the
    /// type have refusals of their own (`TooManyValues`, `UnsupportedType`), checked first.
    pub fn check_bounds(&self) -> Result<(), OutOfBounds> {
        if let Some(tenant) = &self.tenant {
            dns_subdomain("spec.tenant", tenant)?;
        }
        if let Some(environment) = &self.environment {
            dns_label("spec.environment", environment)?;
        }
        if let Some(selector) = &self.tenant_selector {
            check_selector(selector)?;
        }
        if let Some(template) = &self.template {
            if let Some(map) = &template.labels {
                labels("spec.template.labels", map, MAX_LABELS)?;
            }
            if let Some(map) = &template.annotations {
                let field = "spec.template.annotations";
                entries(field, map.len(), MAX_ANNOTATIONS)?;
                total(field, map, MAX_MAP_CHARS)?;
                if !map.keys().all(|k| limits::is_qualified_name(k, true)) {
                    return out(
                        field,
                        "keys must be qualified names (an optional DNS subdomain prefix and '/', then at most 63 characters)",
                    );
                }
                if !map.values().all(|v| limits::fits_length(v, MAX_ANNOTATION_VALUE)) {
                    return out(field, format!("values may have at most {MAX_ANNOTATION_VALUE} characters"));
                }
            }
        }
        if let Some(expires_at) = &self.expires_at {
            time("spec.expiresAt", expires_at)?;
        }
        let field = "spec.encryptedData";
        entries(field, self.encrypted_data.len(), MAX_VALUES)?;
        total(field, &self.encrypted_data, MAX_SEALED_DATA_CHARS)?;
        if !self.encrypted_data.keys().all(|k| limits::fits(k, SECRET_KEY_MAX, SECRET_KEY_PATTERN)) {
            return out(
                field,
                format!("keys must be Secret data keys ([-._a-zA-Z0-9]+) of at most {SECRET_KEY_MAX} characters"),
            );
        }
        if !self.encrypted_data.values().all(|v| limits::fits_length(v, MAX_SEALED_VALUE_CHARS)) {
            return out(field, format!("values may have at most {MAX_SEALED_VALUE_CHARS} characters"));
        }
        Ok(())
    }
}

fn check_selector(selector: &LabelSelector) -> Checked {
    if let Some(map) = &selector.match_labels {
        labels("spec.tenantSelector.matchLabels", map, MAX_SELECTOR_LABELS)?;
    }
    let expressions = selector.match_expressions.as_deref().unwrap_or_default();
    items("spec.tenantSelector.matchExpressions", expressions.len(), 0, MAX_SELECTOR_EXPRESSIONS)?;
    for (i, expression) in expressions.iter().enumerate() {
        let at = format!("spec.tenantSelector.matchExpressions[{i}]");
        if !limits::fits_length(&expression.key, QUALIFIED_NAME_MAX)
            || !limits::is_qualified_name(&expression.key, false)
        {
            return out(
                format!("{at}.key"),
                "must be a qualified name (an optional DNS subdomain prefix and '/', then at most 63 characters)",
            );
        }
        if !SELECTOR_OPERATORS.contains(&expression.operator.as_str()) {
            return out(format!("{at}.operator"), format!("must be one of {}", SELECTOR_OPERATORS.join(", ")));
        }
        let values = expression.values.as_deref().unwrap_or_default();
        items(&format!("{at}.values"), values.len(), 0, MAX_SELECTOR_VALUES)?;
        if !values.iter().all(|v| limits::fits(v, LABEL_VALUE_MAX, LABEL_VALUE_PATTERN)) {
            return out(
                format!("{at}.values"),
                format!("must be label values of at most {LABEL_VALUE_MAX} characters"),
            );
        }
    }
    Ok(())
}
