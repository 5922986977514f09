//! The workspace a hazard log describes: which test functions exist, which
//! items a source file defines, which headings a document has. Plain text
//! rules, deliberately simple and strict.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// A checkout of the workspace: its root, and every test function found in
/// the Rust sources under `crates/`.
pub struct Workspace {
    root: PathBuf,
    /// Test function name → the files defining it.
    tests: BTreeMap<String, Vec<String>>,
}

impl Workspace {
    /// Scans `root/crates` for `.rs` files (skipping `target` and hidden
    /// folders) and indexes their test functions.
    pub fn load(root: &Path) -> Result<Self, String> {
        let mut files = Vec::new();
        collect_rust(root, &root.join("crates"), &mut files)?;
        let mut tests: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (rel, path) in files {
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("cannot read {rel}: {e}"))?;
            for name in test_functions(&text) {
                tests.entry(name).or_default().push(rel.clone());
            }
        }
        Ok(Self {
            root: root.to_owned(),
            tests,
        })
    }

    /// How many distinct test functions the workspace has.
    pub fn test_count(&self) -> usize {
        self.tests.len()
    }

    /// The files defining test function `name`, if any.
    pub fn test_files(&self, name: &str) -> Option<&[String]> {
        self.tests.get(name).map(Vec::as_slice)
    }

    /// The text of a file named relative to the root. Refuses absolute
    /// paths and `..`, so a hazard file can only point inside the workspace.
    pub fn read(&self, rel: &str) -> Result<String, String> {
        let path = Path::new(rel);
        let inside = !rel.is_empty()
            && path
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !inside {
            return Err("the path must be relative to the workspace root, without ..".to_owned());
        }
        std::fs::read_to_string(self.root.join(path)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_owned(),
            _ => format!("cannot read it: {e}"),
        })
    }
}

fn collect_rust(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        format!(
            "cannot read {} (run from the workspace root?): {e}",
            dir.strip_prefix(root).unwrap_or(dir).display()
        )
    })?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if path.is_dir() {
            collect_rust(root, &path, out)?;
        } else if name.ends_with(".rs") {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            out.push((rel.to_string_lossy().replace('\\', "/"), path.clone()));
        }
    }
    Ok(())
}

/// The names of the functions in `source` marked `#[test]` or
/// `#[tokio::test…]`, allowing other attributes and doc comments between
/// the mark and the `fn`.
pub fn test_functions(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut marked = false;
    for line in source.lines() {
        let t = line.trim();
        if t.starts_with("#[test]") || t.starts_with("#[tokio::test") {
            marked = true;
            continue;
        }
        if !marked {
            continue;
        }
        if t.is_empty() || t.starts_with("#[") || t.starts_with("//") {
            continue;
        }
        if let Some(name) = defined_name(&words(t), "fn") {
            out.push(name.to_owned());
        }
        marked = false;
    }
    out
}

/// Identifier-ish words of a line (letters, digits, `_`, `!`), in order.
fn words(line: &str) -> Vec<&str> {
    line.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '!'))
        .filter(|w| !w.is_empty())
        .collect()
}

/// The name after `keyword` when the line defines one.
fn defined_name<'a>(words: &[&'a str], keyword: &str) -> Option<&'a str> {
    let at = words.iter().position(|w| *w == keyword)?;
    words.get(at + 1).copied()
}

/// Whether `source` (a file named `path`) defines `item`:
///
/// - Rust (`.rs`): a line defining it with `fn`, `struct`, `enum`, `trait`,
///   `type`, `const`, `static`, `mod`, `union` or `macro_rules!`, or an
///   `impl` line naming it; `Type::name` needs an `impl` of `Type` and a
///   definition of `name` in the same file.
/// - JavaScript (`.js`): `function`, `const`, `let` or `class` defining it.
/// - anything else (SQL, TOML, Markdown): the item appears as a whole word.
///
/// Comment lines (`//`, `--`, `#`) never count.
pub fn defines_item(path: &str, source: &str, item: &str) -> bool {
    if path.ends_with(".rs") {
        match item.split_once("::") {
            Some((ty, name)) => {
                rust_defines(source, ty, &["impl"]) && rust_defines(source, name, RUST_KEYWORDS)
            }
            None => {
                rust_defines(source, item, RUST_KEYWORDS) || rust_defines(source, item, &["impl"])
            }
        }
    } else if path.ends_with(".js") {
        code_lines(source).any(|line| {
            let w = words(line);
            ["function", "const", "let", "class"]
                .iter()
                .any(|k| defined_name(&w, k) == Some(item))
        })
    } else {
        code_lines(source).any(|line| {
            line.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '.'))
                .any(|w| w == item)
        })
    }
}

const RUST_KEYWORDS: &[&str] = &[
    "fn",
    "struct",
    "enum",
    "trait",
    "type",
    "const",
    "static",
    "mod",
    "union",
    "macro_rules!",
];

fn code_lines(source: &str) -> impl Iterator<Item = &str> {
    source.lines().map(str::trim).filter(|l| {
        let comment = l.starts_with("//")
            || l.starts_with("--")
            || (l.starts_with('#') && !l.starts_with("#["));
        !comment
    })
}

fn rust_defines(source: &str, name: &str, keywords: &[&str]) -> bool {
    code_lines(source).any(|line| {
        let w = words(line);
        keywords.iter().any(|k| {
            if *k == "impl" {
                // `impl Foo`, `impl<T> Foo<T>`, `impl Trait for Foo`.
                (w.first() == Some(&"impl") || w.starts_with(&["unsafe", "impl"]))
                    && w.contains(&name)
            } else {
                defined_name(&w, k) == Some(name)
            }
        })
    })
}

/// The headings of a Markdown document, as written (without the `#`s),
/// outside fenced code blocks.
pub fn headings(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fence: Option<&str> = None;
    for line in markdown.lines() {
        let t = line.trim_start();
        if let Some(f) = fence {
            if t.starts_with(f) {
                fence = None;
            }
            continue;
        }
        if t.starts_with("```") {
            fence = Some("```");
            continue;
        }
        if t.starts_with("~~~") {
            fence = Some("~~~");
            continue;
        }
        let hashes = t.bytes().take_while(|b| *b == b'#').count();
        if (1..=6).contains(&hashes) {
            let rest = &t[hashes..];
            if rest.starts_with(' ') || rest.is_empty() {
                out.push(rest.trim().trim_end_matches('#').trim().to_owned());
            }
        }
    }
    out
}
