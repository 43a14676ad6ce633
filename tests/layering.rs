//! The dependencies between the crate's top-level modules run one way: no module reaches, through
//! `crate::` paths, a module that reaches back to it. (Read from the sources as text, so that the check
//! needs nothing beyond cargo; comments are skipped.)

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Every top-level module (`src/NAME.rs` or `src/NAME/`) and the top-level modules its code names.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = Vec::new();
    for entry in fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "lib" || name == "main" {
            continue;
        }
        if path.is_dir() {
            for file in walk(&path) {
                files.push((name.clone(), file));
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push((name, path));
        }
    }
    for (module, file) in files {
        let text = fs::read_to_string(&file).unwrap();
        let uses = graph.entry(module.clone()).or_default();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (at, _) in line.match_indices("crate::") {
                let rest = &line[at + "crate::".len()..];
                let target: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !target.is_empty() && target != module {
                    uses.insert(target);
                }
            }
            // `use crate::{a, b::c}` names several modules at once.
            if let Some(group) = line.split("crate::{").nth(1) {
                for part in group.split(',') {
                    let target: String = part
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !target.is_empty() && target != module {
                        uses.insert(target);
                    }
                }
            }
        }
    }
    graph
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// A cycle through `start`, if one exists: the modules in order, `start` first.
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut path = vec![start.to_string()];
    let mut seen = BTreeSet::new();
    fn visit(
        graph: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        let here = path.last().unwrap().clone();
        for next in graph.get(&here).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if visit(graph, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    visit(graph, start, &mut path, &mut seen).then_some(path)
}

#[test]
fn the_modules_have_no_import_cycle() {
    let graph = module_graph();
    assert!(graph.len() > 20, "read the modules: {:?}", graph.keys());
    assert!(
        graph["train"].contains("network"),
        "the reader sees imports"
    );
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|m| cycle_from(&graph, m))
        .map(|c| format!("{} -> {}", c.join(" -> "), c[0]))
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn a_cycle_would_be_found() {
    let mut graph = module_graph();
    graph.get_mut("kernels").unwrap().insert("train".into());
    assert!(cycle_from(&graph, "kernels").is_some());
}
