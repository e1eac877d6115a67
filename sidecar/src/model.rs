//! Domain types and input validation shared by the HTTP API and the CLI.
//!
//! Requests arrive as the `*Request` types (deserialized from JSON or built
//! from CLI flags) and are validated into the plain types the store accepts,
//! so both front ends enforce exactly the same rules.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

pub type Metadata = Map<String, Value>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    /// Temporarily disabled; can be re-activated.
    Inactive,
    /// Permanently disabled.
    Revoked,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Inactive => "inactive",
            KeyStatus::Revoked => "revoked",
        }
    }
}

impl fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "active" => Ok(KeyStatus::Active),
            "inactive" => Ok(KeyStatus::Inactive),
            "revoked" => Ok(KeyStatus::Revoked),
            other => Err(format!("unknown key status {other:?}")),
        }
    }
}

/// A key as shown to operators: never the plaintext or its hash.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyRecord {
    pub id: String,
    pub key_prefix: String,
    pub name: Option<String>,
    pub team: Option<String>,
    pub user: Option<String>,
    pub models: Vec<String>,
    pub metadata: Metadata,
    pub status: KeyStatus,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The result of creating a key: the only time the plaintext is available.
#[derive(Debug, Serialize)]
pub struct CreatedKey {
    pub key: String,
    #[serde(flatten)]
    pub record: KeyRecord,
    /// The key named a team that did not exist, so it was created.
    #[serde(skip)]
    pub team_created: bool,
}

/// `{"keys":[...]}` as returned by key listings (API and `--json`).
#[derive(Debug, Serialize)]
pub struct KeyList<'a> {
    pub keys: &'a [KeyRecord],
}

/// Which keys a listing returns; every given field must match.
#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    pub team: Option<String>,
    pub status: Option<KeyStatus>,
    /// A substring of the id, prefix, name, team, user or metadata (ASCII
    /// letters in any case).
    pub search: Option<String>,
}

/// A user as the keys name them (there is no user table): their teams and
/// how many keys they hold, how many of them usable now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserSummary {
    pub user: String,
    pub teams: Vec<String>,
    pub keys: u64,
    pub active_keys: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Team {
    pub name: String,
    pub models: Vec<String>,
    pub metadata: Metadata,
    pub created_at: i64,
    pub updated_at: i64,
}

/// `{"teams":[...]}` as returned by team listings (API and `--json`).
#[derive(Debug, Serialize)]
pub struct TeamList<'a> {
    pub teams: &'a [Team],
}

/// Why `/v1/authorize` refused a key, and what the filter needs to enforce
/// a valid one: wire types, shared with the filter.
pub use tollgate_protocol::{DenyReason, Grant};

#[derive(Debug, Clone, PartialEq)]
pub enum Authorization {
    Granted(Grant),
    Denied(DenyReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    Revoke,
    Deactivate,
    Activate,
}

/// Validated input for `Store::create_key`.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    pub team: Option<String>,
    pub user: Option<String>,
    pub name: Option<String>,
    pub models: Vec<String>,
    pub expires_at: Option<i64>,
    pub metadata: Metadata,
}

/// Validated input for `Store::update_key`; `None` leaves a field unchanged and
/// `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default)]
pub struct KeyUpdate {
    pub team: Option<Option<String>>,
    pub user: Option<Option<String>>,
    pub name: Option<Option<String>>,
    pub models: Option<Vec<String>>,
    pub expires_at: Option<Option<i64>>,
    pub metadata: Option<Metadata>,
}

/// Validated input for `Store::create_team`.
#[derive(Debug, Clone, Default)]
pub struct NewTeam {
    pub name: String,
    pub models: Vec<String>,
    pub metadata: Metadata,
}

/// Validated input for `Store::update_team`.
#[derive(Debug, Clone, Default)]
pub struct TeamUpdate {
    pub models: Option<Vec<String>>,
    pub metadata: Option<Metadata>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    pub team: Option<String>,
    pub user: Option<String>,
    pub name: Option<String>,
    pub models: Option<Vec<String>>,
    pub expires_at: Option<i64>,
    pub expires_in: Option<String>,
    pub metadata: Option<Value>,
}

impl CreateKeyRequest {
    pub fn validate(self, now: i64) -> Result<NewKey> {
        if self.expires_at.is_some() && self.expires_in.is_some() {
            return Err(Error::invalid("give expires_at or expires_in, not both"));
        }
        let expires_at = match (self.expires_at, self.expires_in) {
            (Some(at), _) => Some(validate_expires_at(at)?),
            (None, Some(rel)) => Some(expires_from_now(&rel, now)?),
            (None, None) => None,
        };
        Ok(NewKey {
            team: self.team.map(validate_team_name).transpose()?,
            user: self.user.map(|u| validate_label("user", u)).transpose()?,
            name: self.name.map(|n| validate_label("name", n)).transpose()?,
            models: validate_models(self.models.unwrap_or_default())?,
            expires_at,
            metadata: validate_metadata(self.metadata)?,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateKeyRequest {
    #[serde(default, deserialize_with = "nullable")]
    pub team: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub user: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub name: Option<Option<String>>,
    pub models: Option<Vec<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub expires_at: Option<Option<i64>>,
    pub expires_in: Option<String>,
    pub metadata: Option<Value>,
}

impl UpdateKeyRequest {
    pub fn validate(self, now: i64) -> Result<KeyUpdate> {
        if self.expires_at.is_some() && self.expires_in.is_some() {
            return Err(Error::invalid("give expires_at or expires_in, not both"));
        }
        let expires_at = match (self.expires_at, self.expires_in) {
            (Some(at), _) => Some(at.map(validate_expires_at).transpose()?),
            (None, Some(rel)) => Some(Some(expires_from_now(&rel, now)?)),
            (None, None) => None,
        };
        let update = KeyUpdate {
            team: self
                .team
                .map(|t| t.map(validate_team_name).transpose())
                .transpose()?,
            user: self
                .user
                .map(|u| u.map(|u| validate_label("user", u)).transpose())
                .transpose()?,
            name: self
                .name
                .map(|n| n.map(|n| validate_label("name", n)).transpose())
                .transpose()?,
            models: self.models.map(validate_models).transpose()?,
            expires_at,
            metadata: self
                .metadata
                .map(|m| validate_metadata(Some(m)))
                .transpose()?,
        };
        let empty = update.team.is_none()
            && update.user.is_none()
            && update.name.is_none()
            && update.models.is_none()
            && update.expires_at.is_none()
            && update.metadata.is_none();
        if empty {
            return Err(Error::invalid(
                "nothing to update: give at least one of team, user, name, models, expires_at, expires_in, metadata",
            ));
        }
        Ok(update)
    }
}

/// How long an invite link can be used when the request does not say.
pub const DEFAULT_INVITE_TTL: &str = "7d";

/// `POST /admin/invites`: a one-time link that creates a key for `user` in `team`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateInviteRequest {
    pub team: String,
    pub user: String,
    pub models: Option<Vec<String>>,
    /// How long the link can be used (default 7d).
    pub expires_in: Option<String>,
    /// How long the key it creates lives, from redemption; absent: no expiry.
    pub key_expires_in: Option<String>,
}

/// Validated input for `Store::create_invite`.
#[derive(Debug, Clone)]
pub struct NewInvite {
    pub team: String,
    pub user: String,
    pub models: Vec<String>,
    pub expires_at: i64,
    pub key_ttl_s: Option<i64>,
}

impl CreateInviteRequest {
    pub fn validate(self, now: i64) -> Result<NewInvite> {
        let ttl = self.expires_in.as_deref().unwrap_or(DEFAULT_INVITE_TTL);
        Ok(NewInvite {
            team: validate_team_name(self.team)?,
            user: validate_label("user", self.user)?,
            models: validate_models(self.models.unwrap_or_default())?,
            expires_at: expires_from_now(ttl, now)?,
            key_ttl_s: self
                .key_expires_in
                .as_deref()
                .map(parse_duration)
                .transpose()?,
        })
    }
}

string_enum! {
    pub enum InviteStatus("invite status") {
        Pending = "pending",
        Redeemed = "redeemed",
        Expired = "expired",
    }
}

/// An invite as admins see it: never its token.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Invite {
    pub id: String,
    pub team: String,
    pub user: String,
    pub models: Vec<String>,
    /// Seconds the created key lives from redemption; null: no expiry.
    pub key_ttl_s: Option<i64>,
    pub expires_at: i64,
    pub created_at: i64,
    pub redeemed_at: Option<i64>,
    /// The key the invite created, once redeemed.
    pub key_id: Option<String>,
    pub status: InviteStatus,
}

/// The result of creating an invite: the only time its token is available.
#[derive(Debug, Serialize)]
pub struct CreatedInvite {
    pub token: String,
    #[serde(flatten)]
    pub invite: Invite,
}

/// `POST /console/invite/redeem`: the token from the link, and a name for the key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedeemInviteRequest {
    pub token: String,
    pub name: Option<String>,
}

impl RedeemInviteRequest {
    /// The token and the validated key name.
    pub fn validate(self) -> Result<(String, Option<String>)> {
        let name = self
            .name
            .filter(|n| !n.trim().is_empty())
            .map(|n| validate_label("name", n))
            .transpose()?;
        Ok((self.token, name))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTeamRequest {
    pub name: String,
    pub models: Option<Vec<String>>,
    pub metadata: Option<Value>,
}

impl CreateTeamRequest {
    pub fn validate(self) -> Result<NewTeam> {
        Ok(NewTeam {
            name: validate_team_name(self.name)?,
            models: validate_models(self.models.unwrap_or_default())?,
            metadata: validate_metadata(self.metadata)?,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateTeamRequest {
    pub models: Option<Vec<String>>,
    pub metadata: Option<Value>,
}

impl UpdateTeamRequest {
    pub fn validate(self) -> Result<TeamUpdate> {
        if self.models.is_none() && self.metadata.is_none() {
            return Err(Error::invalid(
                "nothing to update: give at least one of models, metadata",
            ));
        }
        Ok(TeamUpdate {
            models: self.models.map(validate_models).transpose()?,
            metadata: self
                .metadata
                .map(|m| validate_metadata(Some(m)))
                .transpose()?,
        })
    }
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Model patterns are globs matched by the filter; whitespace is never part of
/// a model name, so it almost always means a pasting mistake.
pub fn validate_models(models: Vec<String>) -> Result<Vec<String>> {
    for m in &models {
        if m.is_empty() {
            return Err(Error::invalid("model patterns must be non-empty strings"));
        }
        if m.chars().any(char::is_whitespace) {
            return Err(Error::invalid(format!(
                "model pattern {m:?} must not contain whitespace"
            )));
        }
    }
    Ok(models)
}

/// Team names appear in URL paths, so keep them to a URL-safe alphabet.
pub fn validate_team_name(name: String) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(name)
    } else {
        Err(Error::invalid(format!(
            "invalid team name {name:?}: use 1-64 characters from A-Z a-z 0-9 - _ ."
        )))
    }
}

fn validate_label(field: &str, value: String) -> Result<String> {
    if value.trim().is_empty() {
        return Err(Error::invalid(format!(
            "{field} must not be empty (omit it, or use null to clear it)"
        )));
    }
    Ok(value)
}

fn validate_metadata(metadata: Option<Value>) -> Result<Metadata> {
    match metadata {
        None | Some(Value::Null) => Ok(Metadata::new()),
        Some(Value::Object(map)) => Ok(map),
        Some(_) => Err(Error::invalid("metadata must be a JSON object")),
    }
}

fn validate_expires_at(at: i64) -> Result<i64> {
    if at < 0 {
        return Err(Error::invalid("expires_at must be unix seconds (>= 0)"));
    }
    Ok(at)
}

fn expires_from_now(rel: &str, now: i64) -> Result<i64> {
    let secs = parse_duration(rel)?;
    now.checked_add(secs)
        .ok_or_else(|| Error::invalid(format!("expires_in {rel:?} is too large")))
}

/// Parses `30d`, `12h`, `45m` or `3600s` into seconds.
pub fn parse_duration(s: &str) -> Result<i64> {
    let bad = || {
        Error::invalid(format!(
            "invalid duration {s:?}: use a positive whole number followed by d, h, m or s (e.g. 30d, 12h, 45m, 3600s)"
        ))
    };
    let unit_at = s.len().checked_sub(1).ok_or_else(bad)?;
    let (digits, unit) = s.split_at_checked(unit_at).ok_or_else(bad)?;
    let multiplier: i64 = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return Err(bad()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: i64 = digits.parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(bad());
    }
    n.checked_mul(multiplier).ok_or_else(bad)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d").unwrap(), 30 * 86_400);
        assert_eq!(parse_duration("12h").unwrap(), 12 * 3_600);
        assert_eq!(parse_duration("45m").unwrap(), 45 * 60);
        assert_eq!(parse_duration("3600s").unwrap(), 3_600);
        for bad in [
            "",
            "d",
            "0d",
            "-1d",
            "1w",
            "1.5h",
            "10",
            "h1",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn create_request_validation() {
        let ok: CreateKeyRequest = serde_json::from_value(json!({
            "team": "ml", "models": ["gpt-4o*"], "expires_in": "1h", "metadata": {"a": 1}
        }))
        .unwrap();
        let k = ok.validate(1_000).unwrap();
        assert_eq!(k.expires_at, Some(1_000 + 3_600));
        assert_eq!(k.team.as_deref(), Some("ml"));

        let cases = [
            json!({"models": ["gpt 4"]}),
            json!({"models": [""]}),
            json!({"expires_in": "soon"}),
            json!({"expires_in": "1h", "expires_at": 5}),
            json!({"metadata": [1, 2]}),
            json!({"team": "has space"}),
            json!({"user": ""}),
        ];
        for c in cases {
            let req: CreateKeyRequest = serde_json::from_value(c.clone()).unwrap();
            assert!(
                matches!(req.validate(0), Err(Error::Invalid(_))),
                "{c} should be invalid"
            );
        }
        assert!(serde_json::from_value::<CreateKeyRequest>(json!({"tema": "x"})).is_err());
    }

    #[test]
    fn update_request_distinguishes_null_from_absent() {
        let req: UpdateKeyRequest =
            serde_json::from_value(json!({"expires_at": null, "user": "bob"})).unwrap();
        let u = req.validate(0).unwrap();
        assert_eq!(u.expires_at, Some(None));
        assert_eq!(u.user, Some(Some("bob".to_owned())));
        assert_eq!(u.team, None);

        let empty: UpdateKeyRequest = serde_json::from_value(json!({})).unwrap();
        assert!(empty.validate(0).is_err());
    }
}
