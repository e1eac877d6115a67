//! `tollgate-sidecar audit ...`: check, prove, export and sign the audit
//! log, and the body HMAC secrets. `verify --from` and `check-proof` need
//! no database: they run on a copy, anywhere.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};

use crate::audit::checkpoint::{Signer, Verifier};
use crate::audit::export;
use crate::audit::log::StoredCheckpoint;
use crate::audit::proof::Proof;
use crate::audit::secrets;
use crate::audit::verify::{Report, Verification};
use crate::store::{is_postgres_url, Store};

/// Problems `verify` prints before it only counts the rest.
const SHOWN_PROBLEMS: usize = 20;

#[derive(Debug, Args)]
pub struct AuditKeyArg {
    /// Ed25519 key file that signs audit checkpoints, created on first use
    /// (readable by its owner only; one other users may open is refused).
    /// `serve` does not start without a usable key given here [default:
    /// beside a SQLite database, <db>.audit-key; tollgate-audit.key for
    /// PostgreSQL]
    #[arg(
        long = "audit-key",
        env = "TOLLGATE_AUDIT_KEY",
        value_name = "FILE",
        global = true
    )]
    pub path: Option<PathBuf>,
}

impl AuditKeyArg {
    pub fn resolve(&self, db: &str) -> PathBuf {
        match &self.path {
            Some(path) => path.clone(),
            None if is_postgres_url(db) => PathBuf::from("tollgate-audit.key"),
            None => PathBuf::from(format!("{db}.audit-key")),
        }
    }
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub key: AuditKeyArg,
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the whole log: every entry against its leaf hash and place,
    /// every checkpoint's signature, and the log's root against each
    /// checkpoint (exit status 1 on any failure)
    Verify {
        /// An `audit export` file to check instead of the database
        #[arg(long, value_name = "FILE")]
        from: Option<PathBuf>,
        /// The public key to trust (as `audit public-key` prints it, or a
        /// file holding it) [default: the key file's, or the export's]
        #[arg(long, value_name = "KEY")]
        public_key: Option<String>,
    },
    /// Print an entry, its inclusion proof and the latest checkpoint, as JSON
    Prove {
        /// The entry of this request
        #[arg(long, required_unless_present = "seq", conflicts_with = "seq")]
        request_id: Option<String>,
        /// The entry at this leaf index
        #[arg(long)]
        seq: Option<u64>,
    },
    /// Print the consistency proof between the checkpoints of two sizes, as JSON
    Consistency { old_size: u64, new_size: u64 },
    /// Sign a checkpoint of the log now, if it grew since the latest
    Checkpoint,
    /// Write the log (entries, checkpoints, public key) to one file
    Export {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Check a proof printed by `prove` or `consistency`, with only the public key
    CheckProof {
        #[arg(long, value_name = "FILE")]
        proof: PathBuf,
        /// The public key to trust (as `audit public-key` prints it, or a file holding it)
        #[arg(long, value_name = "KEY")]
        public_key: String,
    },
    /// Print the public key that checks the checkpoints
    PublicKey,
    /// Print the HMAC the log holds for a body with this text (from the
    /// file, or standard input), under a team's or a team-less key's secret
    Hmac {
        #[arg(long, required_unless_present = "key", conflicts_with = "key")]
        team: Option<String>,
        /// A key without a team
        #[arg(long)]
        key: Option<String>,
        #[arg(long, value_name = "FILE")]
        text_file: Option<PathBuf>,
    },
    /// Delete a team's HMAC secret (erasure): its logged HMACs can no
    /// longer be checked against any text; the log still verifies
    ForgetTeam { team: String },
    /// Delete a team-less key's HMAC secret, as forget-team does for teams
    ForgetKey { key_id: String },
}

pub fn run_audit(db: &str, args: AuditArgs, stdin: &mut dyn Read, w: &mut dyn Write) -> Result<()> {
    let key_path = args.key.resolve(db);
    let store = || -> Result<Store> {
        Store::open(db, std::sync::Arc::new(crate::clock::Clock::system()))
            .with_context(|| format!("opening database {}", crate::store::display_db(db)))
    };
    match args.command {
        AuditCommand::Verify { from, public_key } => match from {
            Some(file) => verify_copy(&file, public_key.as_deref(), w),
            None => {
                let verifier = match public_key {
                    Some(key) => read_public_key(&key)?,
                    None => key_file_verifier(&key_path)?,
                };
                let store = store()?;
                let checkpoints = store.audit_checkpoints()?;
                let mut check = Verification::new(
                    &verifier,
                    checkpoints.iter().map(|c| (Some(c.size), c.note.as_str())),
                );
                store.audit_scan(|e| {
                    check.entry(&e);
                    Ok(())
                })?;
                report(w, &verifier, &check.finish())
            }
        },
        AuditCommand::Prove { request_id, seq } => {
            let store = store()?;
            let entry = match (&request_id, seq) {
                (Some(id), _) => store
                    .audit_entry_of_request(id)?
                    .ok_or_else(|| anyhow!("no audit log entry for request {id}"))?,
                (None, Some(seq)) => store
                    .audit_entry(seq)?
                    .ok_or_else(|| anyhow!("the audit log has no entry {seq}"))?,
                (None, None) => bail!("pass --request-id or --seq"),
            };
            let latest = store
                .audit_checkpoints()?
                .pop()
                .ok_or_else(|| anyhow!("no checkpoint yet; run `audit checkpoint`"))?;
            print_proof(w, &store.audit_inclusion(&entry, &latest)?)
        }
        AuditCommand::Consistency { old_size, new_size } => {
            let store = store()?;
            let checkpoints = store.audit_checkpoints()?;
            let find = |size: u64| -> Result<&StoredCheckpoint> {
                checkpoints
                    .iter()
                    .find(|c| c.size == size)
                    .ok_or_else(|| anyhow!("no checkpoint of size {size}; {}", sizes(&checkpoints)))
            };
            let proof = store.audit_consistency(find(old_size)?, find(new_size)?)?;
            print_proof(w, &proof)
        }
        AuditCommand::Checkpoint => {
            let signer = Signer::load_or_create(&key_path)?;
            let store = store()?;
            match store.audit_checkpoint(&signer)? {
                Some(note) => write!(w, "{note}")?,
                None => match store.audit_checkpoints()?.pop() {
                    Some(latest) => {
                        writeln!(w, "The log has not grown since its latest checkpoint:\n")?;
                        write!(w, "{}", latest.note)?;
                    }
                    None => writeln!(w, "The log is empty: nothing to sign yet.")?,
                },
            }
            Ok(())
        }
        AuditCommand::Export { out } => {
            let store = store()?;
            // The header names the signing key when this machine has it.
            let verifier = key_path
                .exists()
                .then(|| Signer::load(&key_path).map(|s| s.verifier()))
                .transpose()?;
            let file = File::create(&out).with_context(|| format!("creating {}", out.display()))?;
            let mut file = BufWriter::new(file);
            let done = store.audit_export(verifier.as_ref(), &mut file)?;
            file.flush()
                .with_context(|| format!("writing {}", out.display()))?;
            writeln!(
                w,
                "Wrote {} and {} to {}.",
                counted(done.entries, "entry", "entries"),
                counted(done.checkpoints as u64, "checkpoint", "checkpoints"),
                out.display()
            )?;
            Ok(())
        }
        AuditCommand::CheckProof { proof, public_key } => {
            let verifier = read_public_key(&public_key)?;
            let text = std::fs::read_to_string(&proof)
                .with_context(|| format!("reading {}", proof.display()))?;
            let proof: Proof = serde_json::from_str(&text)
                .context("not a proof printed by `audit prove` or `audit consistency`")?;
            match proof.check(&verifier) {
                Ok(summary) => {
                    writeln!(w, "OK: {summary}.")?;
                    Ok(())
                }
                Err(problem) => bail!("the proof does not verify: {problem}"),
            }
        }
        AuditCommand::PublicKey => {
            writeln!(w, "{}", Signer::load_or_create(&key_path)?.verifier())?;
            Ok(())
        }
        AuditCommand::Hmac {
            team,
            key,
            text_file,
        } => {
            let scope = secrets::scope(team.as_deref(), key.as_deref());
            let secret = store()?.audit_secret(&scope)?.ok_or_else(|| {
                anyhow!(
                    "{scope} has no HMAC secret: it was forgotten, or none of its requests were \
                     logged with a body digest"
                )
            })?;
            let mut text = Vec::new();
            match text_file {
                Some(path) => {
                    text = std::fs::read(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                }
                None => {
                    stdin
                        .read_to_end(&mut text)
                        .context("reading standard input")?;
                }
            }
            writeln!(w, "{}", secrets::text_hmac(&secret, &text)?)?;
            Ok(())
        }
        AuditCommand::ForgetTeam { team } => {
            forget(&store()?, &secrets::scope(Some(&team), None), w)
        }
        AuditCommand::ForgetKey { key_id } => {
            forget(&store()?, &secrets::scope(None, Some(&key_id)), w)
        }
    }
}

fn forget(store: &Store, scope: &str, w: &mut dyn Write) -> Result<()> {
    if store.forget_audit_secret(scope)? {
        writeln!(
            w,
            "Deleted the HMAC secret of {scope}: the log's HMACs under it can no longer be \
             checked. Its next logged request starts a new secret."
        )?;
    } else {
        writeln!(w, "{scope} has no HMAC secret; nothing to delete.")?;
    }
    Ok(())
}

fn verify_copy(file: &Path, public_key: Option<&str>, w: &mut dyn Write) -> Result<()> {
    let reader = File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let copy = export::read(BufReader::new(reader))
        .with_context(|| format!("reading {}", file.display()))?;
    let verifier = match (public_key, &copy.public_key) {
        (Some(key), _) => read_public_key(key)?,
        (None, Some(key)) => {
            writeln!(
                w,
                "Checking against the key named in the file itself: this shows the copy is \
                 intact, not who signed it. Pass --public-key with the key you trust.\n"
            )?;
            Verifier::parse(key)?
        }
        (None, None) => bail!("the export names no public key: pass --public-key"),
    };
    let mut check = Verification::new(
        &verifier,
        copy.checkpoints.iter().map(|n| (None, n.as_str())),
    );
    for e in &copy.entries {
        check.entry(e);
    }
    report(w, &verifier, &check.finish())
}

fn report(w: &mut dyn Write, verifier: &Verifier, r: &Report) -> Result<()> {
    writeln!(w, "key          {verifier}")?;
    writeln!(w, "entries      {}", r.entries)?;
    match r.latest {
        Some(c) => writeln!(
            w,
            "checkpoints  {}, the latest at size {} signed {}",
            r.checkpoints,
            c.size,
            super::format_time(c.time)
        )?,
        None => writeln!(w, "checkpoints  none")?,
    }
    if r.ok() {
        writeln!(
            w,
            "\nOK: every entry hashes to its leaf and sits in its place, and the log's root \
             matches {}.",
            match r.checkpoints {
                1 => "its checkpoint".to_owned(),
                n => format!("each of its {n} checkpoints"),
            }
        )?;
        if r.unsigned() > 0 {
            writeln!(
                w,
                "Not signed yet: {} after the latest checkpoint.",
                counted(r.unsigned(), "entry", "entries")
            )?;
        }
        return Ok(());
    }
    writeln!(w, "\nFAILED:")?;
    for problem in r.problems.iter().take(SHOWN_PROBLEMS) {
        writeln!(w, "- {problem}")?;
    }
    if r.problems.len() > SHOWN_PROBLEMS {
        writeln!(w, "- and {} more", r.problems.len() - SHOWN_PROBLEMS)?;
    }
    bail!(
        "the audit log did not verify ({})",
        counted(r.problems.len() as u64, "problem", "problems")
    )
}

/// `1 entry`, `2 entries`.
fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn print_proof(w: &mut dyn Write, proof: &Proof) -> Result<()> {
    serde_json::to_writer_pretty(&mut *w, proof)?;
    writeln!(w)?;
    Ok(())
}

fn sizes(checkpoints: &[StoredCheckpoint]) -> String {
    if checkpoints.is_empty() {
        return "there are no checkpoints yet".to_owned();
    }
    let sizes: Vec<String> = checkpoints.iter().map(|c| c.size.to_string()).collect();
    format!("checkpoints have sizes {}", sizes.join(", "))
}

/// The key in `arg`, or in the file `arg` names.
fn read_public_key(arg: &str) -> Result<Verifier> {
    let path = Path::new(arg);
    if path.is_file() {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return Ok(Verifier::parse(&text)?);
    }
    Ok(Verifier::parse(arg)?)
}

fn key_file_verifier(path: &Path) -> Result<Verifier> {
    if !path.exists() {
        bail!(
            "no audit key at {}: pass --public-key (as `audit public-key` printed it where the \
             log was written) or --audit-key",
            path.display()
        );
    }
    Ok(Signer::load(path)?.verifier())
}
