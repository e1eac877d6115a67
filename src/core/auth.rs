//! Key checks: the sidecar's `/v1/authorize` answer, and a short per-VM cache
//! so a hot key does not cost a callout per request.

use super::error::GatewayError;
use super::glob;
use std::collections::HashMap;
use std::rc::Rc;
use tollgate_protocol::{AuthorizeAnswer, AuthorizeRequest, DenyReason, Grant};

/// What the gateway knows about a valid key (from the sidecar's `Grant`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub key_id: String,
    pub team: Option<String>,
    pub user: Option<String>,
    /// Model patterns the key may use; empty = any.
    pub models: Vec<String>,
    /// Model patterns the key's team may use; empty = any.
    pub team_models: Vec<String>,
    /// Unix seconds; expired from this second on.
    pub expires_at: Option<i64>,
}

impl KeyInfo {
    /// Both the key's and the team's lists must allow the client-facing name.
    pub fn allows(&self, model: &str) -> bool {
        glob::allowed_by(&self.models, model) && glob::allowed_by(&self.team_models, model)
    }
}

impl From<Grant> for KeyInfo {
    fn from(g: Grant) -> KeyInfo {
        KeyInfo {
            key_id: g.key_id,
            team: g.team,
            user: g.user,
            models: g.models,
            team_models: g.team_models,
            expires_at: g.expires_at,
        }
    }
}

/// The sidecar's verdict on a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCheck {
    Valid(KeyInfo),
    /// Why it was refused, phrased for "the key is {reason}".
    Invalid(&'static str),
}

impl KeyCheck {
    /// The verdict at `now_secs` (unix seconds): a cached valid answer
    /// still expires on time.
    pub fn verdict(&self, now_secs: u64) -> Result<&KeyInfo, GatewayError> {
        let now = i64::try_from(now_secs).unwrap_or(i64::MAX);
        match self {
            KeyCheck::Valid(info) if info.expires_at.is_some_and(|t| t <= now) => {
                Err(GatewayError::InvalidKey("expired"))
            }
            KeyCheck::Valid(info) => Ok(info),
            KeyCheck::Invalid(reason) => Err(GatewayError::InvalidKey(reason)),
        }
    }
}

/// Parses a 200 answer from `POST /v1/authorize`.
pub fn parse_authorize_response(body: &[u8]) -> Result<KeyCheck, String> {
    let r: AuthorizeAnswer =
        serde_json::from_slice(body).map_err(|e| format!("unreadable authorize answer: {e}"))?;
    if !r.valid {
        let reason = match r.reason {
            Some(DenyReason::Revoked) => "revoked",
            Some(DenyReason::Expired) => "expired",
            Some(DenyReason::Inactive) => "deactivated",
            Some(DenyReason::Unknown) | None => "not recognised",
        };
        return Ok(KeyCheck::Invalid(reason));
    }
    r.grant
        .map(|g| KeyCheck::Valid(g.into()))
        .ok_or_else(|| "valid key answer without key_id".to_string())
}

/// The body of `POST /v1/authorize`.
pub fn authorize_request(key_hash: &str) -> Vec<u8> {
    let request = AuthorizeRequest {
        key_hash: key_hash.into(),
    };
    // A struct of one string always encodes; an empty body would be refused (400).
    serde_json::to_vec(&request).unwrap_or_default()
}

/// Key-hash -> verdict, each entry living `ttl_ms`. Bounded: when full,
/// expired entries go first, then everything (a burst of distinct keys must
/// not grow the VM's memory).
pub struct AuthCache {
    ttl_ms: u64,
    capacity: usize,
    entries: HashMap<String, (u64, Rc<KeyCheck>)>,
}

impl AuthCache {
    pub fn new(ttl_ms: u64, capacity: usize) -> AuthCache {
        AuthCache {
            ttl_ms,
            capacity,
            entries: HashMap::new(),
        }
    }

    pub fn get(&self, key_hash: &str, now_ms: u64) -> Option<Rc<KeyCheck>> {
        match self.entries.get(key_hash) {
            Some((expires, check)) if *expires > now_ms => Some(Rc::clone(check)),
            _ => None,
        }
    }

    pub fn insert(&mut self, key_hash: String, check: Rc<KeyCheck>, now_ms: u64) {
        if self.ttl_ms == 0 {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key_hash) {
            self.entries.retain(|_, (expires, _)| *expires > now_ms);
            if self.entries.len() >= self.capacity {
                self.entries.clear();
            }
        }
        self.entries
            .insert(key_hash, (now_ms.saturating_add(self.ttl_ms), check));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_answers() {
        let ok = parse_authorize_response(
            br#"{"valid":true,"key_id":"key_1","team":"ml","user":null,"models":["gpt-*"],"team_models":[],"expires_at":null}"#,
        )
        .unwrap();
        let KeyCheck::Valid(info) = &ok else {
            panic!("{ok:?}")
        };
        assert!(info.allows("gpt-4o"));
        assert!(!info.allows("claude-3"));
        assert_eq!(
            parse_authorize_response(br#"{"valid":false,"reason":"revoked"}"#).unwrap(),
            KeyCheck::Invalid("revoked")
        );
        assert!(parse_authorize_response(br#"{"valid":true}"#).is_err());
        assert_eq!(
            parse_authorize_response(br#"{"valid":false,"reason":"suspended"}"#).unwrap(),
            KeyCheck::Invalid("not recognised")
        );
        assert_eq!(authorize_request("abc"), br#"{"key_hash":"abc"}"#.to_vec());
        assert!(parse_authorize_response(b"<html>").is_err());
    }

    #[test]
    fn team_list_also_restricts() {
        let info = KeyInfo {
            key_id: "k".into(),
            team: Some("t".into()),
            user: None,
            models: vec![],
            team_models: vec!["claude-*".into()],
            expires_at: Some(100),
        };
        assert!(info.allows("claude-x") && !info.allows("gpt-4o"));
        let check = KeyCheck::Valid(info);
        assert!(check.verdict(99).is_ok());
        assert_eq!(
            check.verdict(100).err(),
            Some(GatewayError::InvalidKey("expired"))
        );
        assert!(check.verdict(u64::MAX).is_err(), "far future: expired");
        let KeyCheck::Valid(mut info) = check else {
            unreachable!()
        };
        info.expires_at = Some(-1);
        assert!(
            KeyCheck::Valid(info).verdict(0).is_err(),
            "before 1970: expired"
        );
    }

    #[test]
    fn cache_expires_and_stays_bounded() {
        let mut cache = AuthCache::new(1000, 2);
        let v = Rc::new(KeyCheck::Invalid("revoked"));
        cache.insert("a".into(), Rc::clone(&v), 0);
        assert!(cache.get("a", 999).is_some());
        assert!(cache.get("a", 1000).is_none());
        cache.insert("b".into(), Rc::clone(&v), 900);
        cache.insert("c".into(), Rc::clone(&v), 1500);
        assert_eq!(cache.len(), 2, "expired `a` evicted first");
        cache.insert("d".into(), Rc::clone(&v), 1600);
        assert!(cache.len() <= 2);
        let mut off = AuthCache::new(0, 10);
        off.insert("a".into(), v, 0);
        assert!(off.is_empty());
    }
}
