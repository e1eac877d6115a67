//! A log copied out of the database into one self-contained file, JSON
//! lines: a header with the public key, every checkpoint's signed note,
//! then every entry's exact bytes in leaf order.
//!
//! ```text
//! {"format":"tollgate-audit-log","version":1,"public_key":"tollgate-audit+..."}
//! {"checkpoint":"tollgate-audit\n1042\n...\n"}
//! {"seq":0,"body":"{\"api\":\"chat_completions\",...}"}
//! ```
//!
//! Entries keep their bytes as a JSON string: verifying hashes exactly
//! those bytes. The header's key only says which key signed the copy; a
//! verifier should check it against a key it trusts (`--public-key`).

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use super::checkpoint::Verifier;
use super::log::StoredEntry;
use crate::error::{Error, Result};
use crate::store::Store;

pub const FORMAT: &str = "tollgate-audit-log";
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Line {
    Checkpoint { checkpoint: String },
    Entry { seq: u64, body: String },
}

/// A log read back from an export.
#[derive(Debug, Default)]
pub struct LogCopy {
    pub public_key: Option<String>,
    pub checkpoints: Vec<String>,
    pub entries: Vec<StoredEntry>,
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    pub entries: u64,
    pub checkpoints: usize,
}

impl Store {
    /// Writes the whole log to `w`; `public_key` goes in the header.
    pub fn audit_export(
        &self,
        public_key: Option<&Verifier>,
        w: &mut dyn Write,
    ) -> Result<Exported> {
        let header = Header {
            format: FORMAT.to_owned(),
            version: VERSION,
            public_key: public_key.map(ToString::to_string),
        };
        write_line(w, &header)?;
        let checkpoints = self.audit_checkpoints()?;
        for c in &checkpoints {
            write_line(
                w,
                &Line::Checkpoint {
                    checkpoint: c.note.clone(),
                },
            )?;
        }
        let mut entries = 0;
        self.audit_scan(|e| {
            entries += 1;
            write_line(
                w,
                &Line::Entry {
                    seq: e.seq,
                    body: e.body,
                },
            )
        })?;
        Ok(Exported {
            entries,
            checkpoints: checkpoints.len(),
        })
    }
}

fn write_line(w: &mut dyn Write, value: &impl Serialize) -> Result<()> {
    serde_json::to_writer(&mut *w, value)?;
    w.write_all(b"\n")
        .map_err(|e| Error::invalid(format!("writing the export: {e}")))
}

/// Reads an export back.
pub fn read(r: impl BufRead) -> Result<LogCopy> {
    let mut lines = r.lines().enumerate();
    let bad = |n: usize, what: String| Error::invalid(format!("line {}: {what}", n + 1));
    let header: Header = match lines.next() {
        Some((n, line)) => {
            let line = line.map_err(|e| bad(n, e.to_string()))?;
            serde_json::from_str(&line)
                .map_err(|e| bad(n, format!("not a {FORMAT} header: {e}")))?
        }
        None => return Err(Error::invalid("the export is empty")),
    };
    if header.format != FORMAT || header.version != VERSION {
        return Err(Error::invalid(format!(
            "not a {FORMAT} version {VERSION} file (format {:?}, version {})",
            header.format, header.version
        )));
    }
    let mut copy = LogCopy {
        public_key: header.public_key,
        ..LogCopy::default()
    };
    for (n, line) in lines {
        let line = line.map_err(|e| bad(n, e.to_string()))?;
        if line.is_empty() {
            continue;
        }
        match serde_json::from_str(&line).map_err(|e| bad(n, e.to_string()))? {
            Line::Checkpoint { checkpoint } => copy.checkpoints.push(checkpoint),
            Line::Entry { seq, body } => copy.entries.push(StoredEntry {
                seq,
                body,
                leaf_hash: None,
            }),
        }
    }
    Ok(copy)
}
