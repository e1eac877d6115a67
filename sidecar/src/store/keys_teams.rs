//! Keys and teams: the authorize lookup and the admin operations.

use std::collections::BTreeMap;

use tracing::info;

use super::sql::{params, Row, Tx};
use super::Store;
use crate::error::{Error, Result};
use crate::keys::{self, GeneratedKey};
use crate::model::{
    Authorization, CreatedKey, DenyReason, Grant, KeyFilter, KeyRecord, KeyStatus, KeyUpdate,
    NewKey, NewTeam, StatusChange, Team, TeamUpdate, UserSummary,
};
use crate::residency::Pins;

const KEY_COLUMNS: &str = r#"id, key_prefix, name, team, "user", models, metadata, status,
    expires_at, created_at, updated_at"#;
const TEAM_COLUMNS: &str = "name, models, metadata, created_at, updated_at";

impl Store {
    /// Looks up a key by hash and decides whether it may be used now.
    pub fn authorize(&self, key_hash: &str) -> Result<Authorization> {
        let now = self.clock().now();
        let row = self.read(|c| {
            c.query_opt(
                r#"SELECT k.id, k.team, k."user", k.models, k.status, k.expires_at, t.models
                   FROM keys k LEFT JOIN teams t ON t.name = k.team
                   WHERE k.key_hash = $1"#,
                &params![key_hash],
            )
        })?;
        let Some(row) = row else {
            return Ok(Authorization::Denied(DenyReason::Unknown));
        };
        // Decide on status and expiry before decoding anything else.
        match status(&row, 4)? {
            KeyStatus::Revoked => return Ok(Authorization::Denied(DenyReason::Revoked)),
            KeyStatus::Inactive => return Ok(Authorization::Denied(DenyReason::Inactive)),
            KeyStatus::Active => {}
        }
        let expires_at = row.opt_int(5)?;
        if expires_at.is_some_and(|at| at <= now) {
            return Ok(Authorization::Denied(DenyReason::Expired));
        }
        let team_models = match row.opt_text(6)? {
            Some(json) => serde_json::from_str(&json)?,
            None => Vec::new(),
        };
        Ok(Authorization::Granted(Grant {
            key_id: row.text(0)?,
            team: row.opt_text(1)?,
            user: row.opt_text(2)?,
            models: row.json(3)?,
            team_models,
            expires_at,
        }))
    }

    pub fn create_key(&self, new: NewKey) -> Result<CreatedKey> {
        let generated = keys::generate_key()?;
        let id = keys::new_key_id()?;
        let now = self.clock().now();
        let team_created = self.write(|tx| {
            self.check_key(tx, &id, &new.models, new.team.as_deref())?;
            insert_key(tx, &id, &generated, &new, now)
        })?;
        if let (true, Some(team)) = (team_created, &new.team) {
            info!(team = %team, "team auto-created for key (no model restriction)");
        }
        Ok(created_key(id, generated, new, now, team_created))
    }

    pub fn get_key(&self, id: &str) -> Result<KeyRecord> {
        self.read(|c| load_key(c, id, false))
    }

    /// All keys in creation order, optionally only those of one team.
    pub fn list_keys(&self, team: Option<&str>) -> Result<Vec<KeyRecord>> {
        self.find_keys(&KeyFilter {
            team: team.map(str::to_owned),
            ..KeyFilter::default()
        })
    }

    /// The keys `filter` matches, in creation order.
    pub fn find_keys(&self, filter: &KeyFilter) -> Result<Vec<KeyRecord>> {
        // LOWER on both sides: PostgreSQL's LIKE is case-sensitive, SQLite's is not
        // (for ASCII letters, the only ones SQLite's LOWER folds).
        let pattern = filter.search.as_deref().map(|s| {
            let escaped = s
                .to_ascii_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        });
        self.read(|c| {
            // The CASTs tell PostgreSQL the type of parameters that may be NULL.
            let sql = format!(
                r#"SELECT {KEY_COLUMNS} FROM keys
                   WHERE (CAST($1 AS TEXT) IS NULL OR team = $1)
                     AND (CAST($2 AS TEXT) IS NULL OR status = $2)
                     AND (CAST($3 AS TEXT) IS NULL
                          OR LOWER(id) LIKE $3 ESCAPE '\' OR LOWER(key_prefix) LIKE $3 ESCAPE '\'
                          OR LOWER(COALESCE(name, '')) LIKE $3 ESCAPE '\'
                          OR LOWER(COALESCE(team, '')) LIKE $3 ESCAPE '\'
                          OR LOWER(COALESCE("user", '')) LIKE $3 ESCAPE '\'
                          OR LOWER(metadata) LIKE $3 ESCAPE '\')
                   ORDER BY created_at, {}"#,
                c.dialect().insertion_order()
            );
            let status = filter.status.map(KeyStatus::as_str);
            c.query(
                &sql,
                &params![filter.team.as_deref(), status, pattern.as_deref()],
            )?
            .iter()
            .map(key_from_row)
            .collect()
        })
    }

    /// Everyone the keys name as their user, by name.
    pub fn list_users(&self) -> Result<Vec<UserSummary>> {
        let now = self.clock().now();
        let rows = self.read(|c| {
            c.query(
                r#"SELECT "user", team, COUNT(*),
                          SUM(CASE WHEN status = 'active' AND (expires_at IS NULL OR expires_at > $1)
                                   THEN 1 ELSE 0 END)
                   FROM keys WHERE "user" IS NOT NULL GROUP BY "user", team"#,
                &params![now],
            )
        })?;
        let mut users: BTreeMap<String, UserSummary> = BTreeMap::new();
        for row in rows {
            let name = row.text(0)?;
            let entry = users.entry(name.clone()).or_insert_with(|| UserSummary {
                user: name,
                teams: Vec::new(),
                keys: 0,
                active_keys: 0,
            });
            entry.teams.extend(row.opt_text(1)?);
            entry.keys += row.count(2)?;
            entry.active_keys += row.count(3)?;
        }
        Ok(users
            .into_values()
            .map(|mut u| {
                u.teams.sort();
                u
            })
            .collect())
    }

    /// Applies a partial update; naming a team that does not exist creates it.
    pub fn update_key(&self, id: &str, update: KeyUpdate) -> Result<KeyRecord> {
        let now = self.clock().now();
        self.write(|tx| {
            let mut key = load_key(tx, id, true)?;
            if let Some(team) = &update.team {
                if let Some(name) = team {
                    ensure_team(tx, name, now)?;
                }
                key.team.clone_from(team);
            }
            if let Some(user) = &update.user {
                key.user.clone_from(user);
            }
            if let Some(name) = &update.name {
                key.name.clone_from(name);
            }
            if let Some(models) = &update.models {
                key.models.clone_from(models);
            }
            if let Some(expires_at) = update.expires_at {
                key.expires_at = expires_at;
            }
            if let Some(metadata) = &update.metadata {
                key.metadata.clone_from(metadata);
            }
            if update.team.is_some() || update.models.is_some() {
                self.check_key(tx, &key.id, &key.models, key.team.as_deref())?;
            }
            key.updated_at = now;
            tx.execute(
                r#"UPDATE keys SET team = $2, "user" = $3, name = $4, models = $5, expires_at = $6,
                                  metadata = $7, updated_at = $8
                   WHERE id = $1"#,
                &params![
                    &key.id,
                    key.team.as_deref(),
                    key.user.as_deref(),
                    key.name.as_deref(),
                    &serde_json::to_string(&key.models)?,
                    key.expires_at,
                    &serde_json::to_string(&key.metadata)?,
                    key.updated_at,
                ],
            )?;
            Ok(key)
        })
    }

    /// Revoke (permanent), deactivate (temporary) or re-activate a key.
    /// Repeating a change is a no-op; leaving `revoked` is a conflict.
    pub fn set_key_status(&self, id: &str, change: StatusChange) -> Result<KeyRecord> {
        let now = self.clock().now();
        self.write(|tx| {
            let mut key = load_key(tx, id, true)?;
            let target = match (change, key.status) {
                (StatusChange::Revoke, _) => KeyStatus::Revoked,
                (StatusChange::Activate, KeyStatus::Revoked) => {
                    return Err(Error::Conflict(format!(
                        "key {id} is revoked and cannot be activated again; revocation is permanent, create a new key instead"
                    )))
                }
                (StatusChange::Deactivate, KeyStatus::Revoked) => {
                    return Err(Error::Conflict(format!(
                        "key {id} is revoked; revocation is permanent, so it cannot be deactivated"
                    )))
                }
                (StatusChange::Activate, _) => KeyStatus::Active,
                (StatusChange::Deactivate, _) => KeyStatus::Inactive,
            };
            if target != key.status {
                key.status = target;
                key.updated_at = now;
                tx.execute(
                    "UPDATE keys SET status = $2, updated_at = $3 WHERE id = $1",
                    &params![&key.id, key.status.as_str(), key.updated_at],
                )?;
            }
            Ok(key)
        })
    }

    pub fn create_team(&self, new: NewTeam) -> Result<Team> {
        let now = self.clock().now();
        let models = serde_json::to_string(&new.models)?;
        let metadata = serde_json::to_string(&new.metadata)?;
        let inserted = self.write(|tx| {
            self.check_team(tx, &new.name, &new.models)?;
            tx.execute(
                "INSERT INTO teams (name, models, metadata, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $4) ON CONFLICT (name) DO NOTHING",
                &params![&new.name, &models, &metadata, now],
            )
        })?;
        if inserted == 0 {
            return Err(Error::Conflict(format!("team {} already exists", new.name)));
        }
        Ok(Team {
            name: new.name,
            models: new.models,
            metadata: new.metadata,
            created_at: now,
            updated_at: now,
        })
    }

    pub fn get_team(&self, name: &str) -> Result<Team> {
        self.read(|c| load_team(c, name, false))
    }

    pub fn list_teams(&self) -> Result<Vec<Team>> {
        self.read(|c| {
            c.query(
                &format!("SELECT {TEAM_COLUMNS} FROM teams ORDER BY name"),
                &[],
            )?
            .iter()
            .map(team_from_row)
            .collect()
        })
    }

    pub fn update_team(&self, name: &str, update: TeamUpdate) -> Result<Team> {
        let now = self.clock().now();
        self.write(|tx| {
            let mut team = load_team(tx, name, true)?;
            if let Some(models) = &update.models {
                team.models.clone_from(models);
                self.check_team(tx, &team.name, &team.models)?;
            }
            if let Some(metadata) = &update.metadata {
                team.metadata.clone_from(metadata);
            }
            team.updated_at = now;
            tx.execute(
                "UPDATE teams SET models = $2, metadata = $3, updated_at = $4 WHERE name = $1",
                &params![
                    &team.name,
                    &serde_json::to_string(&team.models)?,
                    &serde_json::to_string(&team.metadata)?,
                    team.updated_at,
                ],
            )?;
            Ok(team)
        })
    }
}

impl Store {
    /// Refuses `models` for key `id` in `team` when the gateway's pins
    /// would then refuse every request of it.
    pub(super) fn check_key(
        &self,
        tx: &mut dyn Tx,
        id: &str,
        models: &[String],
        team: Option<&str>,
    ) -> Result<()> {
        match &self.pins {
            Some(pins) => refuse(key_problem(pins, tx, id, models, team)?),
            None => Ok(()),
        }
    }

    /// Refuses `models` for team `name` when the pins would then refuse
    /// every request of the team, or of one of its keys.
    fn check_team(&self, tx: &mut dyn Tx, name: &str, models: &[String]) -> Result<()> {
        match &self.pins {
            Some(pins) => refuse(team_problems(pins, tx, name, models)?.into_iter().next()),
            None => Ok(()),
        }
    }

    /// What the gateway's pins say about the teams and keys in the
    /// database: every pinned team (and each of its keys) and pinned key
    /// whose models leave it nothing in its regions. Empty without pins.
    pub fn residency_problems(&self) -> Result<Vec<String>> {
        let Some(pins) = &self.pins else {
            return Ok(Vec::new());
        };
        let (teams, keys) = pins.pinned();
        self.read(|c| {
            let mut out = Vec::new();
            for &team in &teams {
                let models = team_models(c, team)?;
                out.extend(team_problems(pins, c, team, &models)?);
            }
            for &id in &keys {
                let Some(row) = c.query_opt(
                    "SELECT models, team FROM keys WHERE id = $1 AND status <> 'revoked'",
                    &params![id],
                )?
                else {
                    continue;
                };
                let (models, team): (Vec<String>, _) = (row.json(0)?, row.opt_text(1)?);
                out.extend(key_problem(pins, c, id, &models, team.as_deref())?);
            }
            out.sort();
            out.dedup();
            Ok(out)
        })
    }
}

fn refuse(problem: Option<String>) -> Result<()> {
    match problem {
        Some(problem) => Err(Error::invalid(problem)),
        None => Ok(()),
    }
}

/// What the pins say about key `id` having `models` in `team` (whose
/// models are read in `c`).
fn key_problem(
    pins: &Pins,
    c: &mut dyn Tx,
    id: &str,
    models: &[String],
    team: Option<&str>,
) -> Result<Option<String>> {
    let team_models = match team {
        Some(name) => team_models(c, name)?,
        None => Vec::new(),
    };
    Ok(pins.key_problem(id, models, team.map(|t| (t, team_models.as_slice()))))
}

/// What the pins say about team `name` having `models`: about the team,
/// then about each of its keys.
fn team_problems(
    pins: &Pins,
    c: &mut dyn Tx,
    name: &str,
    models: &[String],
) -> Result<Vec<String>> {
    let mut out: Vec<String> = pins.team_problem(name, models).into_iter().collect();
    for (id, key_models) in team_keys(c, name)? {
        out.extend(pins.key_problem(&id, &key_models, Some((name, models))));
    }
    Ok(out)
}

/// A team's models; a team not created yet allows every model (as the
/// one a key's creation makes).
fn team_models(c: &mut dyn Tx, name: &str) -> Result<Vec<String>> {
    match load_team(c, name, false) {
        Ok(team) => Ok(team.models),
        Err(Error::NotFound { .. }) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The ids and models of a team's keys that are not revoked.
fn team_keys(c: &mut dyn Tx, team: &str) -> Result<Vec<(String, Vec<String>)>> {
    c.query(
        "SELECT id, models FROM keys WHERE team = $1 AND status <> 'revoked'",
        &params![team],
    )?
    .iter()
    .map(|row| Ok((row.text(0)?, row.json(1)?)))
    .collect()
}

/// Inserts a new key (creating its team if needed); true if the team was created.
pub(super) fn insert_key(
    tx: &mut dyn Tx,
    id: &str,
    generated: &GeneratedKey,
    new: &NewKey,
    now: i64,
) -> Result<bool> {
    let team_created = match &new.team {
        Some(team) => ensure_team(tx, team, now)?,
        None => false,
    };
    tx.execute(
        r#"INSERT INTO keys (id, key_hash, key_prefix, name, team, "user", models, metadata,
                            status, expires_at, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)"#,
        &params![
            id,
            &generated.hash,
            &generated.prefix,
            new.name.as_deref(),
            new.team.as_deref(),
            new.user.as_deref(),
            &serde_json::to_string(&new.models)?,
            &serde_json::to_string(&new.metadata)?,
            KeyStatus::Active.as_str(),
            new.expires_at,
            now,
        ],
    )?;
    Ok(team_created)
}

/// What `insert_key` wrote, with the plaintext the caller hands out once.
pub(super) fn created_key(
    id: String,
    generated: GeneratedKey,
    new: NewKey,
    now: i64,
    team_created: bool,
) -> CreatedKey {
    CreatedKey {
        key: generated.plaintext,
        record: KeyRecord {
            id,
            key_prefix: generated.prefix,
            name: new.name,
            team: new.team,
            user: new.user,
            models: new.models,
            metadata: new.metadata,
            status: KeyStatus::Active,
            expires_at: new.expires_at,
            created_at: now,
            updated_at: now,
        },
        team_created,
    }
}

/// Creates `name` with no model restriction unless it exists; true if created.
fn ensure_team(tx: &mut dyn Tx, name: &str, now: i64) -> Result<bool> {
    let created = tx.execute(
        "INSERT INTO teams (name, models, metadata, created_at, updated_at)
         VALUES ($1, '[]', '{}', $2, $2) ON CONFLICT (name) DO NOTHING",
        &params![name, now],
    )?;
    Ok(created == 1)
}

/// `lock`: the caller is about to update the row (read-modify-write).
fn load_key(c: &mut dyn Tx, id: &str, lock: bool) -> Result<KeyRecord> {
    let lock = if lock { c.dialect().for_update() } else { "" };
    let sql = format!("SELECT {KEY_COLUMNS} FROM keys WHERE id = $1{lock}");
    match c.query_opt(&sql, &params![id])? {
        Some(row) => key_from_row(&row),
        None => Err(Error::key_not_found(id)),
    }
}

fn load_team(c: &mut dyn Tx, name: &str, lock: bool) -> Result<Team> {
    let lock = if lock { c.dialect().for_update() } else { "" };
    let sql = format!("SELECT {TEAM_COLUMNS} FROM teams WHERE name = $1{lock}");
    match c.query_opt(&sql, &params![name])? {
        Some(row) => team_from_row(&row),
        None => Err(Error::team_not_found(name)),
    }
}

fn status(row: &Row, i: usize) -> Result<KeyStatus> {
    row.text(i)?.parse().map_err(Error::Decode)
}

fn key_from_row(row: &Row) -> Result<KeyRecord> {
    Ok(KeyRecord {
        id: row.text(0)?,
        key_prefix: row.text(1)?,
        name: row.opt_text(2)?,
        team: row.opt_text(3)?,
        user: row.opt_text(4)?,
        models: row.json(5)?,
        metadata: row.json(6)?,
        status: status(row, 7)?,
        expires_at: row.opt_int(8)?,
        created_at: row.int(9)?,
        updated_at: row.int(10)?,
    })
}

fn team_from_row(row: &Row) -> Result<Team> {
    Ok(Team {
        name: row.text(0)?,
        models: row.json(1)?,
        metadata: row.json(2)?,
        created_at: row.int(3)?,
        updated_at: row.int(4)?,
    })
}
