//! `nightmarket demo` run twice over the same data: the second run reuses the sellers and
//! products and closes the show the first left live, instead of piling up live shows.

use std::process::Stdio;
use std::time::Duration;

use crate::support::{WAIT, get, token};
use nightmarket_server::auth::Role;
use tokio::io::{AsyncBufReadExt, BufReader};

const EXE: &str = env!("CARGO_BIN_EXE_nightmarket");

/// Runs the demo until it announces its live show; returns the child, its address and what it
/// printed up to then.
async fn demo(dir: &std::path::Path) -> (tokio::process::Child, std::net::SocketAddr, String) {
    let mut child = crate::support::command(EXE, dir, &["demo", "--buyers", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    let mut addr = None;
    tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(a) = line.strip_prefix("nightmarket listening on ") {
                addr = Some(a.parse().unwrap());
            }
            printed.push_str(&line);
            printed.push('\n');
            if line.starts_with("Demo show live") {
                break;
            }
        }
    })
    .await
    .expect("the demo announces its show");
    // Keep reading so the narrator never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr.expect("an address"), printed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_demo_run_reuses_and_closes_what_the_first_left() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, _, printed) = demo(dir.path()).await;
    assert!(!printed.contains("Closed the demo show"), "{printed}");
    first.kill().await.unwrap();
    let _ = first.wait().await;

    let (mut second, addr, printed) = demo(dir.path()).await;
    assert!(printed.contains("Closed the demo show"), "{printed}");
    let op = token(Role::Operator, "office");
    let (_, sellers) = get(addr, "/api/sellers", Some(&op)).await;
    assert_eq!(sellers.as_array().unwrap().len(), 3, "{sellers}");
    let (_, shows) = get(addr, "/api/shows", None).await;
    let statuses: Vec<&str> = shows
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == "live").count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    second.kill().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), second.wait()).await;
}

/// A narration line with what varies from run to run masked: event numbers everywhere; every
/// number in stock and claim-feed lines (stock levels, quantities, prices, claim counts).
fn masked(line: &str) -> String {
    let mut out = String::new();
    let trimmed = line.trim_start();
    let all = trimmed.starts_with("stock left:") || trimmed.starts_with("someone took");
    let mut chars = line.chars().peekable();
    let mut in_seq = false;
    while let Some(c) = chars.next() {
        if c == '#' {
            in_seq = true;
            out.push(c);
            continue;
        }
        if c.is_ascii_digit() && (all || in_seq) {
            while chars
                .peek()
                .is_some_and(|d| d.is_ascii_digit() || *d == '.')
            {
                chars.next();
            }
            out.push('N');
            continue;
        }
        in_seq = false;
        out.push(c);
    }
    out.trim_end().to_owned()
}

/// The README's narration excerpt is what the demo prints: each of its lines, numbers masked,
/// appears in the demo's output in the same order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_narration_is_what_the_demo_prints() {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"),
    )
    .unwrap();
    let start = readme.find("```\n  [#1]").expect("the narration excerpt") + 4;
    let end = start + readme[start..].find("```").unwrap();
    let expected: Vec<String> = readme[start..end].lines().map(masked).collect();
    assert!(expected.len() >= 5, "{expected:?}");

    let dir = tempfile::tempdir().unwrap();
    let mut child = crate::support::command(EXE, dir.path(), &["demo"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = 0;
    let mut seen = Vec::new();
    // The first flash runs 3 s after the pin's 6 s and ends at its cap within its 20 s.
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let line = masked(&line);
            if line == expected[next] {
                next += 1;
                if next == expected.len() {
                    return true;
                }
            }
            seen.push(line);
        }
        false
    })
    .await;
    child.kill().await.unwrap();
    assert_eq!(
        found,
        Ok(true),
        "README line not printed by the demo: {:?}\nprinted:\n{}",
        expected.get(next),
        seen.join("\n")
    );
}
