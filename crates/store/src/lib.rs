//! Storage of Nightmarket.
//!
//! - [`Catalog`]: sellers, products (with their OCOP proof) and shows with their lineups. One
//!   interface; SQLite is the embedded implementation ([`sqlite::SqliteCatalog`]); PostgreSQL
//!   joins it for distributed mode and must pass the same conformance suite ([`conformance`]).
//! - [`sqlite::SqliteJournal`]: the durable claim journal behind the in-memory inventory. Claims,
//!   cancellations and show events are appended in group-committed transactions; a claim is
//!   acknowledged only once its transaction is on disk, and a restart replays the journal.
//!
//! The catalog and the journal live in separate SQLite files so that the journal's constant
//! writes never wait on a catalog write (SQLite admits one writer per file).

pub mod catalog;
pub mod conformance;
pub mod sqlite;

pub use catalog::{Catalog, LineupRow, SellerRow, ShowRow, StoreError};
pub use sqlite::{
    JournalEntry, JournalError, Reservation, ShowJournal, SqliteCatalog, SqliteJournal, Ticket,
};
