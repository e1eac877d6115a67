//! One error type shared by the store, the HTTP layer and the CLI, so that a
//! failure reads the same whichever front end hit it.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// The caller sent something we refuse (HTTP 400).
    #[error("{0}")]
    Invalid(String),
    /// A named key or team does not exist (HTTP 404).
    #[error("{what} not found: {id}")]
    NotFound { what: &'static str, id: String },
    /// The request clashes with current state (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// The database file was written by a newer build.
    #[error("{0}")]
    Schema(String),
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
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
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
