//! The schema: the SQL files in `crates/store/migrations/` (`V<version>__<name>.sql`, in the
//! portable dialect of the store's SQL engines), run by `refinery` on SQLite and PostgreSQL alike.
//!
//! Append only: a released migration never changes; a new behaviour gets a new file. Refinery
//! records each applied migration with a checksum of its name, version and text in
//! [`HISTORY_TABLE`], and a database whose recorded checksum differs from the file refuses to
//! start ([`MigrationError::Changed`]), so an edited released migration is caught on the first
//! start, not by a schema that silently differs between nodes.
//!
//! Databases migrated before refinery was adopted record versions in
//! [`LEGACY_TABLE`] (`nightmarket_migrations`: version and name, no checksum). Such a database
//! is adopted, not migrated again: its recorded versions are checked against the files (same
//! versions, same names, in order from 1), entered into the history with the files' checksums
//! without running them, and only the later files run. The legacy table is left as it was.
//!
//! Each engine serialises migration against other nodes starting at the same time: PostgreSQL
//! with a session advisory lock held around the whole run, SQLite by running every pending
//! migration in one `IMMEDIATE` transaction and, if another process won the race, reading the
//! history again (see the engines' `migrate`).

use refinery::{Migration, Runner, Target};

refinery::embed_migrations!("migrations");

/// Where refinery records the migrations applied to a database, with their checksums.
pub const HISTORY_TABLE: &str = "nightmarket_schema_history";

/// Where the hand-written runner before refinery recorded versions (adopted, never written).
pub const LEGACY_TABLE: &str = "nightmarket_migrations";

/// Why a database's schema cannot be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// A recorded migration's checksum differs from the file of the same version: a released
    /// migration was edited (or the database belongs to another build).
    #[error(
        "migration {version} ({name}) was changed after this database applied it (recorded \
         checksum {recorded}, file {file}): a released migration never changes; restore the \
         file and add a new migration instead"
    )]
    Changed {
        version: i32,
        name: String,
        recorded: u64,
        file: u64,
    },
    /// The database records a migration this build has no file for: it was migrated by a newer
    /// Nightmarket.
    #[error(
        "this database has migration {version} ({name}), which this build does not know: it was \
         migrated by a newer Nightmarket; run that version"
    )]
    Unknown { version: i64, name: String },
    /// The legacy table does not read as a run of the old runner (versions 1, 2, … in order,
    /// with the files' names).
    #[error("the {LEGACY_TABLE} table does not match the migrations: {0}")]
    Legacy(String),
    /// The engine failed while migrating.
    #[error("migrating: {0}")]
    Backend(String),
}

/// Every migration of this build, in version order.
pub fn all() -> Vec<Migration> {
    let mut list = migrations::runner().get_migrations().clone();
    list.sort();
    list
}

/// The runner every engine uses: one transaction for every pending migration (all or none),
/// refusing a changed or unknown applied migration.
pub fn runner(target: Target) -> Runner {
    let mut runner = migrations::runner()
        .set_grouped(true)
        .set_abort_divergent(true)
        .set_abort_missing(true)
        .set_target(target);
    runner.set_migration_table_name(HISTORY_TABLE);
    runner
}

/// What to do with a database that has the legacy table: `Some(n)` enters migrations 1 to `n`
/// into the history without running them (the old runner applied exactly those); `None` when
/// the legacy table is empty. `legacy` is its rows, `(version, name)` in version order.
pub fn adopt(legacy: &[(i64, String)]) -> Result<Option<i32>, MigrationError> {
    let files = all();
    for (i, (version, name)) in legacy.iter().enumerate() {
        let Some(file) = files.iter().find(|m| i64::from(m.version()) == *version) else {
            return Err(MigrationError::Unknown {
                version: *version,
                name: name.clone(),
            });
        };
        if file.name() != name {
            return Err(MigrationError::Legacy(format!(
                "version {version} is {name:?} there, {:?} here",
                file.name()
            )));
        }
        if *version != i as i64 + 1 {
            return Err(MigrationError::Legacy(format!(
                "versions are not 1, 2, … in order: {version} is at position {}",
                i + 1
            )));
        }
    }
    Ok(legacy.last().and_then(|(v, _)| i32::try_from(*v).ok()))
}

/// Refinery's error in this crate's words: a divergent or missing migration says which one.
pub fn explain(e: &refinery::Error) -> MigrationError {
    use refinery::error::Kind;
    match e.kind() {
        Kind::DivergentVersion(applied, file) => MigrationError::Changed {
            version: applied.version(),
            name: applied.name().to_owned(),
            recorded: applied.checksum(),
            file: file.checksum(),
        },
        Kind::MissingVersion(m) => MigrationError::Unknown {
            version: i64::from(m.version()),
            name: m.name().to_owned(),
        },
        _ => MigrationError::Backend(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_are_versions_one_to_n_with_their_names() {
        let names: Vec<(i32, String)> = all()
            .iter()
            .map(|m| (m.version(), m.name().to_owned()))
            .collect();
        assert_eq!(
            names[..5],
            [
                (1, "catalog".to_owned()),
                (2, "markets".to_owned()),
                (3, "orders".to_owned()),
                (4, "claim_log_cancels".to_owned()),
                (5, "access".to_owned()),
            ]
        );
        for (i, (v, _)) in names.iter().enumerate() {
            assert_eq!(*v as usize, i + 1, "versions run 1, 2, … without gaps");
        }
    }

    #[test]
    fn a_legacy_run_is_adopted_up_to_its_last_version() {
        let legacy: Vec<(i64, String)> = vec![(1, "catalog".into()), (2, "markets".into())];
        assert!(matches!(adopt(&legacy), Ok(Some(2))));
        assert!(matches!(adopt(&[]), Ok(None)));
    }

    #[test]
    fn a_legacy_table_that_does_not_match_is_refused() {
        let renamed = vec![(1, "catalogue".to_owned())];
        assert!(matches!(adopt(&renamed), Err(MigrationError::Legacy(_))));
        let gap = vec![(1, "catalog".to_owned()), (3, "orders".to_owned())];
        assert!(matches!(adopt(&gap), Err(MigrationError::Legacy(_))));
        let newer = vec![(1, "catalog".to_owned()), (999, "future".to_owned())];
        assert!(matches!(
            adopt(&newer),
            Err(MigrationError::Unknown { version: 999, .. })
        ));
    }
}
