//! The library's modules form layers, and imports flow only downward: a
//! module may use modules of lower layers, never its own layer's or a higher
//! one's. This test reads every `crate::…` path in `src/` (the binary under
//! `src/bin/` sits above everything and is not checked) and fails on an
//! upward or sideways import, or on a module missing from the table.
//!
//! `cargo test --test layers -- --nocapture` prints the module graph.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Bottom to top. A newcomer can read the library in this order.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "plain values",
        &["domain", "scrub", "scopes", "json_strategy"],
    ),
    ("keys", &["crypto"]),
    ("configuration", &["config"]),
    (
        "rules and instruments",
        &["policy", "metrics", "telemetry", "systemd"],
    ),
    ("platforms", &["providers"]),
    ("storage", &["store"]),
    ("one refresh, one registration", &["engine", "registration"]),
    (
        "admission and delivery",
        &["gate", "webhooks", "bulk", "connect"],
    ),
    ("queue", &["queue"]),
    ("front doors", &["scheduler", "api"]),
    // Above the API: it shows accounts through the API's view and forces
    // refreshes through the API's rate limit; the API never names it.
    ("operator console", &["console"]),
    ("start-up", &["app"]),
    ("process", &["daemon"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|name| name != "bin") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/engine/call.rs` → `engine`).
fn owner(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str();
    first.to_str().unwrap().trim_end_matches(".rs").to_owned()
}

/// Code only: comments are dropped and string and character literals are
/// emptied, so that prose or a URL naming a module is not an import.
fn without_comments(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if let Some(hashes) = raw_string_start(&chars, i) {
            // r"…", r#"…"#: ends at a quote followed by as many hashes.
            i += 2 + hashes;
            while i < chars.len()
                && !(chars[i] == '"' && (1..=hashes).all(|k| chars.get(i + k) == Some(&'#')))
            {
                i += 1;
            }
            i += 1 + hashes;
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && next == Some('\\') {
            // '\n', '\'', '\u{…}'
            i += 2;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            i += 3; // 'x' (a lifetime has no closing quote)
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// At `i`, the start of a raw string literal: the number of its hashes.
fn raw_string_start(chars: &[char], i: usize) -> Option<usize> {
    let preceded_by_ident = i > 0 && (chars[i - 1].is_ascii_alphanumeric() || chars[i - 1] == '_');
    if chars[i] != 'r' || preceded_by_ident {
        return None;
    }
    let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
    (chars.get(i + 1 + hashes) == Some(&'"')).then_some(hashes)
}

fn identifier_at(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The top-level modules a piece of source names through `crate::`,
/// including each first segment of a `crate::{a::X, b}` group.
fn imported_modules(source: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = source;
    while let Some(at) = rest.find("crate::") {
        let preceded_by_ident = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        rest = &rest[at + "crate::".len()..];
        if preceded_by_ident {
            continue; // `tokenwarden_crate::…` or similar: not ours
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut segment_start = true;
            let mut chars = group.char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => segment_start = true,
                    c if depth == 1 && segment_start && (c.is_ascii_alphabetic() || c == '_') => {
                        let name = identifier_at(&group[i..]);
                        found.insert(name.to_owned());
                        segment_start = false;
                        for _ in 1..name.len() {
                            chars.next();
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = identifier_at(rest);
            if !name.is_empty() {
                found.insert(name.to_owned());
            }
        }
    }
    found
}

/// How many modules deep a file's code sits: `src/a.rs` and `src/a/mod.rs`
/// are 1, `src/a/b.rs` is 2.
fn module_depth(src: &Path, file: &Path) -> usize {
    let relative = file.strip_prefix(src).unwrap();
    let segments = relative.components().count();
    if relative.ends_with("mod.rs") {
        segments - 1
    } else {
        segments
    }
}

/// Top-level modules reached with `super::` chains that climb to the crate
/// root (`super::api::X` in `src/policy.rs`, `super::super::engine` in
/// `src/store/x.rs`). Only names of top-level modules count: a `super::`
/// inside an inline `mod tests` names its own file's items.
fn modules_through_super(source: &str, depth: usize) -> BTreeSet<String> {
    let top_level: BTreeSet<&str> = LAYERS.iter().flat_map(|(_, m)| m.iter().copied()).collect();
    let mut found = BTreeSet::new();
    let mut rest = source;
    while let Some(at) = rest.find("super::") {
        let chain_start = !rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        rest = &rest[at..];
        let mut climbs = 0;
        while let Some(after) = rest.strip_prefix("super::") {
            climbs += 1;
            rest = after;
        }
        let name = identifier_at(rest);
        if chain_start && climbs == depth && top_level.contains(name) {
            found.insert(name.to_owned());
        }
    }
    found
}

fn module_graph() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in files {
        let module = owner(&src, &file);
        if module == "lib" {
            continue;
        }
        let source = without_comments(&fs::read_to_string(&file).unwrap());
        let uses = graph.entry(module.clone()).or_default();
        let through_super = modules_through_super(&source, module_depth(&src, &file));
        for imported in imported_modules(&source).into_iter().chain(through_super) {
            if imported != module && imported != "self" {
                let shown = file.strip_prefix(&src).unwrap().display().to_string();
                uses.entry(imported).or_default().insert(shown);
            }
        }
    }
    graph
}

#[test]
fn imports_flow_downward() {
    let graph = module_graph();
    let mut problems = aliases_of_the_crate();
    for (layer, (name, modules)) in LAYERS.iter().enumerate() {
        println!("{layer:>2} {name}");
        for module in *modules {
            let uses = graph.get(*module).map(|uses| uses.keys().cloned());
            let uses: Vec<String> = uses.into_iter().flatten().collect();
            println!("     {module} -> {}", uses.join(", "));
        }
    }
    for (module, uses) in &graph {
        let Some(own) = layer_of(module) else {
            problems.push(format!(
                "src/{module}: not in the layer table of tests/layers.rs; place it"
            ));
            continue;
        };
        for (imported, files) in uses {
            match layer_of(imported) {
                Some(theirs) if theirs < own => {}
                Some(theirs) => problems.push(format!(
                    "{module} (layer {own}, {}) imports {imported} (layer {theirs}, {}) in {}",
                    LAYERS[own].0,
                    LAYERS[theirs].0,
                    files.iter().cloned().collect::<Vec<_>>().join(", ")
                )),
                None => problems.push(format!(
                    "{module} imports crate::{imported}, which is not a module in the layer table"
                )),
            }
        }
    }
    assert!(
        problems.is_empty(),
        "imports must flow downward:\n  {}",
        problems.join("\n  ")
    );
}

/// `use crate as root;` would hide every `root::…` import from this check.
fn aliases_of_the_crate() -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files
        .iter()
        .filter(|file| {
            let code = without_comments(&fs::read_to_string(file).unwrap());
            code.split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .any(|w| w[0].ends_with("crate") && w[1] == "as")
        })
        .map(|file| {
            format!(
                "{}: aliases the crate; name modules through crate::",
                file.display()
            )
        })
        .collect()
}

/// The fake platforms are a crate of their own, for the demo, the tests and
/// the benches: the library never names them.
#[test]
fn the_library_does_not_use_the_fakes() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let offenders: Vec<String> = files
        .iter()
        .filter(|file| {
            without_comments(&fs::read_to_string(file).unwrap()).contains("tokenwarden_fakes")
        })
        .map(|file| file.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "library files use the fakes: {offenders:?}"
    );
}

#[test]
fn the_import_reader_sees_groups_and_ignores_prose() {
    let source = without_comments(
        "use crate::{domain::{AccountId, Provider}, metrics};\n\
         // crate::api is only mentioned here\n\
         /* and crate::daemon here */\n\
         let url = \"https://crate::x\";\n\
         let raw = r#\"a \" crate::y\"#; let quote = '\"'; let c = crate::z::C;\n\
         fn f<'a>(s: &'a str) -> crate::engine::Report<'a> { todo() }\n\
         use tokenwarden_crate::thing;",
    );
    let found: Vec<String> = imported_modules(&source).into_iter().collect();
    assert_eq!(found, ["domain", "engine", "metrics", "z"]);

    // From src/store/x.rs (depth 2): only a chain climbing two levels
    // reaches the crate root.
    let source = "use super::super::engine::Engine; use super::accounts::Row;\n\
                  fn f() { super::super::api::go(); super::super::not_a_module(); }";
    let found: Vec<String> = modules_through_super(source, 2).into_iter().collect();
    assert_eq!(found, ["api", "engine"]);
}
