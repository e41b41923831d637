//! End-to-end tests: the real server on port 0, real HTTP and WebSocket connections.
#![allow(clippy::unwrap_used)]

#[path = "../support/mod.rs"]
mod support;

mod authz;
mod bad_input;
mod csv_exports;
mod demo;
mod docs;
mod faults;
mod http_api;
mod market;
mod market_nodes;
mod middleware;
mod nodes;
mod orders;
mod orders_api;
mod pages;
mod partition;
mod released;
mod reports;
mod restart;
mod resume;
mod seller_absent;
mod sessions;
mod show;
mod show_stats;
mod slow_viewer;
mod waitlist;
mod webhooks_api;
