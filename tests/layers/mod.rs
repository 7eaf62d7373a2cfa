//! The folder says what a file may touch (ARCHITECTURE.md): these tests fail when a file
//! reaches past its layer.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// Every line of the layer's files that names one of `forbidden`, as `file:line: text`.
fn offences(layer: &str, forbidden: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(layer);
    let files = rust_files(&root);
    assert!(!files.is_empty(), "no files under {}", root.display());
    let mut found = vec![];
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if forbidden.iter().any(|f| code.contains(f)) {
                found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn the_ciba_rules_do_no_io_and_know_no_other_layer() {
    let found = offences(
        "ciba",
        &[
            "pingora",
            "tokio",
            "redis::",
            "dashmap",
            "std::net::Tcp",
            "std::net::Udp",
            "std::fs",
            "std::process",
            "crate::state",
            "crate::edge",
            "crate::config",
            "crate::metrics",
            "crate::demo",
        ],
    );
    assert!(found.is_empty(), "ciba/ reaches out:\n{}", found.join("\n"));
}

#[test]
fn the_state_layer_knows_neither_pingora_nor_the_edge() {
    let found = offences(
        "state",
        &[
            "pingora",
            "crate::edge",
            "crate::config",
            "crate::demo",
            "std::fs",
        ],
    );
    assert!(
        found.is_empty(),
        "state/ reaches out:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_demo_uses_only_the_rules_and_pingora() {
    let found = offences("demo", &["crate::state", "crate::edge"]);
    assert!(found.is_empty(), "demo/ reaches out:\n{}", found.join("\n"));
}
