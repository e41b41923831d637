//! The HTTP side of the server.

pub mod csv;
pub mod edge;
pub mod error;
pub mod market;
pub mod orders;
pub mod reports;
pub mod sessions;
pub mod shows;
pub mod web;
