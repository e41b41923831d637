//! SQLite implementations: the embedded default, files under the data directory.

mod journal;

pub use journal::{JournalEntry, JournalError, Reservation, ShowJournal, SqliteJournal, Ticket};

use rusqlite::Connection;

/// How long a statement waits for a lock held by another connection before failing.
const BUSY_TIMEOUT_MS: u64 = 5_000;

/// Opens a connection with the settings every Nightmarket SQLite file uses: WAL (readers never
/// block the writer), `synchronous=FULL` (a commit is on disk when it returns: an acknowledged
/// claim survives power loss), foreign keys on.
pub(crate) fn open(path: &std::path::Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}
