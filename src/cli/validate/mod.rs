//! `mltenant validate -f FILE|DIR`: check MLTenant and SealedBundle manifests before they are
//! committed, the way the API server will check them on create: object metadata, then the
//! CRDs' own OpenAPI schema and CEL rules as generated from [`crate::api`] (read, not copied:
//! a new rule is checked as soon as it is in the CRD). Then what only the operator can tell:
//! the sealed format of every value and the tenant's namespace plan (their lines say that the
//! API server accepts what they refuse). `--server-dry-run` also asks the API server of the
//! current kubeconfig for its verdict. Manifests are read as kubectl reads them (YAML 1.1 plain
//! scalars: `yes` is a boolean; see [`yaml`]), so both judge the JSON `kubectl apply` sends.
//!
//! Every problem is one line naming the manifest and the field; any problem makes the command
//! fail, including a rule this offline check cannot evaluate.

pub mod error;
mod metadata;
mod rules;
mod schema;
mod server;
mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use kube::CustomResourceExt;
use kube::api::ApiResource;
use serde_json::Value;

use self::error::{ErrorKind, FieldError, Path as FieldPath};
use super::read_input;
use crate::api::environments;
use crate::api::{MLTenant, SealedBundle};
use crate::crypto;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A file with one or more YAML documents, a directory of `.yaml`/`.yml` files, or `-` for
    /// standard input.
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    /// Also ask the API server of the current kubeconfig (a dry-run create with strict field
    /// validation: nothing is stored).
    #[arg(long)]
    pub server_dry_run: bool,
}

/// The problems found, one line each; shown as one `error:` line per problem.
#[derive(Debug)]
pub struct Invalid(pub Vec<String>);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\nerror: "))
    }
}

impl std::error::Error for Invalid {}

/// One kind this command knows: its CRD (schema, status subresource) and where it is served.
struct Kind {
    crd: Value,
    resource: ApiResource,
}

impl Kind {
    fn of(kind: &str) -> Option<Self> {
        let (crd, resource) = match kind {
            "MLTenant" => (MLTenant::crd(), ApiResource::erase::<MLTenant>(&())),
            "SealedBundle" => (SealedBundle::crd(), ApiResource::erase::<SealedBundle>(&())),
            _ => return None,
        };
        Some(Self { crd: serde_json::to_value(crd).expect("a CRD serializes"), resource })
    }

    fn version(&self) -> Option<&Value> {
        self.crd["spec"]["versions"].as_array()?.iter().find(|v| v["name"] == self.resource.version.as_str())
    }
}

/// Validate every document of `args.file`; the summary lists what was checked.
pub async fn run(args: &Args) -> anyhow::Result<String> {
    let files = files(&args.file)?;
    let client = if args.server_dry_run {
        let config =
            kube::Config::infer().await.context("--server-dry-run needs a kubeconfig (KUBECONFIG or in-cluster)")?;
        Some(kube::Client::try_from(config).context("building the Kubernetes client")?)
    } else {
        None
    };
    let mut checked = Vec::new();
    let mut problems = Vec::new();
    for file in &files {
        let text = read_input(file)?;
        let text = std::str::from_utf8(&text).with_context(|| format!("{}: not UTF-8 text", file.display()))?;
        let documents = yaml::documents(text).map_err(|e| {
            anyhow!("{} document {}: not YAML as kubectl reads it: {}", file.display(), e.document, e.message)
        })?;
        for (index, document) in documents.into_iter().enumerate() {
            let origin = format!("{} document {}", file.display(), index + 1);
            let Some(document) = document else { continue };
            let (what, errors) = check(&document);
            let origin = format!("{origin} ({what})");
            problems.extend(errors.iter().map(|e| format!("{origin}: {e}")));
            if let Some(client) = &client
                && let Some(kind) = document.get("kind").and_then(Value::as_str).and_then(Kind::of)
            {
                let lines = server::verdict(client, &kind.resource, &document).await.with_context(|| origin.clone())?;
                problems.extend(lines.iter().map(|l| format!("{origin}: API server: {l}")));
            }
            checked.push(what);
        }
    }
    if checked.is_empty() {
        bail!("{}: no MLTenant or SealedBundle found", args.file.display());
    }
    if !problems.is_empty() {
        return Err(Invalid(problems).into());
    }
    Ok(format!("valid: {}", checked.join(", ")))
}

/// `path` itself, or the `.yaml`/`.yml` files of a directory, sorted.
fn files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files: Vec<_> = std::fs::read_dir(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: no .yaml files", path.display());
    }
    Ok(files)
}

/// Check one document offline: what it is (`MLTenant financial-ml`) and what is wrong with it.
pub fn check(document: &Value) -> (String, Vec<FieldError>) {
    let kind_name = document.get("kind").and_then(Value::as_str).unwrap_or_default();
    let generate_name = document.pointer("/metadata/generateName").and_then(Value::as_str).map(|p| format!("{p}*"));
    let name = document.pointer("/metadata/name").and_then(Value::as_str).filter(|n| !n.is_empty());
    let name = name.map(str::to_owned).or(generate_name).unwrap_or_else(|| "(unnamed)".into());
    let what = format!("{} {name}", if kind_name.is_empty() { "(no kind)" } else { kind_name });
    let root = FieldPath::root();
    let Some(kind) = Kind::of(kind_name) else {
        let error = FieldError::new(
            &root.child("kind"),
            ErrorKind::NotSupported,
            format!("{kind_name:?}: supported values: \"MLTenant\", \"SealedBundle\""),
        );
        return (what, vec![error]);
    };
    let api_version = kind.resource.api_version.as_str();
    if document.get("apiVersion").and_then(Value::as_str) != Some(api_version) {
        let error = FieldError::new(&root.child("apiVersion"), ErrorKind::Invalid, format!("must be {api_version}"));
        return (what, vec![error]);
    }
    let version = kind.version().expect("the CRD serves its own version");
    let schema = &version["schema"]["openAPIV3Schema"];

    let mut object = document.clone();
    let mut errors = Vec::new();
    if version.pointer("/subresources/status").is_some()
        && let Some(status) = object.as_object_mut().and_then(|map| map.remove("status"))
    {
        // With a status subresource, create ignores any status in the manifest, but decoding
        // it strictly still refuses unknown fields there (measured).
        let mut status_errors = Vec::new();
        let status_schema = &schema["properties"]["status"];
        schema::Checker::default().check(&status, status_schema, &root.child("status"), &[], &mut status_errors);
        errors.extend(status_errors.into_iter().filter(|e| e.kind == ErrorKind::Unknown));
    }
    metadata::check(object.get("metadata"), &mut errors);
    metadata::generate_name(&mut object);
    schema::prune_nulls(&mut object, Some(schema));
    schema::apply_defaults(&mut object, schema);
    schema::Checker::default().check(&object, schema, &root, &["apiVersion", "kind", "metadata"], &mut errors);
    if errors.iter().any(|e| e.kind.blocks_rules()) {
        errors.push(FieldError::new(
            &root,
            ErrorKind::Invalid,
            "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
        ));
        return (what, errors);
    }
    rules::Rules::default().check(&object, schema, &root, true, &mut errors);
    if errors.is_empty() {
        errors.extend(operator_checks(kind_name, &object));
    }
    (what, errors)
}

/// What the API server cannot know but the operator will refuse: a tenant whose namespaces
/// cannot be planned, a value that is not in the sealed format. Their lines say so
/// ([`ErrorKind::Operator`]): `kubectl apply` will succeed and the operator report the failure.
fn operator_checks(kind: &str, object: &Value) -> Vec<FieldError> {
    let spec = FieldPath::root().child("spec");
    match kind {
        "MLTenant" => match serde_json::from_value::<MLTenant>(object.clone()) {
            Ok(tenant) => {
                let environments = environments::plan(&tenant).err().map(|e| (spec.child("environments"), e));
                let readers = tenant.spec.check_readers().err().map(|e| (spec.child("secretReaders"), e));
                environments
                    .into_iter()
                    .chain(readers)
                    .map(|(at, e)| FieldError::new(&at, ErrorKind::Operator, e))
                    .collect()
            }
            Err(e) => {
                vec![FieldError::new(&spec, ErrorKind::Operator, format!("not an MLTenant the operator can read: {e}"))]
            }
        },
        "SealedBundle" => match serde_json::from_value::<SealedBundle>(object.clone()) {
            // The schema allows an empty encryptedData; a bundle without a value is a mistake.
            Ok(bundle) if bundle.spec.encrypted_data.is_empty() => {
                vec![FieldError::new(&spec.child("encryptedData"), ErrorKind::Operator, "holds no sealed value")]
            }
            Ok(bundle) => bundle
                .spec
                .encrypted_data
                .iter()
                .filter_map(|(key, value)| {
                    let path = spec.child("encryptedData").key(key);
                    crypto::check_format(value)
                        .err()
                        .map(|e| FieldError::new(&path, ErrorKind::Operator, e.to_string()))
                })
                .collect(),
            Err(e) => vec![FieldError::new(
                &spec,
                ErrorKind::Operator,
                format!("not a SealedBundle the operator can read: {e}"),
            )],
        },
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
