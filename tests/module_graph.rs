//! The workspace's shape, checked: no module cycles inside any crate, and nothing but the binary
//! and the end-to-end tests depends on the server.
//!
//! A cycle between two modules means neither can be read, tested or replaced without the other;
//! the rule (docs/architecture.md) is that the shared part moves down a layer instead. The check
//! reads every crate's sources from its roots (`src/lib.rs`, its binaries) along its `mod`
//! declarations, collects the paths that name another module (`crate::…`, `$crate::…`, `super::…`
//! and, in the crate root, a declared module's name) and builds the graph of top-level modules,
//! a top-level module being the first segment of a module's path (`http::shows` is `http`). The
//! crate root is a node of its own; its `pub use` re-exports are the crate's public face, not a
//! dependency, and a path through one (`crate::ShowId`) counts as a path to the module that
//! defines the item. Paths inside macro invocations count (`tokio::select!` bodies are code);
//! comments, doc links and strings do not.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};

/// The crate root's node in a crate's graph.
const ROOT: &str = "(crate root)";

/// Crates allowed to depend on `nightmarket-server`: the binary that runs it and the end-to-end
/// tests that start it.
const SERVER_DEPENDENTS: [&str; 2] = ["nightmarket", "nightmarket-tests"];

/// Known exceptions, each named with its dependency table: (crate, table). None today.
const SERVER_DEPENDENT_EXCEPTIONS: [(&str, &str); 0] = [];

/// Edges left out of the graph, each a known cycle's one link to undo: (crate, from, to). None
/// today; an entry here is a debt with its reason beside it.
const KNOWN_EDGES: [(&str, &str, &str); 0] = [];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn read_toml(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every member's directory, from the root manifest's `members` (`dir` or `dir/*`).
fn members() -> Vec<PathBuf> {
    let root = workspace_root();
    let manifest = read_toml(&root.join("Cargo.toml"));
    let members = manifest["workspace"]["members"].as_array().unwrap();
    let mut dirs = Vec::new();
    for m in members {
        let m = m.as_str().unwrap();
        match m.strip_suffix("/*") {
            Some(parent) => {
                let mut found: Vec<PathBuf> = std::fs::read_dir(root.join(parent))
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .filter(|p| p.join("Cargo.toml").is_file())
                    .collect();
                found.sort();
                dirs.extend(found);
            }
            None => dirs.push(root.join(m)),
        }
    }
    assert!(dirs.len() > 5, "workspace members not found: {dirs:?}");
    dirs
}

/// A crate's roots: its library and its binaries.
fn crate_roots(dir: &Path, manifest: &toml::Table) -> Vec<PathBuf> {
    let mut roots = Vec::new();
    let lib = manifest
        .get("lib")
        .and_then(|l| l.get("path"))
        .and_then(|p| p.as_str())
        .unwrap_or("src/lib.rs");
    roots.push(dir.join(lib));
    roots.push(dir.join("src/main.rs"));
    for bin in manifest
        .get("bin")
        .and_then(|b| b.as_array())
        .into_iter()
        .flatten()
    {
        if let Some(p) = bin.get("path").and_then(|p| p.as_str()) {
            roots.push(dir.join(p));
        }
    }
    roots.sort();
    roots.dedup();
    roots.retain(|p| p.is_file());
    roots
}

/// One path from a module to another crate-level name, with where it was written.
struct Reference {
    /// The module the path is written in (empty: the crate root).
    from: Vec<String>,
    /// What the path resolves to before re-exports: a module path ([] = root) and the name
    /// after it, if the path continues.
    base: Vec<String>,
    next: Option<String>,
    /// Written inside a `pub use` of the crate root: a re-export.
    reexport: bool,
    at: String,
}

/// A crate's sources read from one root.
#[derive(Default)]
struct Parsed {
    /// Top-level modules declared by the root.
    top: BTreeSet<String>,
    /// Names the root re-exports, each with the top-level module it comes from (`None`: from
    /// another crate).
    reexports: BTreeMap<String, Option<String>>,
    references: Vec<Reference>,
    files: usize,
}

fn is_punct(t: Option<&TokenTree>, c: char) -> bool {
    matches!(t, Some(TokenTree::Punct(p)) if p.as_char() == c)
}

fn is_ident(t: Option<&TokenTree>, s: &str) -> bool {
    matches!(t, Some(TokenTree::Ident(i)) if i == s)
}

/// `::` at `tokens[i..]`.
fn is_path_sep(tokens: &[TokenTree], i: usize) -> bool {
    matches!(tokens.get(i), Some(TokenTree::Punct(p)) if p.as_char() == ':' && p.spacing() == Spacing::Joint)
        && is_punct(tokens.get(i + 1), ':')
}

/// The first identifier of each comma-separated item of a `{…}` use group.
fn group_heads(stream: TokenStream) -> Vec<String> {
    let tokens: Vec<TokenTree> = stream.into_iter().collect();
    let mut heads = Vec::new();
    let mut start = true;
    for t in &tokens {
        match t {
            TokenTree::Punct(p) if p.as_char() == ',' => start = true,
            TokenTree::Ident(i) if start => {
                heads.push(i.to_string());
                start = false;
            }
            _ => start = false,
        }
    }
    heads
}

/// The names a `use` tree (the tokens after `use`, up to `;`) brings in, with the first segment
/// of each path: `a::{B, c::D as E}` → (B, a), (E, a).
fn use_names(tokens: &[TokenTree], head: Option<&str>, out: &mut Vec<(String, Option<String>)>) {
    let mut i = 0;
    let mut head = head.map(str::to_owned);
    while i < tokens.len() {
        match &tokens[i] {
            TokenTree::Ident(id) if id == "crate" || id == "self" => i += 1,
            TokenTree::Ident(id) => {
                let name = id.to_string();
                if head.is_none() {
                    head = Some(name.clone());
                }
                if is_path_sep(tokens, i + 1) {
                    i += 3;
                    continue;
                }
                let alias = if is_ident(tokens.get(i + 1), "as") {
                    match tokens.get(i + 2) {
                        Some(TokenTree::Ident(a)) => a.to_string(),
                        _ => name.clone(),
                    }
                } else {
                    name.clone()
                };
                out.push((alias, head.clone()));
                return;
            }
            TokenTree::Group(g) if g.delimiter() == Delimiter::Brace => {
                let inner: Vec<TokenTree> = g.stream().into_iter().collect();
                for item in inner.split(|t| is_punct(Some(t), ',')) {
                    use_names(item, head.as_deref(), out);
                }
                return;
            }
            _ => i += 1,
        }
    }
}

struct Reader<'a> {
    krate: &'a str,
    parsed: Parsed,
}

impl Reader<'_> {
    /// Reads the module at `module` from `file`; its child modules' files are under `dir`.
    fn file(&mut self, file: &Path, module: &[String], dir: &Path) {
        let text =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let stream = TokenStream::from_str(&text)
            .unwrap_or_else(|e| panic!("{} ({}): {e:?}", file.display(), self.krate));
        self.parsed.files += 1;
        let tokens: Vec<TokenTree> = stream.into_iter().collect();
        self.tokens(&tokens, file, module, dir);
    }

    fn tokens(&mut self, tokens: &[TokenTree], file: &Path, module: &[String], dir: &Path) {
        let at = |t: &TokenTree| {
            format!(
                "{}:{}",
                file.strip_prefix(workspace_root())
                    .unwrap_or(file)
                    .display(),
                t.span().start().line
            )
        };
        let mut i = 0;
        while i < tokens.len() {
            let t = &tokens[i];
            // `mod name;` or `mod name { … }`.
            if is_ident(Some(t), "mod")
                && let Some(TokenTree::Ident(name)) = tokens.get(i + 1)
            {
                let name = name.to_string();
                let mut child = module.to_vec();
                child.push(name.clone());
                if module.is_empty() {
                    self.parsed.top.insert(name.clone());
                }
                match tokens.get(i + 2) {
                    Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => {
                        let inner: Vec<TokenTree> = g.stream().into_iter().collect();
                        self.tokens(&inner, file, &child, &dir.join(&name));
                        i += 3;
                        continue;
                    }
                    _ => {
                        let flat = dir.join(format!("{name}.rs"));
                        let nested = dir.join(&name).join("mod.rs");
                        let found = if flat.is_file() { flat } else { nested };
                        assert!(
                            found.is_file(),
                            "{}: mod {name} has no file",
                            file.display()
                        );
                        self.file(&found, &child, &dir.join(&name));
                        i += 2;
                        continue;
                    }
                }
            }
            // `pub use …;` in the crate root: re-exports.
            if module.is_empty() && is_ident(Some(t), "pub") {
                let mut j = i + 1;
                if matches!(tokens.get(j), Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis)
                {
                    j += 1;
                }
                if is_ident(tokens.get(j), "use") {
                    let end = (j..tokens.len())
                        .find(|&k| is_punct(tokens.get(k), ';'))
                        .unwrap_or(tokens.len());
                    let mut names = Vec::new();
                    use_names(&tokens[j + 1..end], None, &mut names);
                    for (name, head) in names {
                        self.parsed.reexports.insert(name, head);
                    }
                    // The paths themselves are still read, as re-exports.
                    self.paths(&tokens[j + 1..end], module, true, &at);
                    i = end + 1;
                    continue;
                }
            }
            match t {
                TokenTree::Group(g) => {
                    let inner: Vec<TokenTree> = g.stream().into_iter().collect();
                    self.tokens(&inner, file, module, dir);
                    i += 1;
                }
                _ => {
                    i += self.path_at(tokens, i, module, false, &at);
                }
            }
        }
    }

    /// Reads every path in `tokens` (a `pub use` tree).
    fn paths(
        &mut self,
        tokens: &[TokenTree],
        module: &[String],
        reexport: bool,
        at: &dyn Fn(&TokenTree) -> String,
    ) {
        let mut i = 0;
        while i < tokens.len() {
            if let TokenTree::Group(g) = &tokens[i] {
                let inner: Vec<TokenTree> = g.stream().into_iter().collect();
                self.paths(&inner, module, reexport, at);
                i += 1;
            } else {
                i += self.path_at(tokens, i, module, reexport, at);
            }
        }
    }

    /// A path starting at `tokens[i]`, if any; returns how many tokens to move on.
    fn path_at(
        &mut self,
        tokens: &[TokenTree],
        i: usize,
        module: &[String],
        reexport: bool,
        at: &dyn Fn(&TokenTree) -> String,
    ) -> usize {
        let t = &tokens[i];
        let TokenTree::Ident(id) = t else { return 1 };
        // A segment in the middle of a path (`x::crate` cannot happen; `foo::super` neither).
        let after_sep =
            i >= 2 && is_punct(tokens.get(i - 1), ':') && is_punct(tokens.get(i - 2), ':');
        if after_sep {
            return 1;
        }
        let word = id.to_string();
        let dollar = i >= 1 && is_punct(tokens.get(i - 1), '$');
        let (base, mut j) = match word.as_str() {
            "crate" => (Vec::new(), i + 1),
            "self" if module.is_empty() => (Vec::new(), i + 1),
            "super" => {
                let mut base = module.to_vec();
                let mut j = i;
                while is_ident(tokens.get(j), "super") {
                    base.pop();
                    j += 1;
                    if is_path_sep(tokens, j) && is_ident(tokens.get(j + 2), "super") {
                        j += 2;
                    }
                }
                (base, j)
            }
            // In the crate root, a declared module's name starts a path of its own.
            name if module.is_empty() && !dollar && self.parsed.top.contains(name) => {
                if is_path_sep(tokens, i + 1) {
                    self.parsed.references.push(Reference {
                        from: Vec::new(),
                        base: vec![name.to_owned()],
                        next: None,
                        reexport,
                        at: at(t),
                    });
                }
                return 1;
            }
            _ => return 1,
        };
        if !is_path_sep(tokens, j) {
            return j - i;
        }
        j += 2;
        let nexts = match tokens.get(j) {
            Some(TokenTree::Ident(n)) => vec![n.to_string()],
            Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => {
                group_heads(g.stream())
            }
            _ => Vec::new(),
        };
        for next in nexts {
            self.parsed.references.push(Reference {
                from: module.to_vec(),
                base: base.clone(),
                next: Some(next),
                reexport,
                at: at(t),
            });
        }
        j - i
    }
}

/// The graph of one crate root: top-level module → module it names → where, first time.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn graph(root: &Path, krate: &str) -> (Graph, usize) {
    let mut reader = Reader {
        krate,
        parsed: Parsed::default(),
    };
    let dir = root.parent().unwrap().to_owned();
    reader.file(root, &[], &dir);
    let parsed = reader.parsed;
    let node = |path: &[String]| path.first().cloned().unwrap_or_else(|| ROOT.to_owned());
    let mut g: Graph = BTreeMap::new();
    for r in &parsed.references {
        if r.reexport {
            continue;
        }
        let to = if !r.base.is_empty() {
            Some(r.base[0].clone())
        } else {
            match r.next.as_deref() {
                None => None,
                Some(n) if parsed.top.contains(n) => Some(n.to_owned()),
                Some(n) => match parsed.reexports.get(n) {
                    // From another crate: not a module of this one.
                    Some(None) => None,
                    Some(Some(m)) if parsed.top.contains(m) => Some(m.clone()),
                    Some(Some(_)) => None,
                    // Defined in the root itself.
                    None => Some(ROOT.to_owned()),
                },
            }
        };
        let from = node(&r.from);
        if let Some(to) = to
            && to != from
            && !KNOWN_EDGES.contains(&(krate, from.as_str(), to.as_str()))
        {
            g.entry(from)
                .or_default()
                .entry(to)
                .or_insert_with(|| r.at.clone());
        }
    }
    (g, parsed.files)
}

/// A shortest cycle through `start`, if any: `[start, …, start]`.
fn cycle_through(g: &Graph, start: &str) -> Option<Vec<String>> {
    let mut prev: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = VecDeque::from([start.to_owned()]);
    let mut seen = BTreeSet::new();
    while let Some(n) = queue.pop_front() {
        for next in g.get(&n).into_iter().flat_map(|e| e.keys()) {
            if next == start {
                // Back from `n` to `start` along the search, then round to `start` again.
                let mut path = vec![n.clone()];
                while path.last().is_some_and(|p| p != start) {
                    let back = prev[path.last().unwrap()].clone();
                    path.push(back);
                }
                path.reverse();
                path.push(start.to_owned());
                return Some(path);
            }
            if seen.insert(next.clone()) {
                prev.insert(next.clone(), n.clone());
                queue.push_back(next.clone());
            }
        }
    }
    None
}

/// Every distinct cycle of `g`, each named once (starting from its smallest node).
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    let mut found: BTreeSet<Vec<String>> = BTreeSet::new();
    for start in g.keys() {
        if let Some(c) = cycle_through(g, start) {
            let body = &c[..c.len() - 1];
            let min = (0..body.len()).min_by_key(|&k| &body[k]).unwrap();
            let mut canon: Vec<String> = body[min..].iter().chain(&body[..min]).cloned().collect();
            canon.push(canon[0].clone());
            found.insert(canon);
        }
    }
    found.into_iter().collect()
}

fn describe(krate: &str, g: &Graph, cycle: &[String]) -> String {
    let steps: Vec<String> = cycle
        .windows(2)
        .map(|w| format!("  {} → {} ({})", w[0], w[1], g[&w[0]][&w[1]]))
        .collect();
    format!(
        "module cycle in {krate}: {}\n{}",
        cycle.join(" → "),
        steps.join("\n")
    )
}

#[test]
fn no_module_cycles_in_any_crate() {
    let mut failures = Vec::new();
    let mut files = 0;
    for dir in members() {
        let manifest = read_toml(&dir.join("Cargo.toml"));
        let krate = manifest["package"]["name"].as_str().unwrap().to_owned();
        for root in crate_roots(&dir, &manifest) {
            let (g, n) = graph(&root, &krate);
            files += n;
            for c in cycles(&g) {
                failures.push(describe(&krate, &g, &c));
            }
        }
    }
    assert!(files > 50, "only {files} source files read");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The checker itself: it finds a cycle where there is one, through `crate::`, `super::`, use
/// groups, macro bodies and re-exports, and not through comments, strings or `pub use`.
#[test]
fn the_checker_sees_cycles_and_only_cycles() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    let write = |name: &str, text: &str| {
        let path = src.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "lib.rs",
        "//! crate::c::Z in a comment\n\
         mod a;\nmod b;\nmod c;\nmod d;\npub use d::Item;\npub type Millis = i64;\n",
    );
    write(
        "a.rs",
        "use crate::{b::X, Millis};\nmod inner { use super::super::c::Y; }\n",
    );
    write(
        "b.rs",
        "fn f() { tokio::select! { _ = crate::a::g() => {} } }\n",
    );
    write(
        "c.rs",
        "/// [`Z`](crate::a::Z)\nconst S: &str = \"crate::a::Z\";\nfn f() { crate::Item::new(); }\n",
    );
    write("d.rs", "pub struct Item; fn f() -> crate::Millis { 0 }\n");
    let (g, files) = graph(&src.join("lib.rs"), "sample");
    assert_eq!(files, 5);
    let edges = |from: &str| -> Vec<&str> {
        g.get(from)
            .map(|e| e.keys().map(String::as_str).collect())
            .unwrap_or_default()
    };
    assert_eq!(edges("a"), ["(crate root)", "b", "c"]);
    assert_eq!(edges("b"), ["a"]);
    assert_eq!(
        edges("c"),
        ["d"],
        "through the re-export, not the comment or string"
    );
    assert_eq!(edges("d"), ["(crate root)"]);
    assert!(
        edges(ROOT).is_empty(),
        "re-exports and mod declarations are no dependency"
    );
    assert_eq!(cycles(&g), [vec!["a", "b", "a"]]);
}

#[test]
fn only_the_binary_and_the_tests_depend_on_the_server() {
    let mut failures = Vec::new();
    for dir in members() {
        let manifest = read_toml(&dir.join("Cargo.toml"));
        let krate = manifest["package"]["name"].as_str().unwrap().to_owned();
        if SERVER_DEPENDENTS.contains(&krate.as_str()) {
            continue;
        }
        let mut tables: Vec<(String, &toml::Table)> = Vec::new();
        for kind in ["dependencies", "dev-dependencies", "build-dependencies"] {
            if let Some(t) = manifest.get(kind).and_then(|t| t.as_table()) {
                tables.push((kind.to_owned(), t));
            }
        }
        if let Some(targets) = manifest.get("target").and_then(|t| t.as_table()) {
            for (cfg, t) in targets {
                for kind in ["dependencies", "dev-dependencies", "build-dependencies"] {
                    if let Some(t) = t.get(kind).and_then(|t| t.as_table()) {
                        tables.push((format!("target.{cfg}.{kind}"), t));
                    }
                }
            }
        }
        for (kind, table) in tables {
            let names_server = table.iter().any(|(name, spec)| {
                name == "nightmarket-server"
                    || spec.get("package").and_then(|p| p.as_str()) == Some("nightmarket-server")
            });
            let excepted = SERVER_DEPENDENT_EXCEPTIONS.contains(&(krate.as_str(), kind.as_str()));
            if names_server && !excepted {
                failures.push(format!("{krate} depends on nightmarket-server ({kind})"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
