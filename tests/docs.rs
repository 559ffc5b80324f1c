//! The README stays a short start page, and every link in the documentation leads
//! somewhere: to a file of the repository and, where it names one, to a heading of it.
//! (The configuration keys the pages name are checked in `src/config/tests.rs`.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Markdown pages a reader follows links between.
fn pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = [
        "README.md",
        "BENCHMARKS.md",
        "web/README.md",
        "certs/README.md",
        "conformance/README.md",
    ]
    .iter()
    .map(|p| root().join(p))
    .collect();
    let docs = std::fs::read_dir(root().join("docs")).expect("docs/ exists");
    for entry in docs {
        let path = entry.expect("a docs/ entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    pages
}

/// Markdown outside fenced code blocks.
fn prose(text: &str) -> String {
    text.split("```").step_by(2).collect::<Vec<_>>().join("\n")
}

/// The targets of `[text](target)` and `![alt](target)` links.
fn links(text: &str) -> Vec<String> {
    let prose = prose(text);
    let mut out = Vec::new();
    let mut rest = prose.as_str();
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        let end = rest.find(')').unwrap_or(rest.len());
        let target = rest[..end].split_whitespace().next().unwrap_or("");
        out.push(target.to_owned());
        rest = &rest[end..];
    }
    out
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    prose(text)
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| slug(l.trim_start_matches('#')))
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_link_in_the_documentation_leads_to_a_file_and_heading_that_exist() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = read(&page);
        let dir = page.parent().expect("a page is in a directory");
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (file, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let file = if file.is_empty() {
                page.clone()
            } else {
                dir.join(file)
            };
            let name = page.strip_prefix(root()).unwrap_or(&page).display();
            if !file.exists() {
                broken.push(format!("{name}: {target}: no such file"));
            } else if !anchor.is_empty() && !anchors(&read(&file)).contains(anchor) {
                broken.push(format!("{name}: {target}: no such heading"));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(checked > 40, "found only {checked} links");
}

#[test]
fn every_docs_page_is_on_the_map() {
    let map = read(&root().join("docs/README.md"));
    let readme = read(&root().join("README.md"));
    for page in pages() {
        let Ok(rel) = page.strip_prefix(root().join("docs")) else {
            continue;
        };
        let rel = rel.display().to_string();
        if rel == "README.md" {
            continue;
        }
        assert!(
            map.contains(&format!("]({rel})")),
            "docs/README.md does not link {rel}"
        );
        assert!(
            readme.contains(&format!("](docs/{rel})")),
            "README.md does not link docs/{rel}"
        );
    }
}

#[test]
fn the_readme_is_a_start_page_of_at_most_220_lines() {
    let readme = read(&root().join("README.md"));
    let lines = readme.lines().count();
    assert!(lines <= 220, "README.md has {lines} lines");
    for section in ["## Two commands", "## Documentation", "## Not yet"] {
        assert!(readme.contains(section), "README.md lacks {section}");
    }
}
