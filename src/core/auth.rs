//! Key checks: the sidecar's `/v1/authorize` answer, a short per-VM cache
//! so a hot key does not cost a callout per request, and the verdict as
//! Envoy's shared data keeps it for every worker (`filter::key_cache`).

use super::error::GatewayError;
use super::glob;
use std::collections::HashMap;
use std::sync::Arc;
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
    /// The key the sidecar accepted, expired since or not: who sent the
    /// request, for the record.
    pub fn info(&self) -> Option<&KeyInfo> {
        match self {
            KeyCheck::Valid(info) => Some(info),
            KeyCheck::Invalid(_) => None,
        }
    }

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

/// Key-hash -> verdict, each entry living `ttl_ms` from when the sidecar
/// gave it (a verdict read from shared data keeps its age, so a revocation
/// bites within `ttl_ms` whichever worker asked). Bounded: when full,
/// expired entries go first, then everything (a burst of distinct keys must
/// not grow the VM's memory).
pub struct AuthCache {
    ttl_ms: u64,
    capacity: usize,
    entries: HashMap<String, Entry>,
}

struct Entry {
    fetched_ms: u64,
    check: Arc<KeyCheck>,
    /// A refresh ahead of expiry was tried for it (once per entry).
    refresh_tried: bool,
}

impl AuthCache {
    pub fn new(ttl_ms: u64, capacity: usize) -> AuthCache {
        AuthCache {
            ttl_ms,
            capacity,
            entries: HashMap::new(),
        }
    }

    fn expires(&self, entry: &Entry) -> u64 {
        entry.fetched_ms.saturating_add(self.ttl_ms)
    }

    /// A verdict given less than `ttl_ms` ago (and not "in the future": a
    /// clock stepped back must not stretch it).
    pub fn get(&self, key_hash: &str, now_ms: u64) -> Option<Arc<KeyCheck>> {
        match self.entries.get(key_hash) {
            Some(e) if e.fetched_ms <= now_ms && now_ms < self.expires(e) => {
                Some(Arc::clone(&e.check))
            }
            _ => None,
        }
    }

    /// Caches a verdict the sidecar gave at `fetched_ms`.
    pub fn insert(&mut self, key_hash: String, check: Arc<KeyCheck>, fetched_ms: u64) {
        if self.ttl_ms == 0 {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key_hash) {
            let ttl = self.ttl_ms;
            self.entries
                .retain(|_, e| e.fetched_ms.saturating_add(ttl) > fetched_ms);
            if self.entries.len() >= self.capacity {
                self.entries.clear();
            }
        }
        let entry = Entry {
            fetched_ms,
            check,
            refresh_tried: false,
        };
        self.entries.insert(key_hash, entry);
    }

    /// When a cached verdict is in the last quarter of its life, the first
    /// time it is asked: its `fetched_ms`, for a refresh ahead of expiry.
    pub fn refresh_due(&mut self, key_hash: &str, now_ms: u64) -> Option<u64> {
        let due_after = self.ttl_ms - self.ttl_ms / 4;
        let e = self.entries.get_mut(key_hash)?;
        if e.refresh_tried || now_ms < e.fetched_ms.saturating_add(due_after) {
            return None;
        }
        e.refresh_tried = true;
        Some(e.fetched_ms)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Largest sidecar answer kept in shared data (a key with a long model list
/// is only cached per worker).
pub const MAX_SHARED_ANSWER: usize = 16 * 1024;

/// A key verdict in Envoy's shared data: the sidecar's answer as it came
/// (each worker parses it with `parse_authorize_response`), when it came,
/// and since when a worker is refreshing it (0: nobody).
///
/// ```text
/// VERSION:u8 fetched_ms:u64 refreshing_since_ms:u64 answer (the rest)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedVerdict {
    pub fetched_ms: u64,
    pub refreshing_since_ms: u64,
    pub answer: Vec<u8>,
}

const SHARED_VERDICT_VERSION: u8 = 1;

impl SharedVerdict {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(17 + self.answer.len());
        out.push(SHARED_VERDICT_VERSION);
        out.extend_from_slice(&self.fetched_ms.to_le_bytes());
        out.extend_from_slice(&self.refreshing_since_ms.to_le_bytes());
        out.extend_from_slice(&self.answer);
        out
    }

    /// The verdict `encode` wrote; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<SharedVerdict> {
        let (&version, rest) = bytes.split_first()?;
        let (fetched, rest) = rest.split_at_checked(8)?;
        let (refreshing, answer) = rest.split_at_checked(8)?;
        (version == SHARED_VERDICT_VERSION && answer.len() <= MAX_SHARED_ANSWER).then(|| {
            SharedVerdict {
                fetched_ms: u64::from_le_bytes(fetched.try_into().unwrap_or_default()),
                refreshing_since_ms: u64::from_le_bytes(refreshing.try_into().unwrap_or_default()),
                answer: answer.to_vec(),
            }
        })
    }

    /// The key's verdict; `None` when the stored answer does not parse.
    pub fn check(&self) -> Option<KeyCheck> {
        parse_authorize_response(&self.answer).ok()
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
    fn cached_verdicts_age_from_when_the_sidecar_gave_them() {
        let mut cache = AuthCache::new(1000, 10);
        let v = Arc::new(KeyCheck::Invalid("revoked"));
        // Read from shared data at 900, given by the sidecar at 500.
        cache.insert("a".into(), Arc::clone(&v), 500);
        assert!(cache.get("a", 1499).is_some());
        assert!(cache.get("a", 1500).is_none());
        assert!(cache.get("a", 499).is_none(), "the clock stepped back");
        // Refresh ahead: due from 3/4 of its life, once.
        assert_eq!(cache.refresh_due("a", 1249), None);
        assert_eq!(cache.refresh_due("a", 1250), Some(500));
        assert_eq!(cache.refresh_due("a", 1300), None);
        assert_eq!(cache.refresh_due("b", 1300), None);
        cache.insert("a".into(), v, 1400);
        assert_eq!(cache.refresh_due("a", 2150), Some(1400));
    }

    #[test]
    fn shared_verdicts_round_trip_and_reject_garbage() {
        let v = SharedVerdict {
            fetched_ms: 1_700_000_000_123,
            refreshing_since_ms: 0,
            answer: br#"{"valid":true,"key_id":"k"}"#.to_vec(),
        };
        let bytes = v.encode();
        assert_eq!(SharedVerdict::decode(&bytes), Some(v.clone()));
        let KeyCheck::Valid(info) = v.check().unwrap() else {
            panic!()
        };
        assert_eq!(info.key_id, "k");
        for n in 0..17 {
            assert_eq!(SharedVerdict::decode(&bytes[..n]), None);
        }
        let mut other = bytes.clone();
        other[0] = 9;
        assert_eq!(SharedVerdict::decode(&other), None);
        let huge = SharedVerdict {
            answer: vec![b' '; MAX_SHARED_ANSWER + 1],
            ..v.clone()
        };
        assert_eq!(SharedVerdict::decode(&huge.encode()), None);
        let garbage = SharedVerdict {
            answer: b"<html>".to_vec(),
            ..v
        };
        assert_eq!(garbage.check(), None);
    }

    #[test]
    fn cache_expires_and_stays_bounded() {
        let mut cache = AuthCache::new(1000, 2);
        let v = Arc::new(KeyCheck::Invalid("revoked"));
        cache.insert("a".into(), Arc::clone(&v), 0);
        assert!(cache.get("a", 999).is_some());
        assert!(cache.get("a", 1000).is_none());
        cache.insert("b".into(), Arc::clone(&v), 900);
        cache.insert("c".into(), Arc::clone(&v), 1500);
        assert_eq!(cache.len(), 2, "expired `a` evicted first");
        cache.insert("d".into(), Arc::clone(&v), 1600);
        assert!(cache.len() <= 2);
        let mut off = AuthCache::new(0, 10);
        off.insert("a".into(), v, 0);
        assert!(off.is_empty());
    }
}
