//! `mltenant rotate -f FILE|DIR`: have the operator re-seal every value of SealedBundles to its
//! newest sealing key (after a key rotation, so old keys can be retired). The plaintext never
//! leaves the operator; the caller needs `create` on `mltenants/rotate` for the tenant each
//! bundle is sealed for (a rule without resourceNames for a Cluster-scope bundle).
//!
//! With `--in-place` every file is rewritten where it is, and only the ciphertexts change: the
//! new values replace the old ones in the file's own text, so comments, field order, quoting
//! and every other field stay byte-identical. That is checked, not assumed: the rewritten file
//! must parse to exactly its old documents with only the bundles' values replaced, and each new
//! value must be plain base64 (a value written over several lines, or whose old text also
//! stands elsewhere in the file, is refused rather than the file reformatted or the wrong text
//! replaced). Every file is worked out before any is written, so a file that cannot be rotated
//! stops the run with nothing changed.
//!
//! A directory is walked for `*.yaml` and `*.yml` files (hidden directories skipped). What is
//! under it may come from anyone who can open a pull request, so symlinks are not followed (one
//! could point out of the checkout, or in a loop), files that are not YAML (Helm templates)
//! are skipped, and both are named in the report; documents other than `mltenant.io`
//! SealedBundles are left alone. The scope of each output is the input's: the operator re-seals
//! under the label the bundle's own claims give, and nothing else of the bundle is taken from
//! its answer.

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;
use std::io::Read as _;

use anyhow::{Context as _, bail, ensure};
use serde::Deserialize as _;
use serde_yaml::Value;

use super::operator::{self, Source};
use super::seal::FormatArg;
use crate::api::SealedBundle;

/// Largest manifest file read (a SealedBundle holds at most 1.5 MiB of values; a file of many
/// of them, or of other manifests, far less than this).
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

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

/// What to print: the re-sealed bundle(s) as YAML, or with `--in-place` the files changed and
/// what was skipped.
pub async fn run(args: Args) -> anyhow::Result<Option<String>> {
    let stdin = args.file == Path::new("-");
    ensure!(!(args.in_place && stdin), "--in-place needs a file or directory, not standard input");
    let walked = args.file.is_dir();
    let (files, mut notes) = if walked { manifests(&args.file)? } else { (vec![args.file.clone()], Vec::new()) };
    ensure!(args.in_place || files.len() == 1, "a directory needs --in-place");
    let mut printed = String::new();
    let mut changed = Vec::new();
    for file in &files {
        let text = read_manifest(file)?;
        if walked && !text.contains("SealedBundle") {
            continue;
        }
        let documents = match documents(&text) {
            Ok(documents) => documents,
            // A template (Helm's `{{ }}`) or any other text under the checkout: not ours.
            Err(error) if walked => {
                notes.push(format!("skipped {}: {error}", file.display()));
                continue;
            }
            Err(error) => return Err(error).with_context(|| file.display().to_string()),
        };
        let (rewritten, bundles) = rotate_text(&text, documents, &args, file).await?;
        if !args.in_place {
            printed = rewritten;
        } else if bundles > 0 && rewritten != text {
            changed.push((file, rewritten));
        }
    }
    if !args.in_place {
        return Ok(Some(printed));
    }
    let mut report = String::new();
    for (file, rewritten) in &changed {
        std::fs::write(file, rewritten).with_context(|| format!("cannot write {}", file.display()))?;
        report.push_str(&format!("rotated {}\n", file.display()));
    }
    for note in notes {
        report.push_str(&format!("{note}\n"));
    }
    report.push_str(&format!("{} of {} files changed\n", changed.len(), files.len()));
    Ok(Some(report))
}

/// Every `*.yaml` / `*.yml` file under `dir`, sorted, hidden directories (`.git`) skipped, and
/// the symlinks not followed (each named in a note, when it is a manifest's or a directory's).
fn manifests(dir: &Path) -> anyhow::Result<(Vec<PathBuf>, Vec<String>)> {
    let is_manifest = |path: &Path| path.extension().is_some_and(|e| e == "yaml" || e == "yml");
    let (mut found, mut notes) = (Vec::new(), Vec::new());
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
            let path = entry.path();
            // The entry itself, not what a symlink points at.
            let kind = entry.file_type().with_context(|| format!("cannot read {}", path.display()))?;
            if kind.is_symlink() {
                if is_manifest(&path) || path.is_dir() {
                    notes.push(format!("skipped {}: a symlink (not followed)", path.display()));
                }
            } else if kind.is_dir() {
                if !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
                    pending.push(path);
                }
            } else if kind.is_file() && is_manifest(&path) {
                found.push(path);
            }
        }
    }
    found.sort();
    notes.sort();
    Ok((found, notes))
}

/// The text of `file` (or standard input for `-`), at most [`MAX_FILE_BYTES`], UTF-8.
fn read_manifest(file: &Path) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    let read = if file == Path::new("-") {
        std::io::stdin().take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(file).and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
    };
    read.with_context(|| format!("cannot read {}", file.display()))?;
    ensure!(
        bytes.len() as u64 <= MAX_FILE_BYTES,
        "{} is larger than {} MiB: not a manifest file",
        file.display(),
        MAX_FILE_BYTES / (1024 * 1024)
    );
    String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8", file.display()))
}

/// The YAML documents of `text`, refused when it uses an alias: serde_yaml bounds how many
/// aliases it expands, not what each one copies, so a few kilobytes of aliases of one long
/// list, in any file a pull request adds, expand to gigabytes (docs/security.md).
fn documents(text: &str) -> anyhow::Result<Vec<Value>> {
    use yaml_rust2::parser::{Event, Parser};
    let mut parser = Parser::new_from_str(text);
    loop {
        match parser.next_token().context("not YAML")? {
            (Event::StreamEnd, _) => break,
            (Event::Alias(_), mark) => {
                bail!("a YAML alias at line {}: write it without anchors and aliases", mark.line())
            }
            _ => {}
        }
    }
    serde_yaml::Deserializer::from_str(text).map(|document| Value::deserialize(document).context("not YAML")).collect()
}

/// Whether a document is one of our SealedBundles (another group may have a kind of that name).
fn is_bundle(document: &Value) -> bool {
    let field = |name: &str| document.get(name).and_then(Value::as_str);
    field("kind") == Some("SealedBundle") && field("apiVersion").is_some_and(|v| v.starts_with("mltenant.io/"))
}

/// `text` with every SealedBundle document's values re-sealed by the operator, substituted in
/// place (see [`substitute`]); and how many bundles it held.
async fn rotate_text(text: &str, documents: Vec<Value>, args: &Args, file: &Path) -> anyhow::Result<(String, usize)> {
    let mut resealed = Vec::new();
    for (index, document) in documents.iter().enumerate() {
        if !is_bundle(document) {
            continue;
        }
        let bundle: SealedBundle = serde_yaml::from_value(document.clone())
            .with_context(|| format!("{} document {} is not a SealedBundle", file.display(), index + 1))?;
        let name = bundle.metadata.name.clone().unwrap_or_default();
        let endpoint = match args.format {
            None => "/v1/rotate".to_owned(),
            Some(FormatArg::V2) => "/v1/rotate?format=v2".to_owned(),
            Some(FormatArg::Kubeseal) => "/v1/rotate?format=kubeseal".to_owned(),
        };
        let answer = args.source.post_bundle(&endpoint, &bundle).await?;
        if answer.0 != 200 {
            return Err(operator::refused("/v1/rotate", &answer))
                .with_context(|| format!("{}: SealedBundle {name}", file.display()));
        }
        let rotated: SealedBundle =
            serde_yaml::from_str(&answer.1).context("the operator answered something that is not a SealedBundle")?;
        resealed.push(Resealed { index, name, old: bundle.spec.encrypted_data, new: rotated.spec.encrypted_data });
    }
    let bundles = resealed.len();
    let out = substitute(text, documents, &resealed).with_context(|| file.display().to_string())?;
    Ok((out, bundles))
}

/// The values of the bundle that is document `index` of a file, before and after re-sealing.
struct Resealed {
    index: usize,
    name: String,
    old: BTreeMap<String, String>,
    new: BTreeMap<String, String>,
}

/// `text` with each old value's text replaced by its new value, checked: each new value is plain
/// base64 (nothing that could end a scalar), each old value's text stands once in the file, and
/// the result parses to `documents` with exactly those values replaced (so a value written
/// over several lines while its text also stands in a comment is refused, not the comment
/// rewritten).
fn substitute(text: &str, mut documents: Vec<Value>, resealed: &[Resealed]) -> anyhow::Result<String> {
    let mut out = text.to_owned();
    for Resealed { index, name, old, new } in resealed {
        ensure!(
            new.keys().eq(old.keys()),
            "the operator's answer for SealedBundle {name} has other keys than the bundle"
        );
        for (key, old) in old {
            let new = &new[key];
            ensure!(
                !new.is_empty() && new.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)),
                "the operator's answer for SealedBundle {name} key {key} is not a sealed value"
            );
            // Base64 values are long and unique: the one occurrence of the old text should be
            // the value (checked below).
            match out.matches(old.as_str()).count() {
                1 => out = out.replacen(old.as_str(), new, 1),
                _ => bail!(
                    "the value of {key} in SealedBundle {name} is not written on one line (or appears twice); rewrite it as a plain scalar first"
                ),
            }
            documents[*index]["spec"]["encryptedData"][key.as_str()] = Value::String(new.clone());
        }
    }
    ensure!(
        self::documents(&out).ok().as_ref() == Some(&documents),
        "putting the new values in place of the old ones would change more than the values (an old value's text also stands elsewhere, or a value is written over several lines); rewrite the values as plain one-line scalars first"
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A symlink out of the checkout, a loop back into it and a symlinked directory are named,
    /// never followed; hidden directories are skipped.
    #[test]
    fn the_walk_follows_no_symlink() {
        let base = std::env::temp_dir().join(format!("mltenant-walk-{}", std::process::id()));
        let (checkout, outside) = (base.join("checkout"), base.join("outside"));
        std::fs::create_dir_all(checkout.join("team/.git")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        for file in [outside.join("bundle.yaml"), checkout.join("team/a.yaml"), checkout.join("team/.git/b.yaml")] {
            std::fs::write(file, "kind: SealedBundle\n").unwrap();
        }
        std::os::unix::fs::symlink(outside.join("bundle.yaml"), checkout.join("linked.yaml")).unwrap();
        std::os::unix::fs::symlink(&outside, checkout.join("linked")).unwrap();
        std::os::unix::fs::symlink(&checkout, checkout.join("team/loop")).unwrap();
        std::os::unix::fs::symlink(outside.join("bundle.yaml"), checkout.join("notes.txt")).unwrap();
        let (found, notes) = manifests(&checkout).unwrap();
        assert_eq!(found, vec![checkout.join("team/a.yaml")]);
        assert_eq!(notes.len(), 3, "{notes:?}");
        for name in ["linked.yaml", "linked:", "loop:"] {
            assert!(notes.iter().any(|n| n.contains(name) && n.contains("symlink")), "{name}: {notes:?}");
        }
        std::fs::remove_dir_all(&base).unwrap();
    }

    fn resealed(index: usize, old: &str, new: &str) -> Resealed {
        let map = |v: &str| BTreeMap::from([("A".to_owned(), v.to_owned())]);
        Resealed { index, name: "b".into(), old: map(old), new: map(new) }
    }

    const BUNDLE: &str =
        "apiVersion: mltenant.io/v1alpha1\nkind: SealedBundle\nmetadata: {name: b}\nspec:\n  encryptedData:\n";

    /// Only the value changes, comments and quoting stay; an old value that also stands in a
    /// comment while the value itself is folded over two lines is refused (the comment used to
    /// be rewritten and the file reported as rotated); an answer that could end the scalar
    /// (a line break, a quote) never goes into the file.
    #[test]
    fn only_the_values_change_or_nothing_does() {
        let text = format!("# kept\n{BUNDLE}    A: \"AgBold\"  # sealed 2026\n");
        let out = substitute(&text, documents(&text).unwrap(), &[resealed(0, "AgBold", "TUxUMgnew")]).unwrap();
        assert_eq!(out, text.replace("AgBold", "TUxUMgnew"));

        let trap = format!("# rotated before from: AgBold\n{BUNDLE}    A: \"AgB\\\n      old\"\n");
        assert_eq!(documents(&trap).unwrap()[0]["spec"]["encryptedData"]["A"], Value::from("AgBold"));
        let error = substitute(&trap, documents(&trap).unwrap(), &[resealed(0, "AgBold", "TUxUMgnew")]).unwrap_err();
        assert!(error.to_string().contains("would change more than the values"), "{error}");

        for hostile in ["TUxU\nkind: Secret", "TUxU\"", ""] {
            let error = substitute(&text, documents(&text).unwrap(), &[resealed(0, "AgBold", hostile)]).unwrap_err();
            assert!(error.to_string().contains("is not a sealed value"), "{hostile:?}: {error}");
        }
    }

    /// Aliases are refused before anything expands them (serde_yaml expanded this file to
    /// gigabytes).
    #[test]
    fn aliases_are_refused_unexpanded() {
        let list = vec!["x"; 10_000].join(",");
        let bomb = format!("{BUNDLE}x: &a [{list}]\ny: [{}]\n", vec!["*a"; 10_000].join(","));
        let error = documents(&bomb).unwrap_err().to_string();
        assert!(error.contains("YAML alias at line"), "{error}");
        assert_eq!(documents("{{- if .Values.on }}\n").unwrap_err().to_string(), "not YAML");
        assert_eq!(documents(BUNDLE).unwrap().len(), 1);
    }

    #[test]
    fn only_our_bundles_are_rotated() {
        let ours = documents("apiVersion: mltenant.io/v1alpha1\nkind: SealedBundle\n").unwrap();
        let theirs = documents("apiVersion: bitnami.com/v1alpha1\nkind: SealedBundle\n").unwrap();
        assert!(is_bundle(&ours[0]) && !is_bundle(&theirs[0]));
    }
}
