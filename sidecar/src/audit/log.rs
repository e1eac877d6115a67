//! The log's tables: `audit_entries` (one row per leaf: its index `seq`,
//! kind, request id, canonical bytes and leaf hash), `audit_checkpoints`
//! (signed tree heads, with the frontier that lets the next one start
//! where this one ended), `audit_pending` (entries queued for the next
//! append) and `audit_secrets` (`secrets.rs`).
//!
//! Entries and checkpoints are only ever inserted: no statement in the
//! sidecar updates or deletes them. Appends run at the end of the write
//! transaction that settles reports (already off the filter's request
//! path) or signs a checkpoint, under a lock that serializes appenders
//! (SQLite's write lock; on PostgreSQL an exclusive table lock, taken last
//! so it never waits inside a cycle), so leaf indexes are dense and commit
//! in order. A lease call, which a request may wait on, only queues its
//! entries in its own transaction, with no lock; the next append takes
//! them first.

use tracing::warn;

use super::checkpoint::{Checkpoint, Signer};
use serde_json::Value;

use super::entry::{encode, Entry};
use super::merkle::{leaf_hash, Frontier, Hash};
use super::{from_hex, secrets};
use crate::error::{Error, Result};
use crate::keys::hex_lower;
use crate::store::sql::{params, Dialect, Row, Tx};
use crate::store::Store;
use tollgate_protocol::UsageReport;

/// Rows read per query when scanning the whole log.
const SCAN_CHUNK: i64 = 5000;

/// One stored row of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub seq: u64,
    pub body: String,
    /// As stored; `None` where a copy carries none (an export).
    pub leaf_hash: Option<String>,
}

/// Appends entries in the caller's write transaction.
pub(crate) struct Appender<'t> {
    tx: &'t mut dyn Tx,
    next: u64,
    now: i64,
}

impl<'t> Appender<'t> {
    /// Takes the append lock, finds the next leaf index and appends the
    /// queued entries.
    pub fn begin(tx: &'t mut dyn Tx, now: i64) -> Result<Appender<'t>> {
        if tx.dialect() == Dialect::Postgres {
            tx.execute("LOCK TABLE audit_entries IN EXCLUSIVE MODE", &[])?;
        }
        let next = tx
            .query_one("SELECT COALESCE(MAX(seq) + 1, 0) FROM audit_entries", &[])?
            .count(0)?;
        let queued = tx.query(
            "SELECT id, kind, request_id, ts, fields FROM audit_pending ORDER BY id",
            &[],
        )?;
        let mut log = Appender { tx, next, now };
        for row in &queued {
            let fields = serde_json::from_str(&row.text(4)?)?;
            log.insert(
                &row.text(1)?,
                row.opt_text(2)?.as_deref(),
                fields,
                row.int(3)?,
            )?;
            log.tx.execute(
                "DELETE FROM audit_pending WHERE id = $1",
                &params![row.int(0)?],
            )?;
        }
        Ok(log)
    }

    fn insert(
        &mut self,
        kind: &str,
        request_id: Option<&str>,
        fields: Value,
        ts: i64,
    ) -> Result<()> {
        let body = encode(fields, self.next, ts);
        let leaf = hex_lower(&leaf_hash(body.as_bytes()));
        self.tx.execute(
            "INSERT INTO audit_entries (seq, kind, request_id, ts, body, leaf_hash)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &params![self.next, kind, request_id, ts, &body, &leaf],
        )?;
        self.next += 1;
        Ok(())
    }

    /// A settled report's entry, with the HMACs of its digests under its
    /// team's (or key's) secret.
    pub fn push_request(
        &mut self,
        r: &UsageReport,
        digests: [Option<&str>; 2],
        ts: i64,
        cost_usd: f64,
        priced: bool,
    ) -> Result<()> {
        let [request, response] = digests.map(|d| d.and_then(|d| self.digest(r, d)));
        let hmacs = match (request, response) {
            (None, None) => (None, None),
            (request, response) => {
                let scope = secrets::scope(r.team.as_deref(), r.key_id.as_deref());
                let secret = secrets::secret(self.tx, &scope, self.now)?;
                let mac = |d: Option<[u8; 32]>| d.map(|d| secrets::hmac(&secret, &d)).transpose();
                (mac(request)?, mac(response)?)
            }
        };
        let entry = Entry::request(r, cost_usd, priced, hmacs);
        self.insert(entry.kind(), entry.request_id(), entry.fields()?, ts)
    }

    /// A refusal's entry, unless the log has this request already (a batch
    /// sent again); checked under the append lock, so it is never twice.
    pub fn push_refusal(&mut self, r: &UsageReport, ts: i64) -> Result<bool> {
        let logged = self.tx.query(
            "SELECT seq FROM audit_entries WHERE request_id = $1 LIMIT 1",
            &params![&r.request_id],
        )?;
        if !logged.is_empty() {
            return Ok(false);
        }
        let digests = [r.request_digest.as_deref(), r.response_digest.as_deref()];
        self.push_request(r, digests, ts, 0.0, true)?;
        Ok(true)
    }

    /// A digest the filter sent, if it is one: a malformed one is left
    /// out (and logged) rather than failing the settle, which bills.
    fn digest(&self, r: &UsageReport, hex: &str) -> Option<[u8; 32]> {
        let digest = secrets::parse_digest(hex);
        if digest.is_none() {
            warn!(request = %r.request_id, "body digest is not 64 hex characters; no HMAC logged");
        }
        digest
    }
}

/// Queues `entry`, written at `ts`, for the next append, in the caller's
/// transaction and without the append lock.
pub(crate) fn queue(tx: &mut dyn Tx, entry: &Entry, ts: i64) -> Result<()> {
    tx.execute(
        "INSERT INTO audit_pending (kind, request_id, ts, fields) VALUES ($1, $2, $3, $4)",
        &params![
            entry.kind(),
            entry.request_id(),
            ts,
            &entry.fields()?.to_string()
        ],
    )?;
    Ok(())
}

/// A checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub note: String,
}

fn entry_row(r: &Row) -> Result<StoredEntry> {
    Ok(StoredEntry {
        seq: r.count(0)?,
        body: r.text(1)?,
        leaf_hash: Some(r.text(2)?),
    })
}

fn parse_hash(hex: &str) -> Result<Hash> {
    from_hex(hex)
        .and_then(|h| Hash::try_from(h).ok())
        .ok_or_else(|| Error::Decode(format!("{hex:?} is not a SHA-256 hash")))
}

impl Store {
    /// Every entry in leaf order, `SCAN_CHUNK` rows at a time.
    pub fn audit_scan(&self, mut f: impl FnMut(StoredEntry) -> Result<()>) -> Result<()> {
        let mut after: i64 = -1;
        loop {
            let rows = self.read(|c| {
                c.query(
                    "SELECT seq, body, leaf_hash FROM audit_entries
                     WHERE seq > $1 ORDER BY seq LIMIT $2",
                    &params![after, SCAN_CHUNK],
                )
            })?;
            let done = (rows.len() as i64) < SCAN_CHUNK;
            for row in &rows {
                let entry = entry_row(row)?;
                after = row.int(0)?;
                f(entry)?;
            }
            if done {
                return Ok(());
            }
        }
    }

    /// The leaf hashes of the first `size` entries, as stored (proofs).
    pub fn audit_leaves(&self, size: u64) -> Result<Vec<Hash>> {
        let rows = self.read(|c| {
            c.query(
                "SELECT seq, leaf_hash FROM audit_entries WHERE seq < $1 ORDER BY seq",
                &params![size],
            )
        })?;
        let mut leaves = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            if row.count(0)? != i as u64 {
                return Err(Error::Decode(format!(
                    "the audit log has no entry {i}; run `audit verify`"
                )));
            }
            leaves.push(parse_hash(&row.text(1)?)?);
        }
        if leaves.len() as u64 != size {
            return Err(Error::Decode(format!(
                "the audit log has {} entries, fewer than {size}; run `audit verify`",
                leaves.len()
            )));
        }
        Ok(leaves)
    }

    /// The entry of a request (`prove --request-id`).
    pub fn audit_entry_of_request(&self, request_id: &str) -> Result<Option<StoredEntry>> {
        self.read(|c| {
            c.query_opt(
                "SELECT seq, body, leaf_hash FROM audit_entries
                 WHERE request_id = $1 ORDER BY seq LIMIT 1",
                &params![request_id],
            )?
            .as_ref()
            .map(entry_row)
            .transpose()
        })
    }

    pub fn audit_entry(&self, seq: u64) -> Result<Option<StoredEntry>> {
        self.read(|c| {
            c.query_opt(
                "SELECT seq, body, leaf_hash FROM audit_entries WHERE seq = $1",
                &params![seq],
            )?
            .as_ref()
            .map(entry_row)
            .transpose()
        })
    }

    /// Every checkpoint, smallest first.
    pub fn audit_checkpoints(&self) -> Result<Vec<StoredCheckpoint>> {
        self.read(|c| {
            c.query(
                "SELECT size, note FROM audit_checkpoints ORDER BY size",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(StoredCheckpoint {
                    size: r.count(0)?,
                    note: r.text(1)?,
                })
            })
            .collect()
        })
    }

    /// Appends the queued entries, then signs and stores a checkpoint of
    /// the whole log if it grew since the latest one; answers the new
    /// checkpoint's note, or `None`.
    pub fn audit_checkpoint(&self, signer: &Signer) -> Result<Option<String>> {
        let now = self.clock().now();
        self.write(|tx| {
            // Beginning an append appends the queue.
            Appender::begin(tx, now)?;
            let mut frontier = latest_frontier(tx)?;
            let rows = tx.query(
                "SELECT seq, leaf_hash FROM audit_entries WHERE seq >= $1 ORDER BY seq",
                &params![frontier.size()],
            )?;
            if rows.is_empty() {
                return Ok(None);
            }
            for row in &rows {
                if row.count(0)? != frontier.size() {
                    return Err(Error::Decode(format!(
                        "the audit log has no entry {}; run `audit verify`",
                        frontier.size()
                    )));
                }
                frontier.push(parse_hash(&row.text(1)?)?);
            }
            let checkpoint = Checkpoint {
                size: frontier.size(),
                root: frontier.root(),
                time: now,
            };
            let note = signer.sign(&checkpoint);
            let hashes: Vec<String> = frontier.hashes().iter().map(|h| hex_lower(h)).collect();
            // Another sidecar on the same database may have signed this size first.
            let inserted = tx.execute(
                "INSERT INTO audit_checkpoints (size, ts, root, note, frontier)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (size) DO NOTHING",
                &params![
                    checkpoint.size,
                    now,
                    &hex_lower(&checkpoint.root),
                    &note,
                    &hashes.join(" ")
                ],
            )?;
            Ok((inserted == 1).then_some(note))
        })
    }
}

/// The frontier stored with the latest checkpoint; the empty one if there
/// is none (or it does not read back, when the next checkpoint hashes the
/// log from the start).
fn latest_frontier(tx: &mut dyn Tx) -> Result<Frontier> {
    let Some(row) = tx.query_opt(
        "SELECT size, frontier FROM audit_checkpoints ORDER BY size DESC LIMIT 1",
        &[],
    )?
    else {
        return Ok(Frontier::default());
    };
    let size = row.count(0)?;
    let hashes: Option<Vec<Hash>> = row
        .text(1)?
        .split_whitespace()
        .map(|h| from_hex(h).and_then(|h| Hash::try_from(h).ok()))
        .collect();
    Ok(hashes
        .and_then(|h| Frontier::from_parts(size, h))
        .unwrap_or_else(|| {
            warn!(
                size,
                "the latest audit checkpoint's frontier does not read back; rehashing"
            );
            Frontier::default()
        }))
}
