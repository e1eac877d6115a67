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

/// Rows per multi-row statement, at most: 6 parameters a row stays far
/// below either database's limit on parameters.
const ROWS_PER_STATEMENT: usize = 128;

/// `items` in runs of powers of two, largest first (200 rows: 128, 64, 8):
/// few statements per append, and few distinct statement texts for the
/// connections' prepared-statement caches (8 per kind of statement).
fn runs<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = rest.len().min(ROWS_PER_STATEMENT);
        let run = 1 << n.ilog2();
        let (head, tail) = rest.split_at(run);
        rest = tail;
        Some(head)
    })
}

/// `$first, ..` for `n` parameters.
fn numbered(first: usize, n: usize) -> String {
    let list: Vec<String> = (first..first + n).map(|i| format!("${i}")).collect();
    list.join(", ")
}

/// `($1, $2), ($3, $4)`: the VALUES of `rows` rows of `columns` parameters.
fn rows_of(rows: usize, columns: usize) -> String {
    let list: Vec<String> = (0..rows)
        .map(|r| format!("({})", numbered(r * columns + 1, columns)))
        .collect();
    list.join(", ")
}

/// Appends entries in the caller's write transaction. Rows are written
/// together by `finish` (a statement per entry cost PostgreSQL a round trip
/// each), which the caller must call before committing.
pub(crate) struct Appender<'t> {
    tx: &'t mut dyn Tx,
    next: u64,
    now: i64,
    rows: Vec<EntryRow>,
    /// Queue rows appended, to delete.
    taken: Vec<i64>,
    /// HMAC secrets read so far, by scope: a batch holds many requests of
    /// few teams.
    secrets: std::collections::HashMap<String, Vec<u8>>,
}

/// One `audit_entries` row, waiting for `finish`.
struct EntryRow {
    seq: u64,
    kind: String,
    request_id: Option<String>,
    ts: i64,
    body: String,
    leaf: String,
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
        let mut log = Appender {
            tx,
            next,
            now,
            rows: Vec::new(),
            taken: Vec::new(),
            secrets: std::collections::HashMap::new(),
        };
        for row in &queued {
            let fields = serde_json::from_str(&row.text(4)?)?;
            log.insert(
                &row.text(1)?,
                row.opt_text(2)?.as_deref(),
                fields,
                row.int(3)?,
            );
            log.taken.push(row.int(0)?);
        }
        Ok(log)
    }

    fn insert(&mut self, kind: &str, request_id: Option<&str>, fields: Value, ts: i64) {
        let body = encode(fields, self.next, ts);
        let leaf = hex_lower(&leaf_hash(body.as_bytes()));
        self.rows.push(EntryRow {
            seq: self.next,
            kind: kind.to_owned(),
            request_id: request_id.map(str::to_owned),
            ts,
            body,
            leaf,
        });
        self.next += 1;
    }

    /// Writes the appended entries and removes the queue rows they came
    /// from, a few statements in all.
    pub fn finish(self) -> Result<()> {
        for chunk in runs(&self.rows) {
            let sql = format!(
                "INSERT INTO audit_entries (seq, kind, request_id, ts, body, leaf_hash) VALUES {}",
                rows_of(chunk.len(), 6)
            );
            let mut values = Vec::with_capacity(chunk.len() * 6);
            for r in chunk {
                values.extend(params![
                    r.seq,
                    r.kind.as_str(),
                    r.request_id.as_deref(),
                    r.ts,
                    r.body.as_str(),
                    r.leaf.as_str()
                ]);
            }
            self.tx.execute(&sql, &values)?;
        }
        // By id, not by range: a lease call may commit a lower id meanwhile
        // (it queues without the lock), and that row waits for the next append.
        for chunk in runs(&self.taken) {
            let sql = format!(
                "DELETE FROM audit_pending WHERE id IN ({})",
                numbered(1, chunk.len())
            );
            let ids: Vec<_> = chunk.iter().flat_map(|id| params![*id]).collect();
            self.tx.execute(&sql, &ids)?;
        }
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
                let secret = match self.secrets.get(&scope) {
                    Some(secret) => secret.clone(),
                    None => {
                        let secret = secrets::secret(self.tx, &scope, self.now)?;
                        self.secrets.insert(scope, secret.clone());
                        secret
                    }
                };
                let mac = |d: Option<[u8; 32]>| d.map(|d| secrets::hmac(&secret, &d)).transpose();
                (mac(request)?, mac(response)?)
            }
        };
        let entry = Entry::request(r, cost_usd, priced, hmacs);
        self.insert(entry.kind(), entry.request_id(), entry.fields()?, ts);
        Ok(())
    }

    /// Refusals' entries (with when each was made), except those the log
    /// has already (a batch sent again): checked under the append lock, so
    /// none is logged twice. Answers which were appended.
    pub fn push_refusals(&mut self, refusals: &[(&UsageReport, i64)]) -> Result<Vec<bool>> {
        let mut logged = std::collections::HashSet::new();
        for chunk in runs(refusals) {
            let sql = format!(
                "SELECT request_id FROM audit_entries WHERE request_id IN ({})",
                numbered(1, chunk.len())
            );
            let ids: Vec<_> = chunk
                .iter()
                .flat_map(|(r, _)| params![r.request_id.as_str()])
                .collect();
            for row in self.tx.query(&sql, &ids)? {
                logged.insert(row.text(0)?);
            }
        }
        let mut appended = Vec::with_capacity(refusals.len());
        for (r, ts) in refusals {
            let new = logged.insert(r.request_id.clone());
            if new {
                let digests = [r.request_digest.as_deref(), r.response_digest.as_deref()];
                self.push_request(r, digests, *ts, 0.0, true)?;
            }
            appended.push(new);
        }
        Ok(appended)
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

/// Queues `entries`, written at `ts`, for the next append, in the caller's
/// transaction and without the append lock: one statement (a lease call,
/// which a request may wait on, queues a grant and the leases it hands back).
pub(crate) fn queue(tx: &mut dyn Tx, entries: &[Entry], ts: i64) -> Result<()> {
    for chunk in runs(entries) {
        let fields = chunk
            .iter()
            .map(|e| Ok(e.fields()?.to_string()))
            .collect::<Result<Vec<_>>>()?;
        let sql = format!(
            "INSERT INTO audit_pending (kind, request_id, ts, fields) VALUES {}",
            rows_of(chunk.len(), 4)
        );
        let mut values = Vec::with_capacity(chunk.len() * 4);
        for (entry, fields) in chunk.iter().zip(&fields) {
            values.extend(params![
                entry.kind(),
                entry.request_id(),
                ts,
                fields.as_str()
            ]);
        }
        tx.execute(&sql, &values)?;
    }
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
            // Beginning an append takes the queue.
            Appender::begin(tx, now)?.finish()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_powers_of_two_largest_first() {
        let items: Vec<u32> = (0..200).collect();
        let lens: Vec<usize> = runs(&items).map(<[u32]>::len).collect();
        assert_eq!(lens, [128, 64, 8]);
        let all: Vec<u32> = runs(&items).flatten().copied().collect();
        assert_eq!(all, items);
        let lens: Vec<usize> = runs(&items[..7]).map(<[u32]>::len).collect();
        assert_eq!(lens, [4, 2, 1]);
        assert_eq!(runs::<u32>(&[]).count(), 0);
    }

    #[test]
    fn placeholders_number_rows_in_order() {
        assert_eq!(rows_of(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(numbered(1, 3), "$1, $2, $3");
    }
}
