//! Inclusion and consistency proofs as self-contained JSON: each carries
//! the signed checkpoint(s) it is against, so checking one needs only the
//! proof and the log's public key, not the log.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::checkpoint::{Checkpoint, Verifier};
use super::entry::canonical;
use super::from_hex;
use super::log::{StoredCheckpoint, StoredEntry};
use super::merkle::{
    consistency_proof, inclusion_proof, leaf_hash, verify_consistency, verify_inclusion, Hash,
};
use crate::error::{Error, Result};
use crate::keys::hex_lower;
use crate::store::Store;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Proof {
    /// `entry` is leaf `leaf_index` of the tree of `tree_size` that
    /// `checkpoint` signs.
    Inclusion {
        leaf_index: u64,
        tree_size: u64,
        /// The entry; its canonical JSON is the leaf's bytes.
        entry: Value,
        /// Hex hashes, leaf side first.
        proof: Vec<String>,
        checkpoint: String,
    },
    /// The tree `old_checkpoint` signs is the first `old_size` leaves of
    /// the tree `new_checkpoint` signs.
    Consistency {
        old_size: u64,
        new_size: u64,
        proof: Vec<String>,
        old_checkpoint: String,
        new_checkpoint: String,
    },
}

fn hexes(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(|h| hex_lower(h)).collect()
}

impl Store {
    /// The inclusion proof of `entry` against `checkpoint` (from this log).
    pub fn audit_inclusion(
        &self,
        entry: &StoredEntry,
        checkpoint: &StoredCheckpoint,
    ) -> Result<Proof> {
        if entry.seq >= checkpoint.size {
            return Err(Error::invalid(format!(
                "entry {} is not covered by the latest checkpoint (size {}) yet; run `audit \
                 checkpoint` (the server writes one every --audit-checkpoint-interval)",
                entry.seq, checkpoint.size
            )));
        }
        let leaves = self.audit_leaves(checkpoint.size)?;
        let proof = inclusion_proof(entry.seq, &leaves)
            .ok_or_else(|| Error::invalid(format!("entry {} is outside the log", entry.seq)))?;
        Ok(Proof::Inclusion {
            leaf_index: entry.seq,
            tree_size: checkpoint.size,
            entry: serde_json::from_str(&entry.body)?,
            proof: hexes(&proof),
            checkpoint: checkpoint.note.clone(),
        })
    }

    /// The consistency proof between two of this log's checkpoints.
    pub fn audit_consistency(
        &self,
        old: &StoredCheckpoint,
        new: &StoredCheckpoint,
    ) -> Result<Proof> {
        if old.size > new.size {
            return Err(Error::invalid(format!(
                "the old checkpoint ({}) must not be larger than the new one ({})",
                old.size, new.size
            )));
        }
        let leaves = self.audit_leaves(new.size)?;
        let proof = consistency_proof(old.size, &leaves)
            .ok_or_else(|| Error::invalid(format!("size {} is outside the log", old.size)))?;
        Ok(Proof::Consistency {
            old_size: old.size,
            new_size: new.size,
            proof: hexes(&proof),
            old_checkpoint: old.note.clone(),
            new_checkpoint: new.note.clone(),
        })
    }
}

impl Proof {
    /// Checks the proof with nothing but the public key: what it proves,
    /// or why it does not.
    pub fn check(&self, verifier: &Verifier) -> Result<String, String> {
        match self {
            Proof::Inclusion {
                leaf_index,
                tree_size,
                entry,
                proof,
                checkpoint,
            } => {
                let c = open(verifier, checkpoint, *tree_size, "checkpoint")?;
                let body = canonical(entry);
                if entry.get("seq").and_then(Value::as_u64) != Some(*leaf_index) {
                    return Err(format!("the entry does not say it is entry {leaf_index}"));
                }
                let proof = parse_hashes(proof)?;
                if !verify_inclusion(
                    *leaf_index,
                    c.size,
                    &leaf_hash(body.as_bytes()),
                    &proof,
                    &c.root,
                ) {
                    return Err(format!(
                        "the inclusion proof does not lead from the entry to the checkpoint's root \
                         (leaf {leaf_index} of {})",
                        c.size
                    ));
                }
                Ok(format!(
                    "entry {leaf_index} is in the log of {} entries signed at {}",
                    c.size,
                    crate::cli::format_time(c.time)
                ))
            }
            Proof::Consistency {
                old_size,
                new_size,
                proof,
                old_checkpoint,
                new_checkpoint,
            } => {
                let old = open(verifier, old_checkpoint, *old_size, "old checkpoint")?;
                let new = open(verifier, new_checkpoint, *new_size, "new checkpoint")?;
                let proof = parse_hashes(proof)?;
                if !verify_consistency(old.size, new.size, &old.root, &new.root, &proof) {
                    return Err(format!(
                        "the consistency proof does not show the log of {} entries to be the start \
                         of the log of {}",
                        old.size, new.size
                    ));
                }
                Ok(format!(
                    "the log of {} entries is the first {} entries of the log of {}: nothing \
                     signed at size {} was changed by size {}",
                    old.size, old.size, new.size, old.size, new.size
                ))
            }
        }
    }
}

fn open(verifier: &Verifier, note: &str, size: u64, what: &str) -> Result<Checkpoint, String> {
    let c = verifier.open(note).map_err(|e| format!("{what}: {e}"))?;
    if c.size != size {
        return Err(format!(
            "{what} signs size {}, the proof says {size}",
            c.size
        ));
    }
    Ok(c)
}

fn parse_hashes(proof: &[String]) -> Result<Vec<Hash>, String> {
    proof
        .iter()
        .map(|h| {
            from_hex(h)
                .and_then(|h| Hash::try_from(h).ok())
                .ok_or_else(|| format!("proof hash {h:?} is not 64 hex characters"))
        })
        .collect()
}
