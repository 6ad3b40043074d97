//! Reading `-f` paths: a file, a directory walked for `.yaml`/`.yml`/`.json` files (sorted,
//! hidden entries skipped), or `-` for standard input; each holds multi-document YAML or a
//! stream of JSON documents (what `kubectl get -o yaml|json`, `helm template` and
//! `kustomize build` print). A document that does not parse is an error naming the file and
//! the document; every read is capped. What a document's objects hold is `workload.rs`'s.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::workload::{collect, ObjectImages};
use super::{DiscoverError, QUOTE_LIMIT};
use crate::error::truncate;

/// One manifest file (or standard input) is read up to this size.
const MAX_FILE_BYTES: u64 = 64 << 20;
/// A directory walk reads at most this many files…
const MAX_FILES: usize = 10_000;
/// …at most this deep (a symlink loop ends here).
const MAX_DEPTH: usize = 16;
/// Documents in one file.
const MAX_DOCUMENTS: usize = 100_000;

/// How standard input is named in messages.
const STDIN: &str = "<stdin>";

/// Reads the objects of `path` into `out`.
pub(super) fn read_path(path: &Path, out: &mut Vec<ObjectImages>) -> Result<(), DiscoverError> {
    if path == Path::new("-") {
        let label = Path::new(STDIN);
        let text = read_capped(label, std::io::stdin().lock())?;
        let json = text.trim_start().starts_with(['{', '[']);
        return parse(label, &text, json, out);
    }
    let metadata = std::fs::metadata(path).map_err(|e| read_error(path, e))?;
    if !metadata.is_dir() {
        return read_file(path, out);
    }
    let mut files = Vec::new();
    walk(path, 0, &mut files)?;
    for file in files {
        read_file(&file, out)?;
    }
    Ok(())
}

fn read_error(file: &Path, e: std::io::Error) -> DiscoverError {
    DiscoverError::Read {
        file: file.to_path_buf(),
        reason: e.to_string(),
    }
}

/// The manifest files under `dir`, sorted, into `files`.
fn walk(dir: &Path, depth: usize, files: &mut Vec<PathBuf>) -> Result<(), DiscoverError> {
    if depth > MAX_DEPTH {
        return Err(DiscoverError::TooMuch {
            file: dir.to_path_buf(),
            message: format!("directories nest more than {MAX_DEPTH} deep"),
        });
    }
    let entries = std::fs::read_dir(dir).map_err(|e| read_error(dir, e))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| read_error(dir, e))?;
        if !entry.file_name().to_string_lossy().starts_with('.') {
            paths.push(entry.path());
        }
        if paths.len() > MAX_FILES {
            break;
        }
    }
    paths.sort();
    for path in paths {
        if path.is_dir() {
            walk(&path, depth + 1, files)?;
        } else if is_manifest(&path) {
            files.push(path);
        }
        if files.len() > MAX_FILES {
            return Err(DiscoverError::TooMuch {
                file: dir.to_path_buf(),
                message: format!("more than {MAX_FILES} manifest files"),
            });
        }
    }
    Ok(())
}

fn is_manifest(path: &Path) -> bool {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    ["yaml", "yml", "json"]
        .iter()
        .any(|e| extension.eq_ignore_ascii_case(e))
}

fn read_file(path: &Path, out: &mut Vec<ObjectImages>) -> Result<(), DiscoverError> {
    let file = std::fs::File::open(path).map_err(|e| read_error(path, e))?;
    let text = read_capped(path, file)?;
    let json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    parse(path, &text, json, out)
}

fn read_capped(label: &Path, reader: impl Read) -> Result<String, DiscoverError> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| read_error(label, e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(DiscoverError::TooMuch {
            file: label.to_path_buf(),
            message: format!("larger than {} MiB", MAX_FILE_BYTES >> 20),
        });
    }
    String::from_utf8(bytes).map_err(|_| DiscoverError::Manifest {
        file: label.to_path_buf(),
        document: None,
        message: "not UTF-8 text".to_string(),
    })
}

/// Every document of `text` (a JSON stream when `json`, else multi-document YAML).
fn parse(
    file: &Path,
    text: &str,
    json: bool,
    out: &mut Vec<ObjectImages>,
) -> Result<(), DiscoverError> {
    let malformed = |document: usize, format: &str, message: String| DiscoverError::Manifest {
        file: file.to_path_buf(),
        document: Some(document),
        message: format!("malformed {format}: {}", truncate(&message, QUOTE_LIMIT)),
    };
    let too_many = || DiscoverError::TooMuch {
        file: file.to_path_buf(),
        message: format!("more than {MAX_DOCUMENTS} documents"),
    };
    if json {
        let stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        for (i, document) in stream.enumerate() {
            if i >= MAX_DOCUMENTS {
                return Err(too_many());
            }
            let value = document.map_err(|e| malformed(i + 1, "JSON", e.to_string()))?;
            collect(&value, out);
        }
        return Ok(());
    }
    for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        if i >= MAX_DOCUMENTS {
            return Err(too_many());
        }
        let value =
            Value::deserialize(document).map_err(|e| malformed(i + 1, "YAML", e.to_string()))?;
        collect(&value, out);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(dir: &Path) -> Result<usize, DiscoverError> {
        let mut out = Vec::new();
        read_path(dir, &mut out).map(|()| out.len())
    }

    #[test]
    fn walks_directories_and_names_bad_documents() {
        let dir = tempfile::tempdir().unwrap();
        let pod = "kind: Pod\nmetadata: {name: a}\nspec: {containers: [{image: x}]}\n";
        std::fs::create_dir_all(dir.path().join("sub/.git")).unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            format!("---\n{pod}---\n---\n{pod}"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("sub/b.json"),
            r#"{"kind":"Pod","spec":{"containers":[{"image":"y"}]}} {"kind":"Service"}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("sub/.git/c.yaml"), "{").unwrap();
        std::fs::write(dir.path().join("README.md"), "{").unwrap();
        assert_eq!(read(dir.path()).unwrap(), 3);
        std::fs::write(dir.path().join("sub/d.yml"), format!("{pod}---\nkind: [\n")).unwrap();
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("d.yml, document 2: malformed YAML"), "{err}");
        let err = read(&dir.path().join("missing.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.yaml: cannot read"), "{err}");
    }
}
