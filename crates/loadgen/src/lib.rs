//! The load generator's library: the measurements its commands share ([`stats`]), its small
//! HTTP client ([`http`]), and the benchmark driver ([`bench`]) that runs the generator beside
//! Nightmarket's peers and writes docs/benchmarks.md. The commands themselves live in the
//! binary (`src/main.rs`).

pub mod bench;
pub mod http;
pub mod stats;
