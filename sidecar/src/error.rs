//! One error type shared by the store, the HTTP layer and the CLI, so that a
//! failure reads the same whichever front end hit it.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// The caller sent something we refuse (HTTP 400).
    #[error("{0}")]
    Invalid(String),
    /// A named key, team, budget or price does not exist (HTTP 404).
    #[error("{what} not found: {id}")]
    NotFound { what: &'static str, id: String },
    /// The request clashes with current state (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// The database was written by a newer build.
    #[error("{0}")]
    Schema(String),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database error: {0}")]
    Postgres(#[from] postgres::Error),
    /// A row did not have the shape a query expects (a bug or a foreign schema).
    #[error("database error: {0}")]
    Decode(String),
    /// The database cannot be reached or has no free connection (HTTP 503).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("JSON encoding error: {0}")]
    Json(#[from] serde_json::Error),
    #[error("OS random number generator failed: {0}")]
    Rng(getrandom::Error),
}

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    pub fn key_not_found(id: &str) -> Self {
        Error::NotFound {
            what: "key",
            id: id.to_owned(),
        }
    }

    pub fn team_not_found(name: &str) -> Self {
        Error::NotFound {
            what: "team",
            id: name.to_owned(),
        }
    }

    pub fn not_found(what: &'static str, id: &str) -> Self {
        Error::NotFound {
            what,
            id: id.to_owned(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
