//! The architecture invariants of `ARCHITECTURE.md`, enforced by reading source files.
//! No crate of the workspace is linked; these tests only read text.
//!
//! - `sans_io_cores_do_no_io_and_read_no_clock`: the sans-IO cores (see [`core_files`])
//!   never name tokio or tonic, never read the wall clock and never draw OS randomness.
//! - `sans_io_cores_iterate_in_a_fixed_order`: the same files use no `HashMap`/`HashSet`.
//! - `sans_io_cores_never_name_proto_types`: the same files never name `fcsim_proto`.
//! - `crate_dependencies_point_one_way`: `proto ← fabric ← devices ← switch ← scenarios
//!   ← fcsim`, read from every crate's `Cargo.toml` (`[dependencies]`,
//!   `[build-dependencies]` and their `[target.*]` forms; dev-dependencies are not checked).
//! - `scanner_*` / `manifest_*`: the scanners run on inline bad snippets and must report
//!   them, and on real node glue (`fabric/src/runtime/`, `devices/src/host.rs`) and must
//!   find its I/O, so none of the checks above can pass by being blind.
//! - `core_file_list_*`: the core list holds the `fabric` and `devices` cores and none of
//!   the node glue (`endnode.rs`, `switch.rs`, `host.rs`, `array.rs`, `tapenode.rs`,
//!   `initiator.rs`).
//!
//! Every failure names the file and line to fix. Comments are not scanned (a doc comment
//! may say "never call `Instant::now`"); string literals are.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// The workspace root (the root package's manifest directory).
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---- what the cores may not say ----------------------------------------------------------

/// I/O runtimes, the wall clock and OS randomness. `rand::rng(` and `ThreadRng` are rand
/// 0.9's names for what 0.8 called `thread_rng`; `.elapsed()` reads the clock through an
/// `Instant`/`SystemTime` obtained some other way.
const IO_CLOCK_RANDOM: &[&str] = &[
    "Instant::now",
    "SystemTime::now",
    ".elapsed()",
    "thread_rng",
    "ThreadRng",
    "rand::rng(",
    "rand::random",
    "OsRng",
    "from_entropy",
    "from_os_rng",
    "use tokio",
    "tokio::",
    "tonic::",
];

/// Hash-ordered collections (substring match, so `FxHashMap` and `AHashSet` count too).
const HASH_ORDERED: &[&str] = &["HashMap", "HashSet"];

/// The generated gRPC types.
const PROTO_TYPES: &[&str] = &["fcsim_proto", "pb::"];

/// The sans-IO core files, relative to the workspace root.
///
/// Every listed file and directory must exist (a rename must update this list and
/// ARCHITECTURE.md), and each directory must hold at least one `.rs` file.
fn core_files() -> Result<Vec<PathBuf>, String> {
    const FIXED: &[&str] = &[
        "fabric/src/login.rs",
        "fabric/src/nameserver.rs",
        "fabric/src/zoning.rs",
        "fabric/src/fspf.rs",
        "fabric/src/rscn.rs",
        "fabric/src/nport.rs",
        "fabric/src/swils.rs",
        // Pure value types and the cable model: sans-IO by their module docs.
        "fabric/src/wwn.rs",
        "fabric/src/fcid.rs",
        "fabric/src/runtime/linkmodel.rs",
        // The pcap format and the cutting of long IUs into frames.
        "fabric/src/capture.rs",
        // devices/: the FCP exchange engines, the block-store seam, the workload
        // generator and the write-history oracle.
        "devices/src/fcp.rs",
        "devices/src/store.rs",
        "devices/src/workload.rs",
        "devices/src/history.rs",
        "devices/src/bitmap.rs",
    ];
    /// Whole directories: the FC-2 codec, the SCSI target core, the tape drive core, the
    /// copy-services engine, the relay-replication cores.
    /// Only these directories: `devices/src/tapenode.rs` is node glue, not a core.
    const DIRS: &[&str] = &[
        "fabric/src/frame",
        "devices/src/scsi",
        "devices/src/tape",
        "devices/src/copysvc",
        "devices/src/relay",
    ];
    let root = root();
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for f in FIXED {
        let p = PathBuf::from(f);
        if root.join(&p).is_file() {
            out.push(p);
        } else {
            missing.push((*f).to_string());
        }
    }
    for d in DIRS {
        let files = rs_files_under(&root, Path::new(d));
        if files.is_empty() {
            missing.push(format!("{d}/**/*.rs"));
        }
        out.extend(files);
    }
    if !missing.is_empty() {
        return Err(format!(
            "sans-IO core files listed in tests/architecture.rs do not exist: {}\n\
             (moved or renamed? update core_files() and ARCHITECTURE.md)",
            missing.join(", ")
        ));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Every `.rs` file below `dir` (relative to `root`), recursively, sorted; empty if
/// `dir` does not exist.
fn rs_files_under(root: &Path, dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = fs::read_dir(root.join(&d)) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let rel = d.join(e.file_name());
            let abs = root.join(&rel);
            if abs.is_dir() {
                todo.push(rel);
            } else if rel.extension().is_some_and(|x| x == "rs") {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

// ---- the source scanner -------------------------------------------------------------------

/// One forbidden pattern found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Finding {
    file: String,
    /// 1-based.
    line: usize,
    pattern: &'static str,
    /// The offending source line, trimmed.
    text: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: `{}` in: {}",
            self.file, self.line, self.pattern, self.text
        )
    }
}

/// `src` with every comment (line, doc and nested block comments) replaced by spaces;
/// newlines, string literals, char literals and lifetimes are kept, so line numbers and
/// columns still match the file.
fn blank_comments(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let is_ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        // Line comment (also `///` and `//!`).
        if ch == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                blank(&mut out, c[i]);
                i += 1;
            }
            continue;
        }
        // Block comment; Rust's nest.
        if ch == '/' && next == Some('*') {
            let mut depth = 0usize;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    blank(&mut out, c[i]);
                    blank(&mut out, c[i + 1]);
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    blank(&mut out, c[i]);
                    blank(&mut out, c[i + 1]);
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            continue;
        }
        // Raw string: r"…", r#"…"#, br"…" (the `r` must start a token).
        let prev = if i > 0 { Some(c[i - 1]) } else { None };
        let prev2 = if i > 1 { Some(c[i - 2]) } else { None };
        let starts_token = match prev {
            None => true,
            Some('b') => !prev2.is_some_and(is_ident),
            Some(p) => !is_ident(p),
        };
        if ch == 'r' && starts_token {
            let mut j = i + 1;
            while c.get(j) == Some(&'#') {
                j += 1;
            }
            if c.get(j) == Some(&'"') {
                let hashes = j - i - 1;
                // Copy the opening, then up to and including the closing `"###`.
                out.extend(&c[i..=j]);
                i = j + 1;
                while i < c.len() {
                    if c[i] == '"' && (1..=hashes).all(|k| c.get(i + k) == Some(&'#')) {
                        out.extend(&c[i..=i + hashes]);
                        i += hashes + 1;
                        break;
                    }
                    out.push(c[i]);
                    i += 1;
                }
                continue;
            }
        }
        // String literal (also b"…"), with escapes.
        if ch == '"' {
            out.push(ch);
            i += 1;
            while i < c.len() {
                out.push(c[i]);
                if c[i] == '\\' && i + 1 < c.len() {
                    out.push(c[i + 1]);
                    i += 2;
                    continue;
                }
                i += 1;
                if c[i - 1] == '"' {
                    break;
                }
            }
            continue;
        }
        // Char literal ('x', '\n', '\u{..}', '"') as opposed to a lifetime ('a).
        if ch == '\'' {
            if next == Some('\\') {
                // Skip the backslash and the escaped character, then find the close.
                let mut j = i + 3;
                while j < c.len() && c[j] != '\'' && c[j] != '\n' {
                    j += 1;
                }
                let end = j.min(c.len() - 1);
                out.extend(&c[i..=end]);
                i = end + 1;
                continue;
            }
            if next.is_some() && c.get(i + 2) == Some(&'\'') {
                out.extend(&c[i..i + 3]);
                i += 3;
                continue;
            }
        }
        out.push(ch);
        i += 1;
    }
    out
}

/// Every occurrence (one per pattern per line) of `patterns` in the code of `src`,
/// comments excluded. `file` only labels the findings.
fn scan(file: &str, src: &str, patterns: &[&'static str]) -> Vec<Finding> {
    let code = blank_comments(src);
    let mut found = Vec::new();
    for (n, (code_line, src_line)) in code.lines().zip(src.lines()).enumerate() {
        for p in patterns {
            if code_line.contains(p) {
                found.push(Finding {
                    file: file.to_string(),
                    line: n + 1,
                    pattern: p,
                    text: src_line.trim().to_string(),
                });
            }
        }
    }
    found
}

/// Scans every core file and fails with one line per finding.
fn assert_cores_free_of(patterns: &[&'static str], rule: &str) {
    let files = core_files().unwrap_or_else(|e| panic!("{e}"));
    let root = root();
    let mut found = Vec::new();
    for f in &files {
        let src = fs::read_to_string(root.join(f))
            .unwrap_or_else(|e| panic!("{}: cannot read: {e}", f.display()));
        found.extend(scan(&f.display().to_string(), &src, patterns));
    }
    assert!(
        found.is_empty(),
        "{rule} (ARCHITECTURE.md); {} violation(s) in {} scanned files:\n{}",
        found.len(),
        files.len(),
        found
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn sans_io_cores_do_no_io_and_read_no_clock() {
    assert_cores_free_of(
        IO_CLOCK_RANDOM,
        "sans-IO cores never import tokio or tonic, never read the wall clock and never \
         draw OS randomness: take `now` and a seeded RNG as inputs",
    );
}

#[test]
fn sans_io_cores_iterate_in_a_fixed_order() {
    assert_cores_free_of(
        HASH_ORDERED,
        "sans-IO cores keep state in ordered collections (BTreeMap/BTreeSet/IndexMap) \
         so that iteration order, and with it every run, is a function of the seed",
    );
}

#[test]
fn sans_io_cores_never_name_proto_types() {
    assert_cores_free_of(
        PROTO_TYPES,
        "proto types never appear in sans-IO cores; node code converts at the edge",
    );
}

// ---- crate dependency direction -------------------------------------------------------------

/// The layers, lowest first: `(directory, package name)`. A crate may depend only on
/// crates before it.
const LAYERS: &[(&str, &str)] = &[
    ("proto", "fcsim-proto"),
    ("fabric", "fcsim-fabric"),
    ("devices", "fcsim-devices"),
    ("switch", "fcsim-switch"),
    ("scenarios", "fcsim-scenarios"),
    (".", "fcsim"),
];

fn rank(package: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, p)| *p == package)
}

/// One dependency declared in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DepDecl {
    /// The key it is declared under (`fcsim-fabric`, or a rename).
    key: String,
    /// 1-based line of the declaration.
    line: usize,
    /// `package = "…"`, if renamed.
    package: Option<String>,
    /// `path = "…"`, if given.
    path: Option<String>,
    /// `workspace = true`.
    workspace: bool,
}

/// A TOML key path split on dots outside quotes, each part unquoted and trimmed.
fn key_parts(key: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for ch in key.chars() {
        match (quote, ch) {
            (None, '"' | '\'') => quote = Some(ch),
            (Some(q), _) if ch == q => quote = None,
            (None, '.') => parts.push(std::mem::take(&mut cur).trim().to_string()),
            _ => cur.push(ch),
        }
    }
    parts.push(cur.trim().to_string());
    parts
}

/// `line` without a trailing `# comment` (a `#` inside a string is kept).
fn strip_toml_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    for (i, ch) in line.char_indices() {
        match (quote, ch) {
            (None, '"' | '\'') => quote = Some(ch),
            (Some(q), _) if ch == q => quote = None,
            (None, '#') => return &line[..i],
            _ => {}
        }
    }
    line
}

/// The position of the first `=` outside quotes.
fn find_eq(line: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, ch) in line.char_indices() {
        match (quote, ch) {
            (None, '"' | '\'') => quote = Some(ch),
            (Some(q), _) if ch == q => quote = None,
            (None, '=') => return Some(i),
            _ => {}
        }
    }
    None
}

/// The string value of `attr = "…"` inside an inline table `{ … }`, if present.
fn inline_string(table: &str, attr: &str) -> Option<String> {
    let body = table.trim().strip_prefix('{')?.strip_suffix('}')?;
    body.split(',').find_map(|kv| {
        let eq = find_eq(kv)?;
        (kv[..eq].trim() == attr).then(|| kv[eq + 1..].trim().trim_matches('"').to_string())
    })
}

fn inline_true(table: &str, attr: &str) -> bool {
    inline_string(table, attr).is_some_and(|v| v == "true")
}

/// Which tables hold normal (shipped) dependencies: `[dependencies]`,
/// `[build-dependencies]`, `[target.<cfg>.dependencies]`, `[target.<cfg>.build-dependencies]`.
fn is_normal_dep_table(parts: &[String]) -> bool {
    let last_ok = |s: &str| s == "dependencies" || s == "build-dependencies";
    match parts {
        [one] => last_ok(one.as_str()),
        [t, _, last] => t == "target" && last_ok(last.as_str()),
        _ => false,
    }
}

fn is_workspace_dep_table(parts: &[String]) -> bool {
    matches!(parts, [w, d] if w == "workspace" && d == "dependencies")
}

/// The dependencies `toml` declares in the tables `is_table` accepts, both as
/// `key = …` lines inside such a table and as `[<table>.<key>]` sub-tables.
fn dependency_decls(toml: &str, is_table: fn(&[String]) -> bool) -> Vec<DepDecl> {
    enum In {
        Other,
        Table,
        Sub(usize),
    }
    let mut decls: Vec<DepDecl> = Vec::new();
    let mut state = In::Other;
    for (n, raw) in toml.lines().enumerate() {
        let line = strip_toml_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            let header = line.trim_start_matches('[').trim_end_matches(']');
            let parts = key_parts(header);
            state = if line.starts_with("[[") {
                In::Other
            } else if is_table(&parts) {
                In::Table
            } else if parts.len() > 1 && is_table(&parts[..parts.len() - 1]) {
                decls.push(DepDecl {
                    key: parts[parts.len() - 1].clone(),
                    line: n + 1,
                    package: None,
                    path: None,
                    workspace: false,
                });
                In::Sub(decls.len() - 1)
            } else {
                In::Other
            };
            continue;
        }
        let Some(eq) = find_eq(line) else {
            continue; // inside a multi-line array
        };
        let key = key_parts(&line[..eq]);
        let value = line[eq + 1..].trim();
        let unquoted = value.trim_matches('"').to_string();
        match state {
            In::Other => {}
            In::Table => {
                let Some(name) = key.first() else { continue };
                decls.push(DepDecl {
                    key: name.clone(),
                    line: n + 1,
                    package: None,
                    path: None,
                    workspace: false,
                });
                let d = decls.last_mut().expect("just pushed");
                match key.get(1).map(String::as_str) {
                    // `name = "1"` or `name = { … }`
                    None => {
                        d.package = inline_string(value, "package");
                        d.path = inline_string(value, "path");
                        d.workspace = inline_true(value, "workspace");
                    }
                    // `name.workspace = true`, `name.path = "…"`, …
                    Some("package") => d.package = Some(unquoted),
                    Some("path") => d.path = Some(unquoted),
                    Some("workspace") => d.workspace = value == "true",
                    Some(_) => {}
                }
            }
            In::Sub(i) => match key.first().map(String::as_str) {
                Some("package") => decls[i].package = Some(unquoted),
                Some("path") => decls[i].path = Some(unquoted),
                Some("workspace") => decls[i].workspace = value == "true",
                _ => {}
            },
        }
    }
    decls
}

/// The `[package] name` of the manifest in `dir`.
fn package_name(dir: &Path) -> Option<String> {
    let text = fs::read_to_string(dir.join("Cargo.toml")).ok()?;
    let mut in_package = false;
    for raw in text.lines() {
        let line = strip_toml_comment(raw).trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package
            && let Some(eq) = find_eq(line)
            && line[..eq].trim() == "name"
        {
            return Some(line[eq + 1..].trim().trim_matches('"').to_string());
        }
    }
    None
}

/// The package a declaration refers to: `package = …`, else the crate at `path`
/// (relative to `manifest_dir`), else the key.
fn resolve(d: &DepDecl, manifest_dir: &Path) -> String {
    if let Some(p) = &d.package {
        return p.clone();
    }
    if let Some(path) = &d.path
        && let Some(name) = package_name(&manifest_dir.join(path))
    {
        return name;
    }
    d.key.clone()
}

/// One dependency that points the wrong way.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BackEdge {
    manifest: String,
    line: usize,
    from: String,
    to: String,
}

impl fmt::Display for BackEdge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {} depends on {}, which sits above it",
            self.manifest, self.line, self.from, self.to
        )
    }
}

/// The wrong-way dependencies of crate `package` whose manifest text is `toml`.
/// `workspace` maps a `[workspace.dependencies]` key to its package.
fn back_edges(
    package: &str,
    manifest: &str,
    toml: &str,
    manifest_dir: &Path,
    workspace: &[(String, String)],
) -> Vec<BackEdge> {
    let Some(me) = rank(package) else {
        return Vec::new();
    };
    dependency_decls(toml, is_normal_dep_table)
        .into_iter()
        .filter_map(|d| {
            let to = if d.workspace && d.package.is_none() && d.path.is_none() {
                workspace
                    .iter()
                    .find(|(k, _)| *k == d.key)
                    .map_or_else(|| d.key.clone(), |(_, p)| p.clone())
            } else {
                resolve(&d, manifest_dir)
            };
            let theirs = rank(&to)?;
            (theirs >= me).then(|| BackEdge {
                manifest: manifest.to_string(),
                line: d.line,
                from: package.to_string(),
                to,
            })
        })
        .collect()
}

/// The `members = [ … ]` of the root manifest's `[workspace]` table.
fn workspace_members(toml: &str) -> Vec<String> {
    let mut in_ws = false;
    let mut collecting = false;
    let mut text = String::new();
    for raw in toml.lines() {
        let line = strip_toml_comment(raw).trim();
        if line.starts_with('[') && !collecting {
            in_ws = line == "[workspace]";
            continue;
        }
        if in_ws && !collecting {
            if let Some(eq) = find_eq(line)
                && line[..eq].trim() == "members"
            {
                collecting = true;
                text.push_str(&line[eq + 1..]);
            }
        } else if collecting {
            text.push_str(line);
        }
        if collecting && text.contains(']') {
            break;
        }
    }
    text.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

#[test]
fn crate_dependencies_point_one_way() {
    let root = root();
    let root_toml = fs::read_to_string(root.join("Cargo.toml")).expect("root Cargo.toml");

    // Every workspace member has a place in the chain.
    let mut members = workspace_members(&root_toml);
    members.sort();
    let mut layered: Vec<String> = LAYERS
        .iter()
        .filter(|(d, _)| *d != ".")
        .map(|(d, _)| (*d).to_string())
        .collect();
    layered.sort();
    assert_eq!(
        members, layered,
        "Cargo.toml [workspace] members and the layers of tests/architecture.rs differ: \
         place a new crate in LAYERS and in ARCHITECTURE.md's code map"
    );

    let workspace: Vec<(String, String)> = dependency_decls(&root_toml, is_workspace_dep_table)
        .into_iter()
        .map(|d| {
            let p = resolve(&d, &root);
            (d.key, p)
        })
        .collect();

    let mut wrong = Vec::new();
    for (dir, package) in LAYERS {
        let manifest_dir = root.join(dir);
        let label = if *dir == "." {
            "Cargo.toml".to_string()
        } else {
            format!("{dir}/Cargo.toml")
        };
        let toml = fs::read_to_string(manifest_dir.join("Cargo.toml"))
            .unwrap_or_else(|e| panic!("{label}: cannot read: {e}"));
        assert_eq!(
            package_name(&manifest_dir).as_deref(),
            Some(*package),
            "{label}: package name"
        );
        wrong.extend(back_edges(
            package,
            &label,
            &toml,
            &manifest_dir,
            &workspace,
        ));
    }
    assert!(
        wrong.is_empty(),
        "dependencies must point one way: proto ← fabric ← devices ← switch ← scenarios ← \
         fcsim (ARCHITECTURE.md):\n{}",
        wrong
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// ---- the checks can fail -----------------------------------------------------------------

#[test]
fn scanner_reports_a_wall_clock_read_with_its_line() {
    let src = "use std::time::Instant;\nfn f() {\n    let t = Instant::now();\n}\n";
    let found = scan("core.rs", src, IO_CLOCK_RANDOM);
    assert_eq!(
        found,
        vec![Finding {
            file: "core.rs".into(),
            line: 3,
            pattern: "Instant::now",
            text: "let t = Instant::now();".into(),
        }]
    );
    assert_eq!(
        found[0].to_string(),
        "core.rs:3: `Instant::now` in: let t = Instant::now();"
    );
}

#[test]
fn scanner_reports_every_forbidden_pattern() {
    for set in [IO_CLOCK_RANDOM, HASH_ORDERED, PROTO_TYPES] {
        for p in set {
            let src = format!("fn f() {{\n    x({p});\n}}\n");
            let found = scan("bad.rs", &src, set);
            assert!(
                found.iter().any(|f| f.pattern == *p && f.line == 2),
                "`{p}` not reported: {found:?}"
            );
        }
    }
    let src = "use tokio::sync::mpsc;\nlet m: std::collections::HashMap<u8, u8>;\n\
               fn g(r: pb::Frame) {}\nlet c = tonic::Status::ok(\"\");\n";
    let lines = |set| {
        scan("bad.rs", src, set)
            .iter()
            .map(|f| f.line)
            .collect::<Vec<_>>()
    };
    assert_eq!(lines(IO_CLOCK_RANDOM), vec![1, 1, 4]);
    assert_eq!(lines(HASH_ORDERED), vec![2]);
    assert_eq!(lines(PROTO_TYPES), vec![3]);
}

#[test]
fn scanner_ignores_comments_but_not_code_around_them() {
    let clean = "// Instant::now() is forbidden here\n\
                 /// never iterate the HashMap\n\
                 //! tokio:: lives in runtime/\n\
                 /* SystemTime::now() /* nested HashSet */ still a comment */\n\
                 fn f<'a>(x: &'a str) -> &'a str { x }\n";
    assert_eq!(scan("c.rs", clean, IO_CLOCK_RANDOM), vec![]);
    assert_eq!(scan("c.rs", clean, HASH_ORDERED), vec![]);

    // `//` inside a string, a `"` char literal, a lifetime and a raw string with a
    // quote in it must not hide the code that follows them.
    let tricky = "let u = \"http://x\"; let a: HashMap<u8, u8>;\n\
                  let q = '\"'; let b: HashSet<u8>;\n\
                  fn g<'a>(s: &'a str) { let c: HashMap<&'a str, u8>; }\n\
                  let r = r#\"a \" b\"#; let d: HashSet<u8>;\n\
                  let e = '\\''; /* x */ let f: HashMap<u8, u8>;\n\
                  /* HashMap\n HashMap */ let g: HashSet<u8>;\n";
    let found: Vec<usize> = scan("t.rs", tricky, HASH_ORDERED)
        .iter()
        .map(|f| f.line)
        .collect();
    assert_eq!(found, vec![1, 2, 3, 4, 5, 7]);
}

/// A positive control on real files: the node runtime is *meant* to do I/O, so
/// scanning it must find tokio and the proto types. If this fails, file reading or line
/// splitting broke and the checks above would pass blindly.
#[test]
fn scanner_sees_io_in_the_real_node_runtime() {
    let root = root();
    let runtime = rs_files_under(&root, Path::new("fabric/src/runtime"));
    assert!(!runtime.is_empty(), "fabric/src/runtime/*.rs not found");
    let mut io = Vec::new();
    let mut proto = Vec::new();
    for f in &runtime {
        let src = fs::read_to_string(root.join(f)).expect("readable");
        let label = f.display().to_string();
        io.extend(scan(&label, &src, IO_CLOCK_RANDOM));
        proto.extend(scan(&label, &src, PROTO_TYPES));
    }
    assert!(io.iter().any(|f| f.pattern == "tokio::" && f.line > 0));
    assert!(
        !proto.is_empty(),
        "no proto types found in the port drivers"
    );
}

#[test]
fn core_file_list_covers_the_fabric_and_devices_cores_and_no_node_glue() {
    let files = core_files().unwrap_or_else(|e| panic!("{e}"));
    for must in [
        "fabric/src/login.rs",
        "fabric/src/fspf.rs",
        "fabric/src/nport.rs",
        "fabric/src/frame/mod.rs",
        "fabric/src/frame/els.rs",
        "devices/src/fcp.rs",
        "devices/src/store.rs",
        "devices/src/workload.rs",
        "devices/src/history.rs",
        "devices/src/scsi/target.rs",
        "devices/src/scsi/xcopy.rs",
        "devices/src/tape/mod.rs",
        "devices/src/copysvc/mod.rs",
        "devices/src/copysvc/journal.rs",
        "devices/src/relay/buffer.rs",
        "devices/src/relay/standby.rs",
    ] {
        assert!(
            files.iter().any(|f| f == Path::new(must)),
            "{must} is not scanned"
        );
    }
    // The node glue does I/O by design and must not be mistaken for a core.
    for glue in [
        "fabric/src/endnode.rs",
        "fabric/src/switch.rs",
        "devices/src/host.rs",
        "devices/src/array.rs",
        "devices/src/tapenode.rs",
        "devices/src/initiator.rs",
    ] {
        assert!(
            !files.iter().any(|f| f == Path::new(glue)),
            "{glue} is node glue, not a sans-IO core"
        );
    }
}

/// A positive control on the devices glue: the host node serves gRPC and spawns tasks,
/// so scanning it must find tokio, tonic and the proto types.
#[test]
fn scanner_sees_io_in_the_devices_node_glue() {
    let root = root();
    let src = fs::read_to_string(root.join("devices/src/host.rs")).expect("devices/src/host.rs");
    let io = scan("devices/src/host.rs", &src, IO_CLOCK_RANDOM);
    assert!(io.iter().any(|f| f.pattern == "tokio::"), "{io:?}");
    assert!(io.iter().any(|f| f.pattern == "tonic::"), "{io:?}");
    assert!(!scan("devices/src/host.rs", &src, PROTO_TYPES).is_empty());
}

#[test]
fn manifest_parser_reports_back_edges_with_their_lines() {
    let toml = r#"[package]
name = "fcsim-fabric"

[dependencies]
fcsim-proto.workspace = true
fcsim-scenarios.workspace = true   # wrong way
bytes = "1"
devs = { package = "fcsim-devices", version = "0.1" }
up = { path = "../switch" }

[dependencies.fcsim-fabric]
workspace = true

[target.'cfg(unix)'.dependencies]
fcsim-switch = { workspace = true }

[dev-dependencies]
fcsim-scenarios.workspace = true
"#;
    let ws = vec![
        ("fcsim-proto".to_string(), "fcsim-proto".to_string()),
        ("fcsim-scenarios".to_string(), "fcsim-scenarios".to_string()),
        ("fcsim-switch".to_string(), "fcsim-switch".to_string()),
        ("fcsim-fabric".to_string(), "fcsim-fabric".to_string()),
    ];
    // `path = "../switch"` resolves against the real workspace.
    let fabric_dir = root().join("fabric");
    let got: Vec<(usize, String)> =
        back_edges("fcsim-fabric", "fabric/Cargo.toml", toml, &fabric_dir, &ws)
            .into_iter()
            .map(|e| (e.line, e.to))
            .collect();
    assert_eq!(
        got,
        vec![
            (6, "fcsim-scenarios".to_string()),
            (8, "fcsim-devices".to_string()),
            (9, "fcsim-switch".to_string()),
            (11, "fcsim-fabric".to_string()),
            (15, "fcsim-switch".to_string()),
        ]
    );
    let e = back_edges("fcsim-fabric", "fabric/Cargo.toml", toml, &fabric_dir, &ws);
    assert_eq!(
        e[0].to_string(),
        "fabric/Cargo.toml:6: fcsim-fabric depends on fcsim-scenarios, which sits above it"
    );
    // proto may depend on no workspace crate at all.
    let proto = "[dependencies]\nprost = \"0.14\"\nfcsim-fabric = { path = \"../fabric\" }\n";
    let got = back_edges(
        "fcsim-proto",
        "proto/Cargo.toml",
        proto,
        &root().join("proto"),
        &[],
    );
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].line, got[0].to.as_str()), (3, "fcsim-fabric"));
}

#[test]
fn workspace_members_parse_single_and_multi_line() {
    assert_eq!(
        workspace_members("[workspace]\nmembers = [\"proto\", \"fabric\"]\n"),
        vec!["proto", "fabric"]
    );
    assert_eq!(
        workspace_members(
            "[package]\nname = \"x\"\n[workspace]\nmembers = [\n  \"a\", # c\n  \"b\",\n]\nresolver = \"3\"\n"
        ),
        vec!["a", "b"]
    );
}
