//! The workspace's shape, checked: no module cycles inside any crate, and nothing but the binary
//! (whose tests these are) depends on the server.
//!
//! A cycle between two modules means neither can be read, tested or replaced without the other;
//! the rule (docs/architecture.md) is that the shared part moves down a layer instead. The check
//! reads every crate's sources from its roots (`src/lib.rs`, its binaries, its listed
//! test targets) along its `mod`
//! declarations (and `#[path]`), collects the paths that name a module of the crate (`crate::…`,
//! `$crate::…`, `super::…`, `self::…`, and a name in scope: a child module, or what a `use`
//! brought in) and resolves each to the module that defines what it names, following `use`
//! declarations (`crate::ShowId`, re-exported by the root, is a path to the module defining it).
//!
//! The graph is built at every depth. For every module M, its nodes are M's children and M's own
//! items (the crate root's node is `(crate root)`, `http`'s is `http (own items)`); a path
//! written anywhere inside child A to anything inside child B is an edge A → B (`http::shows::x`
//! naming `http::error::y` is `http::shows → http::error`), each path counting at the one level
//! where the two modules part. A child naming its parent's own items (`super::limit`) is an edge
//! to the parent's node. A module naming its own descendants (its `mod` declarations, its
//! re-exports, the code that assembles its children) is no edge: a parent is made of its
//! children, and a descendant is no peer. So a cycle is always among siblings, the parent's own
//! items included, and the crate root is the first level like any other. Test modules count like
//! any other. Paths inside macro invocations count (`tokio::select!` bodies are code); comments,
//! doc links and strings do not.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};

/// The crate root's node in a crate's graph.
const ROOT: &str = "(crate root)";

/// Crates allowed to depend on `nightmarket-server`: the binary that runs it (the end-to-end
/// tests are its own integration tests).
const SERVER_DEPENDENTS: [&str; 1] = ["nightmarket"];

/// Known exceptions, each named with its dependency table: (crate, table). None today.
const SERVER_DEPENDENT_EXCEPTIONS: [(&str, &str); 0] = [];

/// Edges left out of the graph, each a known cycle's one link to undo: (crate, from, to). None
/// today; an entry here is a debt with its reason beside it.
const KNOWN_EDGES: [(&str, &str, &str); 0] = [];

fn workspace_root() -> PathBuf {
    // This file is a test of crates/nightmarket.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
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

/// A crate's roots: its library, its binaries and the test targets its manifest lists (the
/// binary's end-to-end tests and their support module among them).
fn crate_roots(dir: &Path, manifest: &toml::Table) -> Vec<PathBuf> {
    let mut roots = Vec::new();
    let lib = manifest
        .get("lib")
        .and_then(|l| l.get("path"))
        .and_then(|p| p.as_str())
        .unwrap_or("src/lib.rs");
    roots.push(dir.join(lib));
    roots.push(dir.join("src/main.rs"));
    for target in ["bin", "test"]
        .into_iter()
        .filter_map(|kind| manifest.get(kind).and_then(|b| b.as_array()))
        .flatten()
    {
        if let Some(p) = target.get("path").and_then(|p| p.as_str()) {
            roots.push(dir.join(p));
        }
    }
    roots.sort();
    roots.dedup();
    roots.retain(|p| p.is_file());
    roots
}

/// How a path starts: `crate::` (or `$crate::`), `super::` (n times), `self::`, or a name in
/// scope at the place it is written (a child module, or a name a `use` brought in).
#[derive(Clone, Debug)]
enum Start {
    Crate,
    Super(usize),
    SelfModule,
    Name,
}

/// A path as written: the module it is written in ([] = the crate root), how it starts and
/// its segments after the start.
#[derive(Clone, Debug)]
struct Written {
    module: Vec<String>,
    start: Start,
    segments: Vec<String>,
}

/// One path to a name of the crate, with where it was written.
struct Reference {
    path: Written,
    at: String,
}

/// A crate's sources read from one root.
#[derive(Default)]
struct Parsed {
    /// Every module, by its path from the crate root (the root is []).
    modules: BTreeSet<Vec<String>>,
    /// The names a module's `use` declarations bring in: (module, name) → the path.
    uses: BTreeMap<(Vec<String>, String), Written>,
    /// A module's glob imports (`use x::*`).
    globs: BTreeMap<Vec<String>, Vec<Written>>,
    references: Vec<Reference>,
    files: usize,
}

/// How many `use` declarations a path is followed through before the checker gives up on it:
/// far more than any real chain of re-exports, and a bound on an alias that names itself.
const MAX_ALIAS_DEPTH: usize = 16;

impl Parsed {
    /// The path from the crate root that `w` names, if it names something of this crate.
    fn absolute(&self, w: &Written, depth: usize) -> Option<Vec<String>> {
        if depth > MAX_ALIAS_DEPTH {
            return None;
        }
        let base = match w.start {
            Start::Crate => Vec::new(),
            Start::SelfModule => w.module.clone(),
            Start::Super(n) => w.module[..w.module.len().saturating_sub(n)].to_vec(),
            Start::Name => {
                let (first, rest) = w.segments.split_first()?;
                let mut child = w.module.clone();
                child.push(first.clone());
                let mut abs = if self.modules.contains(&child) {
                    child
                } else {
                    let imported = self.imported(&w.module, first, depth)?;
                    self.absolute(&imported, depth + 1)?
                };
                abs.extend(rest.iter().cloned());
                return Some(abs);
            }
        };
        Some(base.into_iter().chain(w.segments.iter().cloned()).collect())
    }

    /// What `name` stands for in `module` through its `use` declarations: a named import
    /// first, else a child or a named import of a module it glob-imports.
    fn imported(&self, module: &[String], name: &str, depth: usize) -> Option<Written> {
        if let Some(w) = self.uses.get(&(module.to_vec(), name.to_owned())) {
            return Some(w.clone());
        }
        for glob in self.globs.get(module).into_iter().flatten() {
            let Some(from) = self.absolute(glob, depth + 1) else {
                continue;
            };
            let mut child = from.clone();
            child.push(name.to_owned());
            if self.modules.contains(&child) {
                return Some(Written {
                    module: Vec::new(),
                    start: Start::Crate,
                    segments: child,
                });
            }
            if let Some(w) = self.uses.get(&(from, name.to_owned())) {
                return Some(w.clone());
            }
        }
        None
    }

    /// The module that defines what the path `abs` (from the crate root) names, through
    /// re-exports: the deepest module on the path, or where a `use` on the way leads.
    fn defining_module(&self, abs: &[String], depth: usize) -> Option<Vec<String>> {
        if depth > MAX_ALIAS_DEPTH {
            return None;
        }
        let mut module = Vec::new();
        for (k, segment) in abs.iter().enumerate() {
            let mut child = module.clone();
            child.push(segment.clone());
            if self.modules.contains(&child) {
                module = child;
                continue;
            }
            if let Some(w) = self.uses.get(&(module.clone(), segment.clone())) {
                let mut next = self.absolute(w, depth + 1)?;
                next.extend(abs[k + 1..].iter().cloned());
                return self.defining_module(&next, depth + 1);
            }
            break;
        }
        Some(module)
    }
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

/// `as name` after `tokens[i]`.
fn alias_after(tokens: &[TokenTree], i: usize) -> Option<String> {
    match (tokens.get(i + 1), tokens.get(i + 2)) {
        (Some(TokenTree::Ident(a)), Some(TokenTree::Ident(name))) if a == "as" => {
            Some(name.to_string())
        }
        _ => None,
    }
}

/// One name a `use` declaration brings in (`None`: a glob), the path, and its line.
struct Leaf {
    name: Option<String>,
    path: Written,
    line: usize,
}

/// The leaves of a `use` tree (the tokens after `use`, up to `;`), each path continuing
/// `path`: `a::{B, c::D as E, self}` → (B, a::B), (E, a::c::D), (a, a).
fn use_tree(tokens: &[TokenTree], mut path: Written, out: &mut Vec<Leaf>) {
    let mut i = 0;
    while i < tokens.len() {
        let fresh = path.segments.is_empty() && matches!(path.start, Start::Name);
        match &tokens[i] {
            TokenTree::Ident(id) if id == "crate" && fresh => path.start = Start::Crate,
            TokenTree::Ident(id) if id == "self" && fresh => path.start = Start::SelfModule,
            TokenTree::Ident(id) if id == "super" && path.segments.is_empty() => {
                path.start = match path.start {
                    Start::Super(n) => Start::Super(n + 1),
                    _ => Start::Super(1),
                };
            }
            TokenTree::Ident(id) if id == "self" => {
                // `a::{self, …}`: the module `a` itself.
                if let Some(name) = alias_after(tokens, i).or_else(|| path.segments.last().cloned())
                {
                    out.push(Leaf {
                        name: Some(name),
                        path,
                        line: id.span().start().line,
                    });
                }
                return;
            }
            TokenTree::Ident(id) => {
                path.segments.push(id.to_string());
                if !is_path_sep(tokens, i + 1) {
                    out.push(Leaf {
                        name: Some(alias_after(tokens, i).unwrap_or_else(|| id.to_string())),
                        path,
                        line: id.span().start().line,
                    });
                    return;
                }
                i += 2;
            }
            TokenTree::Punct(p) if p.as_char() == '*' => {
                out.push(Leaf {
                    name: None,
                    path,
                    line: p.span().start().line,
                });
                return;
            }
            TokenTree::Group(g) if g.delimiter() == Delimiter::Brace => {
                let inner: Vec<TokenTree> = g.stream().into_iter().collect();
                for item in inner.split(|t| is_punct(Some(t), ',')) {
                    use_tree(item, path.clone(), out);
                }
                return;
            }
            _ => {}
        }
        i += 1;
    }
}

/// The file a `#[path = "…"]` attribute on the `mod` at `tokens[i]` names, if it has one.
fn path_attribute(tokens: &[TokenTree], i: usize) -> Option<String> {
    let mut k = i;
    if k >= 2
        && matches!(&tokens[k - 1], TokenTree::Group(g) if g.delimiter() == Delimiter::Parenthesis)
        && is_ident(tokens.get(k - 2), "pub")
    {
        k -= 2;
    } else if k >= 1 && is_ident(tokens.get(k - 1), "pub") {
        k -= 1;
    }
    while k >= 2 && is_punct(tokens.get(k - 2), '#') {
        let TokenTree::Group(g) = &tokens[k - 1] else {
            break;
        };
        let attr: Vec<TokenTree> = g.stream().into_iter().collect();
        if let [
            TokenTree::Ident(name),
            TokenTree::Punct(eq),
            TokenTree::Literal(lit),
        ] = &attr[..]
            && name == "path"
            && eq.as_char() == '='
        {
            return Some(lit.to_string().trim_matches('"').to_owned());
        }
        k -= 2;
    }
    None
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
        self.parsed.modules.insert(module.to_vec());
        let tokens: Vec<TokenTree> = stream.into_iter().collect();
        self.tokens(&tokens, file, module, dir);
    }

    fn tokens(&mut self, tokens: &[TokenTree], file: &Path, module: &[String], dir: &Path) {
        let shown = file
            .strip_prefix(workspace_root())
            .unwrap_or(file)
            .display()
            .to_string();
        let at = |line: usize| format!("{shown}:{line}");
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
                self.parsed.modules.insert(child.clone());
                match tokens.get(i + 2) {
                    Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => {
                        let inner: Vec<TokenTree> = g.stream().into_iter().collect();
                        self.tokens(&inner, file, &child, &dir.join(&name));
                        i += 3;
                        continue;
                    }
                    _ => {
                        // A file named by `#[path]` is read as a `mod.rs`: its children
                        // beside it.
                        let (found, children) = match path_attribute(tokens, i) {
                            Some(p) => {
                                let found = file.parent().unwrap().join(p);
                                let children = found.parent().unwrap().to_owned();
                                (found, children)
                            }
                            None => {
                                let flat = dir.join(format!("{name}.rs"));
                                let nested = dir.join(&name).join("mod.rs");
                                let found = if flat.is_file() { flat } else { nested };
                                (found, dir.join(&name))
                            }
                        };
                        assert!(
                            found.is_file(),
                            "{}: mod {name} has no file",
                            file.display()
                        );
                        self.file(&found, &child, &children);
                        i += 2;
                        continue;
                    }
                }
            }
            // `use …;`: names for the module, and paths.
            if is_ident(Some(t), "use") {
                let end = (i..tokens.len())
                    .find(|&k| is_punct(tokens.get(k), ';'))
                    .unwrap_or(tokens.len());
                let mut leaves = Vec::new();
                let start = Written {
                    module: module.to_vec(),
                    start: Start::Name,
                    segments: Vec::new(),
                };
                use_tree(&tokens[i + 1..end], start, &mut leaves);
                for leaf in leaves {
                    match &leaf.name {
                        Some(name) if name != "_" => {
                            self.parsed
                                .uses
                                .insert((module.to_vec(), name.clone()), leaf.path.clone());
                        }
                        Some(_) => {}
                        None => self
                            .parsed
                            .globs
                            .entry(module.to_vec())
                            .or_default()
                            .push(leaf.path.clone()),
                    }
                    self.parsed.references.push(Reference {
                        path: leaf.path,
                        at: at(leaf.line),
                    });
                }
                i = end + 1;
                continue;
            }
            match t {
                TokenTree::Group(g) => {
                    let inner: Vec<TokenTree> = g.stream().into_iter().collect();
                    self.tokens(&inner, file, module, dir);
                    i += 1;
                }
                _ => i += self.path_at(tokens, i, module, &at),
            }
        }
    }

    /// A path starting at `tokens[i]`, if any; returns how many tokens to move on.
    fn path_at(
        &mut self,
        tokens: &[TokenTree],
        i: usize,
        module: &[String],
        at: &dyn Fn(usize) -> String,
    ) -> usize {
        let TokenTree::Ident(id) = &tokens[i] else {
            return 1;
        };
        // A segment in the middle of a path, a method (`x.f::<T>()`), or a macro's variable.
        let after_sep =
            i >= 2 && is_punct(tokens.get(i - 1), ':') && is_punct(tokens.get(i - 2), ':');
        let after_dot = i >= 1 && is_punct(tokens.get(i - 1), '.');
        let dollar = i >= 1 && is_punct(tokens.get(i - 1), '$');
        let word = id.to_string();
        if after_sep || after_dot || (dollar && word != "crate") {
            return 1;
        }
        let mut path = Written {
            module: module.to_vec(),
            start: Start::Name,
            segments: Vec::new(),
        };
        let mut j = i;
        match word.as_str() {
            "crate" => {
                path.start = Start::Crate;
                j += 1;
            }
            "self" => {
                path.start = Start::SelfModule;
                j += 1;
            }
            "super" => {
                let mut n = 0;
                while is_ident(tokens.get(j), "super") {
                    n += 1;
                    j += 1;
                    if is_path_sep(tokens, j) && is_ident(tokens.get(j + 2), "super") {
                        j += 2;
                    }
                }
                path.start = Start::Super(n);
            }
            // A name starts a path only when one follows it (`shows::routes`).
            _ => {
                path.segments.push(word);
                j += 1;
            }
        }
        while is_path_sep(tokens, j) {
            match tokens.get(j + 2) {
                Some(TokenTree::Ident(n)) => {
                    path.segments.push(n.to_string());
                    j += 3;
                }
                _ => break,
            }
        }
        let long_enough = match path.start {
            Start::Name => path.segments.len() >= 2,
            _ => !path.segments.is_empty(),
        };
        if long_enough {
            self.parsed.references.push(Reference {
                path,
                at: at(id.span().start().line),
            });
        }
        j - i
    }
}

/// The graph of one crate root: node → node it names → where, first time. A node is a module
/// of a level (its path, `http::edge`) or a level's own items (`http (own items)`, the crate
/// root's `(crate root)`); an edge joins two nodes of one level.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

/// `path`'s node at the level of the module `path[..level]`.
fn node(path: &[String], level: usize) -> String {
    if path.len() > level {
        path[..=level].join("::")
    } else if level == 0 {
        ROOT.to_owned()
    } else {
        format!("{} (own items)", path.join("::"))
    }
}

fn graph(root: &Path, krate: &str) -> (Graph, usize) {
    let mut reader = Reader {
        krate,
        parsed: Parsed::default(),
    };
    let dir = root.parent().unwrap().to_owned();
    reader.file(root, &[], &dir);
    let parsed = reader.parsed;
    let mut g: Graph = BTreeMap::new();
    for r in &parsed.references {
        let Some(to) = parsed
            .absolute(&r.path, 0)
            .and_then(|abs| parsed.defining_module(&abs, 0))
        else {
            continue;
        };
        let from = &r.path.module;
        // A module naming its own descendants (declaring, re-exporting, assembling them) is
        // no edge between peers.
        if to.starts_with(from) {
            continue;
        }
        let level = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
        let (from, to) = (node(from, level), node(&to, level));
        if from != to && !KNOWN_EDGES.contains(&(krate, from.as_str(), to.as_str())) {
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

/// The graph of a sample crate written to a temporary directory: (file under `src/`, text).
fn sample(files: &[(&str, &str)]) -> (Graph, usize) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    graph(&dir.path().join("lib.rs"), "sample")
}

/// The nodes `from` has an edge to, in order.
fn edges_of<'g>(g: &'g Graph, from: &str) -> Vec<&'g str> {
    g.get(from)
        .map(|e| e.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

/// The checker itself: it finds a cycle where there is one, through `crate::`, `super::`, use
/// groups, macro bodies and re-exports, and not through comments, strings or `pub use`.
#[test]
fn the_checker_sees_cycles_and_only_cycles() {
    let (g, files) = sample(&[
        (
            "lib.rs",
            "//! crate::c::Z in a comment\n\
             mod a;\nmod b;\nmod c;\nmod d;\npub use d::Item;\npub type Millis = i64;\n",
        ),
        (
            "a.rs",
            "use crate::{b::X, Millis};\nmod inner { use super::super::c::Y; }\n",
        ),
        (
            "b.rs",
            "fn f() { tokio::select! { _ = crate::a::g() => {} } }\n",
        ),
        (
            "c.rs",
            "/// [`Z`](crate::a::Z)\nconst S: &str = \"crate::a::Z\";\nfn f() { crate::Item::new(); }\n",
        ),
        ("d.rs", "pub struct Item; fn f() -> crate::Millis { 0 }\n"),
    ]);
    assert_eq!(files, 5);
    let edges = |from: &str| edges_of(&g, from);
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

/// The checker at every depth: a cycle between two children of a nested module, through
/// `super::`, a parent's re-export and a grandchild, named with its nodes' paths; a child naming
/// its parent's own items is an edge to the parent's node; a parent naming its children is none.
#[test]
fn the_checker_sees_nested_cycles() {
    let (g, files) = sample(&[
        ("lib.rs", "mod net;\nmod util;\n"),
        (
            "net/mod.rs",
            "mod edge;\nmod error;\npub use error::Error;\n\
             pub(crate) fn limit() -> usize { 1 }\nfn serve() { edge::serve(); }\n",
        ),
        (
            "net/edge.rs",
            "pub fn serve() -> usize { super::limit() }\nfn f() -> crate::net::Error { todo!() }\n",
        ),
        (
            "net/error.rs",
            "pub struct Error;\nmod inner { fn g() { super::super::edge::serve(); } }\n",
        ),
        ("util.rs", "use crate::net::Error;\n"),
    ]);
    assert_eq!(files, 5);
    let edges = |from: &str| edges_of(&g, from);
    assert_eq!(
        edges("net::edge"),
        ["net (own items)", "net::error"],
        "through the parent's re-export to where the item is defined"
    );
    assert_eq!(edges("net::error"), ["net::edge"], "from a grandchild");
    assert!(
        edges("net (own items)").is_empty(),
        "a parent naming its children is no edge"
    );
    assert_eq!(edges("util"), ["net"]);
    assert_eq!(cycles(&g), [vec!["net::edge", "net::error", "net::edge"]]);
}

#[test]
fn only_the_binary_depends_on_the_server() {
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
