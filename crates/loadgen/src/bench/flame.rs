//! Flame graphs: the stacks of `perf script` folded and drawn as an SVG by inferno (the Rust
//! port of FlameGraph), so a profile can be read whole, not only as its top symbols.

use inferno::collapse::Collapse;
use inferno::collapse::perf::Folder;
use inferno::flamegraph;

/// Draws the flame graph of `perf script`'s output as an SVG titled `title`.
pub fn svg(perf_script: &[u8], title: &str) -> anyhow::Result<Vec<u8>> {
    let mut folded = Vec::new();
    Folder::default().collapse(perf_script, &mut folded)?;
    if folded.is_empty() {
        anyhow::bail!("perf recorded no stacks");
    }
    let mut options = flamegraph::Options::default();
    options.title = title.to_owned();
    let mut svg = Vec::new();
    flamegraph::from_reader(&mut options, folded.as_slice(), &mut svg)?;
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two samples as `perf script` prints them: a header line, then the stack, innermost first.
    const SCRIPT: &str = "\
nightmarket 4242 1000.000001:    2000000 cpu-clock:
\t    55d0 tokio::runtime::io::poll (/usr/bin/nightmarket)
\t    55a0 nightmarket_server::ws::serve (/usr/bin/nightmarket)
\t    5500 main (/usr/bin/nightmarket)

nightmarket 4242 1000.000003:    2000000 cpu-clock:
\tffffffff sendto ([kernel.kallsyms])
\t    55a0 nightmarket_server::ws::serve (/usr/bin/nightmarket)
\t    5500 main (/usr/bin/nightmarket)

";

    #[test]
    fn draws_the_stacks_it_is_given() {
        let svg =
            String::from_utf8(svg(SCRIPT.as_bytes(), "Nightmarket, fan-out").unwrap()).unwrap();
        assert!(svg.starts_with("<?xml"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.contains("Nightmarket, fan-out"));
        assert!(svg.contains("nightmarket_server::ws::serve"));
        assert!(svg.contains("sendto"));
    }

    #[test]
    fn an_empty_recording_is_an_error() {
        assert!(svg(b"", "nothing").is_err());
    }
}
