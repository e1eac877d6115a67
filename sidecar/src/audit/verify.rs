//! Checks a whole log, from the database or an export: every entry's bytes
//! against its stored leaf hash, every entry's place (its row number and
//! the `seq` inside it), every checkpoint's signature, and the root of the
//! log's first N entries against each checkpoint of size N. A log that
//! matches its latest checkpoint this way and every older one is
//! consistent with all of them: each is the root of a prefix of it.
//!
//! Entries stream through (`entry`), so memory stays at the checkpoints,
//! the frontier and the problems found.

use serde_json::Value;

use super::checkpoint::{Checkpoint, Verifier};
use super::log::StoredEntry;
use super::merkle::{leaf_hash, Frontier};
use crate::cli::format_time;
use crate::keys::hex_lower;

/// A whole-log check under way.
pub struct Verification<'v> {
    verifier: &'v Verifier,
    /// The checkpoints that opened with the key, smallest first.
    checkpoints: Vec<Checkpoint>,
    next: usize,
    /// The size of the largest checkpoint the log matched so far.
    matched: u64,
    frontier: Frontier,
    /// The last offsets seen between an entry's position and its row
    /// number or its own `seq`: a shift is reported where it starts.
    row_shift: i128,
    seq_shift: i128,
    problems: Vec<String>,
}

/// What a check found.
#[derive(Debug)]
pub struct Report {
    pub entries: u64,
    /// The checkpoints that opened with the key.
    pub checkpoints: usize,
    pub latest: Option<Checkpoint>,
    /// Empty when the log verified.
    pub problems: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Entries after the latest checkpoint: hashed, but signed by nothing yet.
    pub fn unsigned(&self) -> u64 {
        self.entries - self.latest.map_or(0, |c| c.size.min(self.entries))
    }
}

impl<'v> Verification<'v> {
    /// `checkpoints`: each as stored (the size its row claims, if any) and
    /// its signed note.
    pub fn new<'a>(
        verifier: &'v Verifier,
        checkpoints: impl IntoIterator<Item = (Option<u64>, &'a str)>,
    ) -> Verification<'v> {
        let mut problems = Vec::new();
        let mut opened: Vec<Checkpoint> = Vec::new();
        for (stored_size, note) in checkpoints {
            let label = stored_size.map_or_else(String::new, |s| format!(" stored at size {s}"));
            match verifier.open(note) {
                Ok(c) if stored_size.is_some_and(|s| s != c.size) => problems.push(format!(
                    "checkpoint{label}: its signed size is {}, so its row was edited",
                    c.size
                )),
                Ok(c) => opened.push(c),
                Err(e) => problems.push(format!("checkpoint{label}: {e}")),
            }
        }
        opened.sort_by_key(|c| c.size);
        opened.dedup_by(|b, a| {
            let same = a.size == b.size;
            if same && a.root != b.root {
                problems.push(format!(
                    "two checkpoints of size {} sign different roots: the log was forked",
                    a.size
                ));
            }
            same
        });
        Verification {
            verifier,
            checkpoints: opened,
            next: 0,
            matched: 0,
            frontier: Frontier::default(),
            row_shift: 0,
            seq_shift: 0,
            problems,
        }
    }

    /// Checks the next entry of the log, in row order.
    pub fn entry(&mut self, e: &StoredEntry) {
        // The empty tree's checkpoints come before the first entry.
        self.check_checkpoints();
        let position = self.frontier.size();
        let row_shift = i128::from(e.seq) - i128::from(position);
        if row_shift != 0 && row_shift != self.row_shift {
            self.problems.push(format!(
                "entry {position}: its row is numbered {}: rows were deleted or inserted before it",
                e.seq
            ));
        }
        self.row_shift = row_shift;

        let leaf = leaf_hash(e.body.as_bytes());
        if let Some(stored) = &e.leaf_hash {
            if *stored != hex_lower(&leaf) {
                self.problems.push(format!(
                    "entry {position}: its bytes do not hash to its stored leaf hash: it was \
                     edited after it was written"
                ));
            }
        }
        match own_seq(&e.body) {
            Some(seq) => {
                let seq_shift = i128::from(seq) - i128::from(position);
                if seq_shift != 0 && seq_shift != self.seq_shift {
                    self.problems.push(format!(
                        "entry {position}: it says it is entry {seq}: entries were reordered, \
                         deleted or inserted"
                    ));
                }
                self.seq_shift = seq_shift;
            }
            None => self.problems.push(format!(
                "entry {position}: it is not a JSON entry with a seq"
            )),
        }

        self.frontier.push(leaf);
        self.check_checkpoints();
    }

    /// Compares the root so far with the checkpoints of this size.
    fn check_checkpoints(&mut self) {
        let size = self.frontier.size();
        while let Some(c) = self.checkpoints.get(self.next).filter(|c| c.size <= size) {
            self.next += 1;
            if self.frontier.root() == c.root {
                self.matched = c.size;
            } else {
                self.problems.push(format!(
                    "checkpoint at size {} (signed {}): the log's first {} entries do not hash to \
                     its root: the change lies in entries {} to {} (edited, deleted, inserted or \
                     reordered since it was signed)",
                    c.size,
                    format_time(c.time),
                    c.size,
                    self.matched,
                    c.size.saturating_sub(1)
                ));
            }
        }
    }

    pub fn finish(mut self) -> Report {
        self.check_checkpoints();
        let entries = self.frontier.size();
        for c in self.checkpoints.iter().skip(self.next) {
            self.problems.push(format!(
                "checkpoint at size {} (signed {}): the log has only {entries} entries: entries \
                 were deleted from its end",
                c.size,
                format_time(c.time)
            ));
        }
        if entries > 0 && self.checkpoints.is_empty() {
            self.problems.push(format!(
                "no checkpoint signed by key {} covers the log: nothing vouches for its {entries} \
                 entries",
                self.verifier
            ));
        }
        Report {
            entries,
            checkpoints: self.checkpoints.len(),
            latest: self.checkpoints.last().copied(),
            problems: self.problems,
        }
    }
}

/// The `seq` an entry's bytes carry.
fn own_seq(body: &str) -> Option<u64> {
    serde_json::from_str::<Value>(body)
        .ok()?
        .get("seq")?
        .as_u64()
}
