//! `mltenant rotate -f FILE|DIR`: have the operator re-seal every value of SealedBundles to its
//! newest sealing key (after a key rotation, so old keys can be retired). The plaintext never
//! leaves the operator; the caller needs `create` on `mltenants/rotate` for the tenant each
//! bundle is sealed for (a rule without resourceNames for a Cluster-scope bundle).
//!
//! With `--in-place` every file is rewritten where it is, and only the ciphertexts change: the
//! new values replace the old ones in the file's own text, so comments, field order, quoting
//! and every other field stay byte-identical (a value that is not written on one line in the
//! file is refused rather than the file reformatted). A directory is walked for `*.yaml` and
//! `*.yml` files (hidden directories skipped); documents other than SealedBundles are left
//! alone. The scope of each output is the input's: the operator re-seals under the label the
//! bundle's own claims give, and nothing else of the bundle is taken from its answer.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail, ensure};
use serde::Deserialize as _;

use super::operator::{self, Source};
use super::read_input;
use super::seal::FormatArg;
use crate::api::SealedBundle;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A SealedBundle file, a directory of manifests (walked for *.yaml, *.yml), or `-`.
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    /// Rewrite the files instead of printing the re-sealed bundles; prints which files changed.
    #[arg(long)]
    pub in_place: bool,
    /// Convert every value to this format (default: each value keeps its own).
    #[arg(long, value_enum, ignore_case = true)]
    pub format: Option<FormatArg>,
    #[command(flatten)]
    pub source: Source,
}

/// What to print: the re-sealed bundle(s) as YAML, or with `--in-place` the files changed.
pub async fn run(args: Args) -> anyhow::Result<Option<String>> {
    let stdin = args.file == Path::new("-");
    ensure!(!(args.in_place && stdin), "--in-place needs a file or directory, not standard input");
    let files = if args.file.is_dir() { manifests(&args.file)? } else { vec![args.file.clone()] };
    ensure!(args.in_place || files.len() == 1, "a directory needs --in-place");
    let mut printed = String::new();
    let mut changed = Vec::new();
    for file in &files {
        let text = String::from_utf8(read_input(file)?).with_context(|| format!("{} is not UTF-8", file.display()))?;
        let (rewritten, bundles) = rotate_text(&text, &args, file).await?;
        if args.in_place {
            if bundles > 0 && rewritten != text {
                std::fs::write(file, &rewritten).with_context(|| format!("cannot write {}", file.display()))?;
                changed.push(file.display().to_string());
            }
        } else {
            printed = rewritten;
        }
    }
    if args.in_place {
        let mut report = String::new();
        for file in &changed {
            report.push_str(&format!("rotated {file}\n"));
        }
        report.push_str(&format!("{} of {} files changed\n", changed.len(), files.len()));
        return Ok(Some(report));
    }
    Ok(Some(printed))
}

/// Every `*.yaml` / `*.yml` file under `dir`, sorted, hidden directories (`.git`) skipped.
fn manifests(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let path = entry?.path();
            let hidden = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if path.is_dir() {
                if !hidden {
                    pending.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// `text` with every SealedBundle document's values re-sealed by the operator, substituted in
/// place; and how many bundles it held.
async fn rotate_text(text: &str, args: &Args, file: &Path) -> anyhow::Result<(String, usize)> {
    let mut out = text.to_owned();
    let mut bundles = 0;
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml::Value::deserialize(document)
            .with_context(|| format!("{} document {} is not YAML", file.display(), index + 1))?;
        if value.get("kind").and_then(serde_yaml::Value::as_str) != Some("SealedBundle") {
            continue;
        }
        let bundle: SealedBundle = serde_yaml::from_value(value)
            .with_context(|| format!("{} document {} is not a SealedBundle", file.display(), index + 1))?;
        let endpoint = match args.format {
            None => "/v1/rotate".to_owned(),
            Some(FormatArg::V2) => "/v1/rotate?format=v2".to_owned(),
            Some(FormatArg::Kubeseal) => "/v1/rotate?format=kubeseal".to_owned(),
        };
        let answer = args.source.post_bundle(&endpoint, &bundle).await?;
        if answer.0 != 200 {
            return Err(operator::refused("/v1/rotate", &answer)).with_context(|| {
                format!("{}: SealedBundle {}", file.display(), bundle.metadata.name.as_deref().unwrap_or(""))
            });
        }
        let rotated: SealedBundle =
            serde_yaml::from_str(&answer.1).context("the operator answered something that is not a SealedBundle")?;
        for (key, old) in &bundle.spec.encrypted_data {
            let Some(new) = rotated.spec.encrypted_data.get(key) else {
                bail!("the operator's answer lacks key {key}");
            };
            // Base64 values are long and unique: the one occurrence of the old text is the value.
            match out.matches(old.as_str()).count() {
                1 => out = out.replacen(old.as_str(), new, 1),
                _ => bail!(
                    "{}: the value of {key} is not written on one line (or appears twice); rewrite it as a plain scalar first",
                    file.display()
                ),
            }
        }
        ensure!(
            rotated.spec.encrypted_data.len() == bundle.spec.encrypted_data.len(),
            "the operator's answer has other keys than the bundle"
        );
        bundles += 1;
    }
    Ok((out, bundles))
}
