//! Writing the rendered files under `--out`: each atomically and only when changed, the live
//! filter config last, and what changed in an existing `envoy.yaml` (a restart is needed).

use std::path::Path;

use super::{live_file, GenerateError};
use crate::cli::live;

/// What [`write_all`] did.
#[derive(Debug)]
pub struct WriteReport {
    pub files: Vec<(String, live::Written)>,
    /// What changed in an `envoy.yaml` that was there before (a running Envoy needs a restart).
    pub restart: Vec<String>,
}

/// Writes every file atomically, when changed. The live filter config goes last: by then
/// everything it may refer to is on disk. A running Envoy reloads it on the rename.
pub fn write_all(out: &Path, files: &[(String, String)]) -> Result<WriteReport, GenerateError> {
    let live = live_file("");
    let mut restart = Vec::new();
    if let Some((_, contents)) = files.iter().find(|(name, _)| name == "envoy.yaml") {
        let path = out.join("envoy.yaml");
        if let Ok(old) = std::fs::read_to_string(&path) {
            if old != *contents {
                let parse = |text: &str| serde_saphyr::from_str::<serde_json::Value>(text).ok();
                restart = match (parse(&old), parse(contents)) {
                    (Some(old), Some(new)) => live::bootstrap_changes(&old, &new),
                    _ => Vec::new(),
                };
                if restart.is_empty() {
                    restart.push("edited since it was generated".to_string());
                }
            }
        }
    }
    let (last, first): (Vec<_>, Vec<_>) = files.iter().partition(|(name, _)| *name == live);
    let mut report = Vec::new();
    for (relative, contents) in first.into_iter().chain(last) {
        let path = out.join(relative);
        let how = live::write_atomic(&path, contents).map_err(|err| GenerateError::Written {
            path: path.clone(),
            detail: err.to_string(),
        })?;
        report.push((relative.clone(), how));
    }
    Ok(WriteReport {
        files: report,
        restart,
    })
}
