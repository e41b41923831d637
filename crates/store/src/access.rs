//! Who may sign in: one-time invites and the browser sessions they open.
//!
//! An invite is stored by the hash of its code, never the code; redeeming it is one transaction
//! that spends the invite and opens the session, so two clicks on one link open one session.
//! Sessions are rows so that sign-out (and an operator) can revoke them at once; the cookie only
//! carries a short-lived signed token naming the row.

use nightmarket_domain::Millis;

use crate::catalog::conflict;
use crate::params;
use crate::sql::{Row, SqlError, Step};
use crate::{Store, StoreError};

/// Tag of the redeem step that finds no unspent, unexpired invite.
const INVITE_SPENT: &str = "invite_spent";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteRow {
    /// SHA-256 of the code, lowercase hex.
    pub code_hash: String,
    /// `operator` or `seller`.
    pub role: String,
    /// The operator's name or the seller's id.
    pub subject: String,
    /// Shown in the console ("Xin chào, …").
    pub name: String,
    pub created_by: String,
    pub created_at: Millis,
    pub expires_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id: String,
    /// `operator`, `seller` or `viewer`.
    pub role: String,
    pub subject: String,
    pub name: String,
    pub created_at: Millis,
    /// The session ends here however active it is.
    pub expires_at: Millis,
    pub revoked_at: Option<Millis>,
}

/// Why an invite could not be redeemed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteRefusal {
    Unknown,
    Used,
    Expired,
}

const SESSION_COLUMNS: &str = "id, role, subject, name, created_at, expires_at, revoked_at";

fn session_from(r: &Row) -> Result<SessionRow, StoreError> {
    Ok(SessionRow {
        id: r.text(0)?,
        role: r.text(1)?,
        subject: r.text(2)?,
        name: r.text(3)?,
        created_at: r.int(4)?,
        expires_at: r.int(5)?,
        revoked_at: r.opt_int(6)?,
    })
}

impl Store {
    pub async fn create_invite(&self, invite: &InviteRow) -> Result<(), StoreError> {
        self.engine
            .execute(
                "INSERT INTO invites (code_hash, role, subject, name, created_by, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                params![
                    &invite.code_hash,
                    &invite.role,
                    &invite.subject,
                    &invite.name,
                    &invite.created_by,
                    invite.created_at,
                    invite.expires_at,
                ],
            )
            .await
            .map_err(|e| conflict(e, "invite".into()))?;
        Ok(())
    }

    /// Spends the invite whose code hashes to `code_hash` and opens session `session_id` for
    /// its role and subject, lasting until `session_expires_at`. Either both happen or neither.
    pub async fn redeem_invite(
        &self,
        code_hash: &str,
        session_id: &str,
        now: Millis,
        session_expires_at: Millis,
    ) -> Result<Result<SessionRow, InviteRefusal>, StoreError> {
        let steps = vec![
            Step::new(
                "UPDATE invites SET used_at = $2, session_id = $3
                 WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2",
                params![code_hash, now, session_id],
            )
            .require(INVITE_SPENT),
            Step::new(
                format!(
                    "INSERT INTO sessions (id, role, subject, name, created_at, expires_at)
                     SELECT session_id, role, subject, name, CAST($2 AS BIGINT), CAST($3 AS BIGINT)
                     FROM invites WHERE code_hash = $1 AND session_id = CAST($4 AS TEXT)
                     RETURNING {SESSION_COLUMNS}"
                ),
                params![code_hash, now, session_expires_at, session_id],
            ),
        ];
        match self.engine.transaction(steps).await {
            Ok(out) => {
                let row = out
                    .get(1)
                    .and_then(|o| o.rows.first())
                    .ok_or_else(|| crate::corrupt("redeemed invite opened no session"))?;
                Ok(Ok(session_from(row)?))
            }
            Err(SqlError::Requirement(INVITE_SPENT)) => {
                let rows = self
                    .engine
                    .query(
                        "SELECT used_at, expires_at FROM invites WHERE code_hash = $1",
                        params![code_hash],
                    )
                    .await?;
                Ok(Err(match rows.first() {
                    None => InviteRefusal::Unknown,
                    Some(r) if r.opt_int(0)?.is_some() => InviteRefusal::Used,
                    Some(_) => InviteRefusal::Expired,
                }))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Opens a session directly (guest viewers, who have no invite).
    pub async fn create_session(&self, s: &SessionRow) -> Result<(), StoreError> {
        self.engine
            .execute(
                "INSERT INTO sessions (id, role, subject, name, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                params![
                    &s.id,
                    &s.role,
                    &s.subject,
                    &s.name,
                    s.created_at,
                    s.expires_at
                ],
            )
            .await
            .map_err(|e| conflict(e, format!("session {}", s.id)))?;
        Ok(())
    }

    pub async fn session(&self, id: &str) -> Result<Option<SessionRow>, StoreError> {
        let rows = self
            .engine
            .query(
                &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1"),
                params![id],
            )
            .await?;
        rows.first().map(session_from).transpose()
    }

    /// Revokes a session; revoking twice keeps the first instant. Returns whether it exists.
    pub async fn revoke_session(&self, id: &str, now: Millis) -> Result<bool, StoreError> {
        let n = self
            .engine
            .execute(
                "UPDATE sessions SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
                params![id, now],
            )
            .await?;
        Ok(n == 1)
    }
}
