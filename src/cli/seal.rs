//! `mltenant seal`: print a ready-to-commit SealedBundle, or add keys to an existing one.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, bail, ensure};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use serde_json::json;
use zeroize::Zeroizing;

use super::{check_key, read_input};
use crate::api::limits::DOCKER_CONFIG_JSON;
use crate::api::{BundleScope, SealedBundle, SealedBundleSpec};
use crate::crypto::{self, Certificate};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
#[value(rename_all = "PascalCase")]
pub enum Scope {
    Cluster,
    Tenant,
    Environment,
}

impl From<Scope> for BundleScope {
    fn from(scope: Scope) -> Self {
        match scope {
            Scope::Cluster => BundleScope::Cluster,
            Scope::Tenant => BundleScope::Tenant,
            Scope::Environment => BundleScope::Environment,
        }
    }
}

/// The sealed format `mltenant seal` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "lower")]
pub enum FormatArg {
    /// Format v2: one data key per sealing run, one RSA operation per bundle, several recipients.
    V2,
    /// kubeseal's format (`kubeseal --raw` reads and writes it): one RSA operation per value.
    Kubeseal,
}

impl From<FormatArg> for crypto::Format {
    fn from(format: FormatArg) -> Self {
        match format {
            FormatArg::V2 => crypto::Format::V2,
            FormatArg::Kubeseal => crypto::Format::Kubeseal,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Name of the SealedBundle (required unless --merge-into).
    #[arg(long)]
    pub name: Option<String>,
    /// Who may open it: Cluster, Tenant or Environment (case-insensitive).
    #[arg(long, value_enum, ignore_case = true)]
    pub scope: Option<Scope>,
    /// The consuming MLTenant (Tenant and Environment scope).
    #[arg(long)]
    pub tenant: Option<String>,
    /// The consuming environment (Environment scope).
    #[arg(long)]
    pub environment: Option<String>,
    /// Cluster scope: labels of the MLTenants allowed to use it, `k=v,k2=v2`; '' allows every tenant.
    #[arg(long)]
    pub tenant_selector: Option<String>,
    /// Secret type of the produced Secrets (default Opaque; the docker flags set kubernetes.io/dockerconfigjson).
    #[arg(long = "type")]
    pub type_: Option<String>,
    /// KEY=VALUE lines (`#` comments and blank lines skipped); `-` reads standard input. Repeatable.
    #[arg(long)]
    pub from_env_file: Vec<PathBuf>,
    /// KEY=PATH: the whole file (any bytes) as one value; PATH `-` reads standard input. Repeatable.
    #[arg(long)]
    pub from_file: Vec<String>,
    /// KEY=VALUE. Repeatable. The value ends up in shell history: prefer --from-env-file for secrets.
    #[arg(long)]
    pub from_literal: Vec<String>,
    /// Registry for a kubernetes.io/dockerconfigjson bundle (e.g. ghcr.io).
    #[arg(long, requires_all = ["docker_username", "docker_password_stdin"])]
    pub docker_server: Option<String>,
    #[arg(long, requires = "docker_server")]
    pub docker_username: Option<String>,
    /// Read the registry password (or token) from standard input.
    #[arg(long, requires = "docker_server")]
    pub docker_password_stdin: bool,
    /// When the credentials stop working, from now (e.g. 90d).
    #[arg(long, conflicts_with = "expires_at", value_parser = crate::cli::parse_span)]
    pub expires_in: Option<std::time::Duration>,
    /// When the credentials stop working (RFC 3339).
    #[arg(long)]
    pub expires_at: Option<jiff::Timestamp>,
    /// The operator's certificate (from `mltenant cert`), for sealing offline. Repeat it (or give
    /// a directory of *.pem / *.crt files) to seal one bundle every listed cluster opens (v2).
    #[arg(long)]
    pub cert: Vec<PathBuf>,
    /// The sealed format: v2 (default for a new bundle) or kubeseal. With --merge-into, the
    /// file's format unless given.
    #[arg(long, value_enum, ignore_case = true)]
    pub format: Option<FormatArg>,
    #[command(flatten)]
    pub source: super::operator::Source,
    /// Ask the operator whether the result opens before printing it (POST /v1/verify; needs
    /// `create` on mltenants/verify for the tenant, see `sealers` in the chart).
    #[arg(long)]
    pub verify: bool,
    /// Add or replace keys in this SealedBundle file (rewritten in place); its scope is used.
    #[arg(long)]
    pub merge_into: Option<PathBuf>,
}

/// Run `mltenant seal`: the bundle YAML to print, or `None` when a file was rewritten.
pub async fn run(args: Args) -> anyhow::Result<Option<String>> {
    let values = collect_values(&args)?;
    ensure!(
        !values.is_empty(),
        "no values to seal: give --from-env-file, --from-file, --from-literal or the --docker-* flags"
    );
    let certs = certificates(&args).await?;

    let mut bundle = match &args.merge_into {
        Some(path) => {
            let text = read_input(path)?;
            let existing: SealedBundle =
                serde_yaml::from_slice(&text).with_context(|| format!("{} is not a SealedBundle", path.display()))?;
            check_same_scope(&args, &existing.spec)?;
            existing
        }
        None => new_bundle(&args)?,
    };
    let format = match (args.format, &args.merge_into) {
        (Some(format), _) => format.into(),
        (None, Some(_)) => format_of(&bundle),
        (None, None) => crypto::Format::V2,
    };
    let spec = &mut bundle.spec;
    let label = crypto::label(
        spec.scope,
        spec.tenant.as_deref().unwrap_or_default(),
        spec.environment.as_deref().unwrap_or_default(),
    );
    let recipients: Vec<&Certificate> = certs.iter().map(|(_, cert)| cert).collect();
    match format {
        crypto::Format::Kubeseal => {
            ensure!(
                recipients.len() == 1,
                "--format kubeseal seals for one certificate; {} given (format v2 takes several)",
                recipients.len()
            );
            for (key, value) in &values {
                let sealed = crypto::seal(recipients[0], &label, value).with_context(|| format!("sealing {key}"))?;
                spec.encrypted_data.insert(key.clone(), crypto::encode_base64(&sealed));
            }
        }
        crypto::Format::V2 => {
            // One data key for this run, wrapped once per recipient; every value under it.
            let sealer = crypto::Sealer::new(&recipients, &label).context("wrapping the data key")?;
            for (key, value) in &values {
                let sealed = sealer.seal(key, value).with_context(|| format!("sealing {key}"))?;
                spec.encrypted_data.insert(key.clone(), crypto::encode_base64(&sealed));
            }
        }
    }
    check_total_size(&bundle)?;
    if args.type_.is_some() || args.docker_server.is_some() {
        bundle.spec.type_ = args.type_.clone().or_else(|| Some(DOCKER_CONFIG_JSON.to_owned()));
    }
    check_for_type(&bundle, &values, args.merge_into.is_none())?;
    let spec = &mut bundle.spec;
    if let Some(expires) = expires(&args)? {
        spec.expires_at = Some(Time(expires));
    }
    if args.verify {
        verify(&args.source, &bundle).await?;
    }
    let yaml = serde_yaml::to_string(&bundle).context("encoding the SealedBundle")?;
    match &args.merge_into {
        Some(path) => {
            std::fs::write(path, yaml).with_context(|| format!("cannot write {}", path.display()))?;
            Ok(None)
        }
        None => Ok(Some(yaml)),
    }
}

/// The certificates to seal for, each with where it came from: `--cert` files and the
/// certificates in `--cert` directories, or the operator's current one. Expired ones and a key
/// given twice are refused.
async fn certificates(args: &Args) -> anyhow::Result<Vec<(String, Certificate)>> {
    let mut texts: Vec<(String, String)> = Vec::new();
    if args.cert.is_empty() {
        texts.push(("the operator's certificate".to_owned(), super::cert::fetch(&args.source).await?));
    }
    for path in &args.cert {
        let files = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .filter_map(|entry| Some(entry.ok()?.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "pem" || e == "crt"))
                .collect();
            files.sort();
            ensure!(!files.is_empty(), "{} holds no *.pem or *.crt certificate", path.display());
            files
        } else {
            vec![path.clone()]
        };
        for file in files {
            let text = String::from_utf8(read_input(&file)?)
                .with_context(|| format!("{} is not a PEM text", file.display()))?;
            texts.push((file.display().to_string(), text));
        }
    }
    let mut certs: Vec<(String, Certificate)> = Vec::new();
    for (origin, pem) in texts {
        let cert = Certificate::from_pem(&pem).with_context(|| format!("cannot use {origin}"))?;
        if cert.is_expired_at(jiff::Timestamp::now()) {
            bail!("{origin} expired at {}; fetch the current one with `mltenant cert`", cert.not_after());
        }
        if let Some((first, _)) = certs.iter().find(|(_, c)| c.fingerprint() == cert.fingerprint()) {
            bail!("{origin} is the same key as {first} ({})", cert.fingerprint());
        }
        certs.push((origin, cert));
    }
    ensure!(
        certs.len() <= crypto::v2::MAX_RECIPIENTS,
        "{} certificates: a bundle names at most {} recipients",
        certs.len(),
        crypto::v2::MAX_RECIPIENTS
    );
    Ok(certs)
}

/// The format of an existing bundle: kubeseal's when every value is in it, else v2.
fn format_of(bundle: &SealedBundle) -> crypto::Format {
    let v2 = bundle
        .spec
        .encrypted_data
        .values()
        .any(|v| crypto::decode_base64(v).is_ok_and(|raw| crypto::Format::of(&raw) == crypto::Format::V2));
    if v2 || bundle.spec.encrypted_data.is_empty() { crypto::Format::V2 } else { crypto::Format::Kubeseal }
}

/// Refuse a bundle the API server would refuse for its size (1.5 MiB of `encryptedData`): many
/// recipients times many values add up (each value carries every wrapped key).
fn check_total_size(bundle: &SealedBundle) -> anyhow::Result<()> {
    let total: usize = bundle.spec.encrypted_data.iter().map(|(k, v)| k.len() + v.len()).sum();
    let limit = crate::api::limits::MAX_SEALED_DATA_CHARS;
    ensure!(
        total <= limit,
        "the sealed values take {total} bytes, over the {limit} a SealedBundle may hold: fewer recipients or values per bundle"
    );
    Ok(())
}

/// Have the operator open the bundle for the consumer its scope names; a refusal is the error.
async fn verify(source: &super::operator::Source, bundle: &SealedBundle) -> anyhow::Result<()> {
    let answer = source.post_bundle("/v1/verify", bundle).await?;
    match answer.0 {
        200 => Ok(()),
        422 => {
            let reason: serde_json::Value = serde_json::from_str(&answer.1).unwrap_or_default();
            bail!(
                "the operator cannot open the sealed bundle: {}",
                reason["message"].as_str().unwrap_or(answer.1.trim())
            )
        }
        _ => Err(super::operator::refused("/v1/verify", &answer)),
    }
}

/// Refuse, before anything is printed, a bundle the operator would refuse: a type outside the
/// allowed list, too many values, or (when every value is known, i.e. not merging) values the
/// type does not accept.
fn check_for_type(
    bundle: &SealedBundle,
    values: &BTreeMap<String, Zeroizing<Vec<u8>>>,
    complete: bool,
) -> anyhow::Result<()> {
    if let Err(refusal) = crate::unseal::payload::check_claims(bundle) {
        let failure =
            crate::unseal::Failure::Refused { bundle: bundle.metadata.name.clone().unwrap_or_default(), refusal };
        bail!("{failure}");
    }
    let type_ = crate::unseal::payload::secret_type(bundle);
    if complete && let Err((key, problem)) = crate::unseal::payload::check_values(type_, values) {
        bail!("type {type_}: key {key} {problem}");
    }
    Ok(())
}

fn new_bundle(args: &Args) -> anyhow::Result<SealedBundle> {
    let name = args.name.clone().context("--name is required (or --merge-into FILE)")?;
    let scope: BundleScope = args.scope.context("--scope is required: Cluster, Tenant or Environment")?.into();
    let needs_tenant = scope != BundleScope::Cluster;
    ensure!(
        args.tenant.is_some() == needs_tenant,
        "--tenant is {} for {scope:?} scope",
        if needs_tenant { "required" } else { "not allowed" }
    );
    let needs_env = scope == BundleScope::Environment;
    ensure!(
        args.environment.is_some() == needs_env,
        "--environment is {} for {scope:?} scope",
        if needs_env { "required" } else { "not allowed" }
    );
    let selector = match (&args.tenant_selector, scope) {
        (Some(text), BundleScope::Cluster) => Some(parse_selector(text)?),
        (None, BundleScope::Cluster) => bail!("Cluster scope needs --tenant-selector (use '' to allow every tenant)"),
        (Some(_), _) => bail!("--tenant-selector is only for Cluster scope"),
        (None, _) => None,
    };
    Ok(SealedBundle::new(
        &name,
        SealedBundleSpec {
            tenant: args.tenant.clone(),
            environment: args.environment.clone(),
            tenant_selector: selector,
            ..SealedBundleSpec::new(scope, BTreeMap::new())
        },
    ))
}

/// Flags given with --merge-into must agree with the file: a value sealed for another scope
/// would not open.
fn check_same_scope(args: &Args, spec: &SealedBundleSpec) -> anyhow::Result<()> {
    if let Some(scope) = args.scope {
        ensure!(BundleScope::from(scope) == spec.scope, "--scope differs from the bundle's scope {:?}", spec.scope);
    }
    for (flag, given, existing) in
        [("--tenant", &args.tenant, &spec.tenant), ("--environment", &args.environment, &spec.environment)]
    {
        ensure!(given.is_none() || given == existing, "{flag} differs from the bundle's ({existing:?})");
    }
    Ok(())
}

/// `k=v,k2=v2` as matchLabels; empty selects every tenant.
fn parse_selector(text: &str) -> anyhow::Result<LabelSelector> {
    let mut labels = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').with_context(|| format!("--tenant-selector: {pair:?} is not key=value"))?;
        labels.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    Ok(LabelSelector { match_labels: (!labels.is_empty()).then_some(labels), ..Default::default() })
}

fn expires(args: &Args) -> anyhow::Result<Option<jiff::Timestamp>> {
    Ok(match (args.expires_in, args.expires_at) {
        (Some(span), _) => {
            Some(jiff::Timestamp::now() + jiff::SignedDuration::try_from(span).context("--expires-in is too long")?)
        }
        (None, at) => at,
    })
}

/// Every KEY=VALUE from the env files, the literals and the docker flags, later ones winning.
fn collect_values(args: &Args) -> anyhow::Result<BTreeMap<String, Zeroizing<Vec<u8>>>> {
    let mut values = BTreeMap::new();
    for path in &args.from_env_file {
        let text = Zeroizing::new(read_input(path)?);
        let text = std::str::from_utf8(&text).with_context(|| format!("{} is not UTF-8 text", path.display()))?;
        for (number, line) in text.lines().enumerate() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let origin = format!("{} line {}", path.display(), number + 1);
            let (key, value) = line.split_once('=').with_context(|| format!("{origin}: not KEY=VALUE"))?;
            check_key(key, &origin)?;
            values.insert(key.to_owned(), Zeroizing::new(value.as_bytes().to_vec()));
        }
    }
    for pair in &args.from_file {
        let (key, path) = pair.split_once('=').context("--from-file takes KEY=PATH")?;
        check_key(key, "--from-file")?;
        values.insert(key.to_owned(), Zeroizing::new(read_input(std::path::Path::new(path))?));
    }
    for literal in &args.from_literal {
        let (key, value) = literal.split_once('=').context("--from-literal takes KEY=VALUE")?;
        check_key(key, "--from-literal")?;
        values.insert(key.to_owned(), Zeroizing::new(value.as_bytes().to_vec()));
    }
    if let Some(server) = &args.docker_server {
        let user = args.docker_username.as_deref().unwrap_or_default();
        let password = Zeroizing::new(read_input(std::path::Path::new("-"))?);
        let password = std::str::from_utf8(&password)
            .context("the registry password is not UTF-8")?
            .trim_end_matches(['\r', '\n']);
        ensure!(!password.is_empty(), "--docker-password-stdin: standard input is empty");
        use base64::Engine as _;
        let auth = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")));
        let config = json!({"auths": {server: {"username": user, "password": password, "auth": auth.as_str()}}});
        values.insert(".dockerconfigjson".to_owned(), Zeroizing::new(config.to_string().into_bytes()));
    }
    Ok(values)
}
