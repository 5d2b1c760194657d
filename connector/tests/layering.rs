//! The stages import one way (see the crate docs): each module of a stage may
//! import only the modules listed for it here. A new arrow has to be added to
//! this table on purpose.

use std::path::Path;

/// Stage (a file or folder under `src/`) and the `crate::` modules it may use.
const ALLOWED: &[(&str, &[&str])] = &[
    ("event.rs", &["lsn"]),
    ("decode", &["decode", "event", "lsn"]),
    (
        "source",
        &["source", "decode", "event", "lsn", "credentials"],
    ),
    (
        "transform",
        &["transform", "decode", "event", "lsn", "metrics"],
    ),
    ("sink", &["sink", "event", "lsn", "credentials"]),
    ("ack", &["ack", "lsn"]),
    (
        "delivery",
        &[
            "delivery", "sink", "ack", "event", "lsn", "metrics", "config", "error",
        ],
    ),
    (
        "snapshot",
        &[
            "snapshot",
            "source",
            "decode",
            "transform",
            "sink",
            "event",
            "lsn",
            "credentials",
            "metrics",
            "config",
            "error",
        ],
    ),
];

fn crate_imports(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            found.push(name);
        }
    }
    found
}

fn files(path: &Path) -> Vec<std::path::PathBuf> {
    if path.is_file() {
        return vec![path.to_owned()];
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path).expect("readable source folder") {
        out.extend(files(&entry.expect("entry").path()));
    }
    out
}

#[test]
fn stages_import_only_what_the_table_allows() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    for (stage, allowed) in ALLOWED {
        let stage_files = files(&src.join(stage));
        assert!(!stage_files.is_empty(), "{stage} has no files");
        for file in stage_files {
            let text = std::fs::read_to_string(&file).expect("readable source");
            for import in crate_imports(&text) {
                if !allowed.contains(&import.as_str()) {
                    wrong.push(format!("{} imports crate::{import}", file.display()));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the flow:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_scanner_sees_imports() {
    assert_eq!(
        crate_imports("use crate::event::{Record};\nuse crate::lsn::Lsn;"),
        ["event", "lsn"]
    );
}

/// `[dependencies]` of the package whose manifest is `path` (relative to the workspace).
fn dependencies(path: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join(path)).expect("readable manifest");
    let mut in_deps = false;
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && !line.is_empty() && !line.starts_with('#') {
            let name: String = line
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            found.push(name);
        }
    }
    found
}

/// The PostgreSQL side is a crate of its own, without Kafka or the
/// replication carrier, and the operator links it instead of the engine.
#[test]
fn the_operator_links_the_postgres_side_not_the_engine() {
    let shared = dependencies("connector/postgres/Cargo.toml");
    assert!(shared.contains(&"tokio-postgres".to_owned()), "{shared:?}");
    for engine_only in ["rdkafka", "pgwire-replication", "pgkafka-connector"] {
        assert!(
            !shared.iter().any(|d| d == engine_only),
            "pgkafka-postgres depends on {engine_only}"
        );
    }
    let operator = dependencies("operator/Cargo.toml");
    assert!(
        operator.contains(&"pgkafka-postgres".to_owned()),
        "{operator:?}"
    );
    for engine_only in ["rdkafka", "pgwire-replication", "pgkafka-connector"] {
        assert!(
            !operator.iter().any(|d| d == engine_only),
            "pgkafka-operator depends on {engine_only}"
        );
    }
}
