//! Files written after a sync: `--report` (the whole run as pretty JSON) and
//! `--output-success-images` (an images file of what is now in its targets, so a later run or
//! another tool can take it as input). Written even after failures or Ctrl-C: they describe
//! whatever happened.

use std::path::Path;

use anyhow::Context as _;
use ferry::report::Report;

use crate::args::ImagesFormat;
use crate::settings::Outputs;

/// Writes every requested file; a file that cannot be written is reported on standard error
/// and does not keep the others from being written. Returns whether all were written.
pub fn write(outputs: &Outputs, report: &Report) -> bool {
    let mut ok = true;
    if let Some(path) = &outputs.report {
        ok &= attempt(path, || json(report));
    }
    if let Some(path) = &outputs.success_images {
        let images = report.success_images();
        ok &= attempt(path, || match outputs.success_images_format {
            ImagesFormat::Json => json(&images),
            ImagesFormat::Yaml => Ok(serde_yaml::to_string(&images)?),
        });
    }
    ok
}

fn attempt(path: &Path, render: impl FnOnce() -> anyhow::Result<String>) -> bool {
    let result = render().and_then(|text| {
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    });
    match result {
        Ok(()) => true,
        Err(error) => {
            eprintln!("ferry: {error:#}");
            false
        }
    }
}

fn json(value: &impl serde::Serialize) -> anyhow::Result<String> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ferry::report::{ImageReport, Status};

    use super::*;

    fn report() -> Report {
        let mut copied = ImageReport::new("s/a:1".into(), vec!["t/a:1".into(), "u/a:1".into()]);
        copied.status = Status::Copied;
        let mut failed = ImageReport::new("s/b:1".into(), vec!["t/b:1".into()]);
        failed.status = Status::Failed;
        failed.reason = Some("boom".into());
        Report::new(vec![copied, failed], Duration::from_secs(1))
    }

    fn outputs(dir: &Path, format: ImagesFormat) -> Outputs {
        Outputs {
            report: Some(dir.join("report.json")),
            success_images: Some(dir.join("success")),
            success_images_format: format,
        }
    }

    #[test]
    fn writes_report_and_yaml_success_list() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        assert!(write(&outputs(dir, ImagesFormat::Yaml), &report()));
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
        assert_eq!(json["totals"]["failed"], 1);
        assert_eq!(json["images"][1]["reason"], "boom");
        let yaml = std::fs::read_to_string(dir.join("success")).unwrap();
        assert_eq!(yaml, "s/a:1:\n- t/a:1\n- u/a:1\n");
    }

    #[test]
    fn json_success_list_and_unwritable_file() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        let mut outputs = outputs(dir, ImagesFormat::Json);
        outputs.report = Some(dir.join("missing/report.json"));
        assert!(!write(&outputs, &report()));
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("success")).unwrap()).unwrap();
        assert_eq!(json, serde_json::json!({"s/a:1": ["t/a:1", "u/a:1"]}));
    }
}
