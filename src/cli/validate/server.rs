//! `--server-dry-run`: the API server of the current kubeconfig judges each manifest with a
//! dry-run create (`dryRun=All`, nothing is stored) and strict field validation, as
//! `kubectl apply` asks for. An object that already exists is judged as a dry-run replace of
//! it instead, so manifests already in the cluster can be checked too.

use anyhow::Context as _;
use kube::api::ApiResource;
use serde_json::Value;

/// Where the API server serves `kind` of `api_version`.
fn collection(resource: &ApiResource) -> String {
    format!("/apis/{}/{}/{}", resource.group, resource.version, resource.plural)
}

/// The API server's verdict on `document`: its error lines (`field: message`), empty when it
/// accepts the object.
pub async fn verdict(client: &kube::Client, resource: &ApiResource, document: &Value) -> anyhow::Result<Vec<String>> {
    let query = "dryRun=All&fieldValidation=Strict&fieldManager=mltenant-validate";
    let body = serde_json::to_vec(document)?;
    let create = http::Request::post(format!("{}?{query}", collection(resource)))
        .header("Content-Type", "application/json")
        .body(body.clone())?;
    match answer(client.request::<Value>(create).await)? {
        Some(lines) if lines.first().is_some_and(|l| l.starts_with("AlreadyExists")) => {}
        Some(lines) => return Ok(lines),
        None => return Ok(Vec::new()),
    }
    // Exists already: replace it, at its current resourceVersion, in a dry run.
    let name = document.pointer("/metadata/name").and_then(Value::as_str).context("an existing object has a name")?;
    let path = format!("{}/{name}", collection(resource));
    let live: Value = client.request(http::Request::get(&path).body(Vec::new())?).await?;
    let mut replacement = document.clone();
    replacement["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"].clone();
    let replace = http::Request::put(format!("{path}?{query}"))
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&replacement)?)?;
    Ok(answer(client.request::<Value>(replace).await)?.unwrap_or_default())
}

/// `None` when the server accepted the request; its error lines when it refused the object;
/// an error when it could not judge (unreachable, forbidden, ...).
fn answer(result: Result<Value, kube::Error>) -> anyhow::Result<Option<Vec<String>>> {
    match result {
        Ok(_) => Ok(None),
        Err(kube::Error::Api(status)) if matches!(status.code, 400 | 409 | 422) => {
            let causes: Vec<String> = status
                .details
                .iter()
                .flat_map(|d| &d.causes)
                .map(|c| if c.field.is_empty() { c.message.clone() } else { format!("{}: {}", c.field, c.message) })
                .collect();
            if status.reason == "AlreadyExists" {
                return Ok(Some(vec![format!("AlreadyExists: {}", status.message)]));
            }
            Ok(Some(if causes.is_empty() { vec![status.message.clone()] } else { causes }))
        }
        Err(e) => Err(e).context("the API server could not judge the manifest"),
    }
}
