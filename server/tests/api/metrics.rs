use std::collections::{BTreeMap, BTreeSet};

use crate::helpers::*;

/// Metric name → label names, from the catalog's table.
fn catalog() -> BTreeMap<String, BTreeSet<String>> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/reference/metrics.md")).unwrap();
    let mut out = BTreeMap::new();
    for line in doc.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        let name = cells[0].trim_start_matches("| ").trim_matches('`').to_owned();
        // Label names are the backticked words outside parentheses (which hold values).
        let mut depth = 0;
        let outside: String = cells[2]
            .chars()
            .filter(|c| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => return depth == 0,
                }
                false
            })
            .collect();
        let labels: BTreeSet<String> = outside.split('`').skip(1).step_by(2).map(str::to_owned).collect();
        out.insert(name, labels);
    }
    out
}

/// Metric family → label names seen in the exposition (histogram suffixes folded).
fn exposed(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (series, _) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        // Fold a histogram's series into its family (ours end in _seconds).
        let name = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|n| n.ends_with("_seconds"))
            .unwrap_or(name);
        let entry = out.entry(name.to_owned()).or_default();
        for kv in labels.split(',').filter(|s| !s.is_empty()) {
            let k = kv.split('=').next().unwrap();
            if k != "le" {
                entry.insert(k.to_owned());
            }
        }
    }
    out
}

#[tokio::test]
async fn the_exposition_matches_the_catalog() {
    let app = spawn_app().await;
    let _ = app.get("/health").await;
    let res = app.http.get(format!("{}/metrics", app.admin)).send().await.unwrap();
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = res.text().await.unwrap();
    assert!(text.trim_end().ends_with("# EOF"), "OpenMetrics ends with # EOF");
    let cat = catalog();
    let exp = exposed(&text);
    assert_eq!(
        cat.keys().collect::<Vec<_>>(),
        exp.keys().collect::<Vec<_>>(),
        "metric names differ between docs/reference/metrics.md and /metrics"
    );
    for (name, labels) in &cat {
        assert_eq!(labels, &exp[name], "labels of {name}");
    }
}
