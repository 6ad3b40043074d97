//! The library's one direction of dependencies, checked: `src/lib.rs` lists the modules
//! bottom up, and every file of a module may name (`crate::…`) only modules listed before its
//! own. A new upward import fails here with the file, the line and the two modules.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The modules in the order `lib.rs` declares them.
fn declared_order(src: &Path) -> Vec<String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("read src/lib.rs");
    lib.lines()
        .filter_map(|line| line.trim().strip_prefix("pub mod "))
        .map(|rest| rest.trim_end_matches(';').trim().to_string())
        .collect()
}

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read a source folder")
        .map(|e| e.expect("a folder entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// The top-level module a file belongs to: `copy/blob.rs` → `copy`, `error.rs` → `error`.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("a file under src");
    let first = relative.components().next().expect("a path component");
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_string()
}

/// Every `crate::name` a line of code (not a comment) names.
fn crate_paths(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or_default();
    code.match_indices("crate::")
        .map(|(at, _)| {
            code[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '{')
                .collect::<String>()
        })
        .collect()
}

#[test]
fn every_module_imports_only_from_modules_listed_before_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let order = declared_order(&src);
    assert!(order.len() > 10, "lib.rs lists too few modules: {order:?}");
    let rank: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut upward = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        if module == "lib" {
            continue;
        }
        let own = *rank
            .get(module.as_str())
            .unwrap_or_else(|| panic!("{} is in no module lib.rs declares", file.display()));
        let text = std::fs::read_to_string(file).expect("read a source file");
        for (number, line) in text.lines().enumerate() {
            for named in crate_paths(line) {
                assert!(
                    !named.starts_with('{'),
                    "{}:{}: name modules one `use crate::module::…` at a time",
                    file.display(),
                    number + 1
                );
                let Some(&theirs) = rank.get(named.as_str()) else {
                    panic!(
                        "{}:{}: crate::{named} is not a module",
                        file.display(),
                        number + 1
                    );
                };
                if theirs > own {
                    upward.push(format!(
                        "{}:{}: {module} imports {named}, listed after it",
                        file.display(),
                        number + 1
                    ));
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that run upward:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_checker_sees_imports() {
    assert_eq!(
        crate_paths("use crate::registry::Client; // crate::copy"),
        ["registry"]
    );
    assert_eq!(
        crate_paths("    let x = crate::backoff::jittered(a, b, c);"),
        ["backoff"]
    );
    assert!(crate_paths("// use crate::copy::Copier;").is_empty());
}
