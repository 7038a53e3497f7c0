//! `mltenant rotate -f FILE`: have the operator re-seal every value of a SealedBundle to its
//! newest sealing key (after a key rotation, so old keys can eventually go). The plaintext never
//! leaves the operator; the caller needs `create` on `mltenants/rotate` for the tenant the
//! bundle is sealed for (a rule without resourceNames for a Cluster-scope bundle).

use std::path::PathBuf;

use anyhow::Context as _;

use super::operator::{self, Source};
use super::read_input;
use crate::api::SealedBundle;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The SealedBundle file; `-` reads standard input.
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    /// Rewrite the file instead of printing the re-sealed bundle.
    #[arg(long)]
    pub in_place: bool,
    #[command(flatten)]
    pub source: Source,
}

/// The re-sealed bundle as YAML, or `None` when the file was rewritten.
pub async fn run(args: Args) -> anyhow::Result<Option<String>> {
    anyhow::ensure!(
        !(args.in_place && args.file == std::path::Path::new("-")),
        "--in-place needs a file, not standard input"
    );
    let text = read_input(&args.file)?;
    let bundle: SealedBundle =
        serde_yaml::from_slice(&text).with_context(|| format!("{} is not a SealedBundle", args.file.display()))?;
    let answer = args.source.post_bundle("/v1/rotate", &bundle).await?;
    if answer.0 != 200 {
        return Err(operator::refused("/v1/rotate", &answer));
    }
    let rotated: SealedBundle =
        serde_yaml::from_str(&answer.1).context("the operator answered something that is not a SealedBundle")?;
    let yaml = serde_yaml::to_string(&rotated).context("encoding the SealedBundle")?;
    if args.in_place {
        std::fs::write(&args.file, yaml).with_context(|| format!("cannot write {}", args.file.display()))?;
        return Ok(None);
    }
    Ok(Some(yaml))
}
