//! Invite links: a one-time token (only its SHA-256 is stored) that creates
//! a key for a named user in a team when redeemed, once, before it expires.

use super::keys_teams::{created_key, insert_key};
use super::sql::{params, Row};
use super::Store;
use crate::error::{Error, Result};
use crate::keys;
use crate::model::{CreatedInvite, CreatedKey, Invite, InviteStatus, Metadata, NewInvite, NewKey};

/// Invite tokens start with this, so they are not mistaken for keys.
pub const INVITE_PREFIX: &str = "tgi-";

const INVITE_COLUMNS: &str = r#"id, team, "user", models, key_ttl_s, expires_at, created_at,
    redeemed_at, key_id"#;

impl Store {
    pub fn create_invite(&self, new: NewInvite) -> Result<CreatedInvite> {
        let token = keys::generate_secret(INVITE_PREFIX)?;
        let id = keys::new_id("inv_")?;
        let now = self.clock().now();
        let models = serde_json::to_string(&new.models)?;
        self.write(|tx| {
            // The team must exist: an invite names one the admin picked.
            if tx
                .query_opt("SELECT 1 FROM teams WHERE name = $1", &params![&new.team])?
                .is_none()
            {
                return Err(Error::team_not_found(&new.team));
            }
            tx.execute(
                r#"INSERT INTO invites (id, token_hash, team, "user", models, key_ttl_s, expires_at,
                                       created_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"#,
                &params![
                    &id,
                    &token.hash,
                    &new.team,
                    &new.user,
                    &models,
                    new.key_ttl_s,
                    new.expires_at,
                    now,
                ],
            )?;
            Ok(())
        })?;
        Ok(CreatedInvite {
            token: token.plaintext,
            invite: Invite {
                id,
                team: new.team,
                user: new.user,
                models: new.models,
                key_ttl_s: new.key_ttl_s,
                expires_at: new.expires_at,
                created_at: now,
                redeemed_at: None,
                key_id: None,
                status: InviteStatus::Pending,
            },
        })
    }

    /// Invites in creation order, optionally only those of one team.
    pub fn list_invites(&self, team: Option<&str>) -> Result<Vec<Invite>> {
        let now = self.clock().now();
        self.read(|c| {
            let sql = format!(
                "SELECT {INVITE_COLUMNS} FROM invites WHERE CAST($1 AS TEXT) IS NULL OR team = $1
                 ORDER BY created_at, {}",
                c.dialect().insertion_order()
            );
            c.query(&sql, &params![team])?
                .iter()
                .map(|r| invite_from_row(r, now))
                .collect()
        })
    }

    /// Withdraws an invite; a key it already created stays.
    pub fn delete_invite(&self, id: &str) -> Result<()> {
        let deleted =
            self.write(|tx| tx.execute("DELETE FROM invites WHERE id = $1", &params![id]))?;
        if deleted == 0 {
            return Err(Error::not_found("invite", id));
        }
        Ok(())
    }

    /// Creates the invite's key and marks it used, in one transaction: of
    /// two concurrent redemptions one gets the key, the other a conflict.
    pub fn redeem_invite(&self, token: &str, name: Option<String>) -> Result<CreatedKey> {
        let token_hash = keys::hash_key(token);
        let generated = keys::generate_key()?;
        let id = keys::new_key_id()?;
        let now = self.clock().now();
        let new = self.write(|tx| {
            let sql = format!(
                "SELECT {INVITE_COLUMNS} FROM invites WHERE token_hash = $1{}",
                tx.dialect().for_update()
            );
            let invite = match tx.query_opt(&sql, &params![&token_hash])? {
                Some(row) => invite_from_row(&row, now)?,
                // Never echo the token: it may be a live one mistyped.
                None => return Err(Error::not_found("invite", "unknown or withdrawn link")),
            };
            match invite.status {
                InviteStatus::Pending => {}
                InviteStatus::Redeemed => {
                    return Err(Error::Conflict(
                        "this invite link was already used; ask for a new one".into(),
                    ))
                }
                InviteStatus::Expired => {
                    return Err(Error::Conflict(
                        "this invite link has expired; ask for a new one".into(),
                    ))
                }
            }
            let mut metadata = Metadata::new();
            metadata.insert("invite".into(), invite.id.clone().into());
            let new = NewKey {
                team: Some(invite.team),
                user: Some(invite.user),
                name: name.clone(),
                models: invite.models,
                expires_at: invite.key_ttl_s.map(|ttl| now.saturating_add(ttl)),
                metadata,
            };
            self.check_key(tx, &id, &new.models, new.team.as_deref())?;
            insert_key(tx, &id, &generated, &new, now)?;
            tx.execute(
                "UPDATE invites SET redeemed_at = $2, key_id = $3 WHERE id = $1",
                &params![&invite.id, now, &id],
            )?;
            Ok(new)
        })?;
        Ok(created_key(id, generated, new, now, false))
    }
}

fn invite_from_row(r: &Row, now: i64) -> Result<Invite> {
    let expires_at = r.int(5)?;
    let redeemed_at = r.opt_int(7)?;
    let status = match redeemed_at {
        Some(_) => InviteStatus::Redeemed,
        None if expires_at <= now => InviteStatus::Expired,
        None => InviteStatus::Pending,
    };
    Ok(Invite {
        id: r.text(0)?,
        team: r.text(1)?,
        user: r.text(2)?,
        models: r.json(3)?,
        key_ttl_s: r.opt_int(4)?,
        expires_at,
        created_at: r.int(6)?,
        redeemed_at,
        key_id: r.opt_text(8)?,
        status,
    })
}
