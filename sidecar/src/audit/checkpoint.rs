//! Signed checkpoints: the log's size and root, signed with Ed25519, as a
//! C2SP signed note in the tlog-checkpoint format, so a verifier needs only
//! the note and the public key:
//!
//! ```text
//! tollgate-audit
//! 1042
//! <root, base64>
//! time 1795348800
//!
//! — tollgate-audit <base64 of key id (4 bytes) and signature (64 bytes)>
//! ```
//!
//! The signature covers the text above the blank line. Keys use the
//! signed-note key encodings: the public key prints as
//! `tollgate-audit+<key id hex>+<base64 of 0x01 and the key>`, and the key
//! file holds `PRIVATE+KEY+tollgate-audit+<key id hex>+<base64 of 0x01 and
//! the seed>`, where the key id is the first 4 bytes of
//! SHA-256(name, "\n", 0x01, public key).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::merkle::Hash;
use crate::error::{Error, Result};

/// The log's origin line and its key's name.
pub const ORIGIN: &str = "tollgate-audit";
/// The signed-note algorithm byte for Ed25519.
const ED25519: u8 = 0x01;
const PRIVATE_PREFIX: &str = "PRIVATE+KEY+";
/// Where a signed note's signature lines start.
const SIG_PREFIX: &str = "\u{2014} ";

/// A tree head: what a checkpoint signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub size: u64,
    pub root: Hash,
    /// Unix seconds when it was signed.
    pub time: i64,
}

impl Checkpoint {
    /// The signed text: origin, size, root and time lines.
    fn text(&self) -> String {
        format!(
            "{ORIGIN}\n{}\n{}\ntime {}\n",
            self.size,
            STANDARD.encode(self.root),
            self.time
        )
    }

    fn parse_text(text: &str) -> Result<Checkpoint, String> {
        let lines: Vec<&str> = text.lines().collect();
        let [origin, size, root, time] = lines.as_slice() else {
            return Err(format!("expected 4 lines, found {}", lines.len()));
        };
        if *origin != ORIGIN {
            return Err(format!("origin is {origin:?}, not {ORIGIN:?}"));
        }
        let size = size
            .parse()
            .map_err(|_| format!("size {size:?} is not a number"))?;
        let root = STANDARD
            .decode(root)
            .ok()
            .and_then(|r| Hash::try_from(r).ok())
            .ok_or_else(|| format!("root {root:?} is not 32 bytes of base64"))?;
        let time = time
            .strip_prefix("time ")
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| format!("time line {time:?} is not `time <unix seconds>`"))?;
        Ok(Checkpoint { size, root, time })
    }
}

/// The log's signing key (the key file).
pub struct Signer {
    key: SigningKey,
}

impl Signer {
    /// Reads the key at `path`, or creates one there (readable by the
    /// owner only) if there is none.
    pub fn load_or_create(path: &Path) -> Result<Signer> {
        // An existing key is only read, never opened for writing: it may sit
        // on a read-only mount (a Kubernetes Secret).
        if path.exists() {
            return Signer::load(path);
        }
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(Error::Rng)?;
        let signer = Signer {
            key: SigningKey::from_bytes(&seed),
        };
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut file) => {
                writeln!(file, "{}", signer.encode())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| key_error(path, &e))?;
                Ok(signer)
            }
            // Another process may have created it first: use theirs.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Signer::load(path),
            Err(e) => Err(Error::invalid(format!(
                "no audit key at {} and none can be made there: {e}",
                path.display()
            ))),
        }
    }

    /// Reads the key at `path`; a file other users may open is refused.
    pub fn load(path: &Path) -> Result<Signer> {
        let mut file = File::open(path).map_err(|e| key_error(path, &e))?;
        check_mode(path, &file)?;
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(|e| key_error(path, &e))?;
        Signer::decode(text.trim()).ok_or_else(|| {
            Error::invalid(format!(
                "{} is not a tollgate audit key ({PRIVATE_PREFIX}{ORIGIN}+...)",
                path.display()
            ))
        })
    }

    fn encode(&self) -> String {
        let verifier = self.verifier();
        let mut key = vec![ED25519];
        key.extend_from_slice(&self.key.to_bytes());
        format!(
            "{PRIVATE_PREFIX}{ORIGIN}+{:08x}+{}",
            verifier.id,
            STANDARD.encode(key)
        )
    }

    fn decode(text: &str) -> Option<Signer> {
        let rest = text.strip_prefix(PRIVATE_PREFIX)?;
        let (name, rest) = rest.split_once('+')?;
        let (id, key) = rest.split_once('+')?;
        let key = STANDARD.decode(key).ok()?;
        let (&alg, seed) = key.split_first()?;
        let signer = Signer {
            key: SigningKey::from_bytes(&seed.try_into().ok()?),
        };
        let id_ok = u32::from_str_radix(id, 16).ok() == Some(signer.verifier().id);
        (name == ORIGIN && alg == ED25519 && id_ok).then_some(signer)
    }

    pub fn verifier(&self) -> Verifier {
        Verifier::new(self.key.verifying_key())
    }

    /// The checkpoint as a signed note.
    pub fn sign(&self, checkpoint: &Checkpoint) -> String {
        let text = checkpoint.text();
        let signature = self.key.sign(text.as_bytes());
        let mut sig = self.verifier().id.to_be_bytes().to_vec();
        sig.extend_from_slice(&signature.to_bytes());
        format!("{text}\n{SIG_PREFIX}{ORIGIN} {}\n", STANDARD.encode(sig))
    }
}

/// The key file may give its group access but not other users. Owner-only
/// (as `load_or_create` makes it) would refuse a Kubernetes Secret mounted
/// for a non-root user: the file stays root's, and the pod's `fsGroup` makes
/// it readable through the group (mode 0440, whatever `defaultMode` says).
/// The group is one the operator chose; other users are anyone on the host.
#[cfg(unix)]
fn check_mode(path: &Path, file: &File) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file
        .metadata()
        .map_err(|e| key_error(path, &e))?
        .permissions()
        .mode();
    if mode & 0o007 != 0 {
        return Err(Error::invalid(format!(
            "audit key {} is open to other users (mode {:03o}): take their access away \
             (`chmod o= {}`), and make a new key if it may have been read",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_path: &Path, _file: &File) -> Result<()> {
    Ok(())
}

fn key_error(path: &Path, e: &std::io::Error) -> Error {
    Error::invalid(format!("audit key {}: {e}", path.display()))
}

/// A public key that checks checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    key: VerifyingKey,
    id: u32,
}

impl Verifier {
    fn new(key: VerifyingKey) -> Verifier {
        let mut h = Sha256::new();
        h.update(ORIGIN.as_bytes());
        h.update(b"\n");
        h.update([ED25519]);
        h.update(key.as_bytes());
        let digest = h.finalize();
        let id = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        Verifier { key, id }
    }

    /// Reads `tollgate-audit+<id>+<base64>` (what `audit public-key` prints).
    pub fn parse(text: &str) -> Result<Verifier> {
        let bad = || {
            Error::invalid(format!(
                "{text:?} is not a tollgate audit public key ({ORIGIN}+<key id>+<base64>, as \
                 `tollgate-sidecar audit public-key` prints it)"
            ))
        };
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let key = STANDARD.decode(key).map_err(|_| bad())?;
        let Some((&ED25519, key)) = key.split_first() else {
            return Err(bad());
        };
        let key = <[u8; 32]>::try_from(key).map_err(|_| bad())?;
        let verifier = Verifier::new(VerifyingKey::from_bytes(&key).map_err(|_| bad())?);
        if name != ORIGIN || u32::from_str_radix(id, 16).ok() != Some(verifier.id) {
            return Err(bad());
        }
        Ok(verifier)
    }

    /// The checkpoint in `note` if this key signed it; else what is wrong.
    pub fn open(&self, note: &str) -> Result<Checkpoint, String> {
        let Some((text, signatures)) = note.split_once("\n\n") else {
            return Err("not a signed note (no blank line before the signatures)".into());
        };
        let text = format!("{text}\n");
        let mut others = Vec::new();
        for line in signatures.lines() {
            let Some((name, sig)) = line
                .strip_prefix(SIG_PREFIX)
                .and_then(|l| l.split_once(' '))
            else {
                return Err(format!("malformed signature line {line:?}"));
            };
            let sig = STANDARD
                .decode(sig)
                .map_err(|_| format!("signature of {name} is not base64"))?;
            let Some((id, sig)) = sig.split_first_chunk::<4>() else {
                return Err(format!("signature of {name} is too short"));
            };
            let id = u32::from_be_bytes(*id);
            if name != ORIGIN || id != self.id {
                others.push(format!("{name} (key id {id:08x})"));
                continue;
            }
            let sig = Signature::from_slice(sig)
                .map_err(|_| format!("signature of {name} is not 64 bytes"))?;
            self.key
                .verify_strict(text.as_bytes(), &sig)
                .map_err(|_| format!("the signature by key {id:08x} does not verify"))?;
            return Checkpoint::parse_text(&text);
        }
        Err(format!(
            "not signed by key {:08x}; signed by {}",
            self.id,
            if others.is_empty() {
                "nobody".to_owned()
            } else {
                others.join(", ")
            }
        ))
    }
}

impl fmt::Display for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut key = vec![ED25519];
        key.extend_from_slice(self.key.as_bytes());
        write!(f, "{ORIGIN}+{:08x}+{}", self.id, STANDARD.encode(key))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            size: 1042,
            root: [9; 32],
            time: 1_795_348_800,
        }
    }

    #[test]
    fn a_signed_checkpoint_opens_with_its_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let signer = Signer::load_or_create(&dir.path().join("k")).unwrap();
        let note = signer.sign(&checkpoint());
        assert!(note.starts_with("tollgate-audit\n1042\nCQkJ"));
        assert!(note.contains("\ntime 1795348800\n\n\u{2014} tollgate-audit "));
        let verifier = Verifier::parse(&signer.verifier().to_string()).unwrap();
        assert_eq!(verifier.open(&note), Ok(checkpoint()));

        let other = Signer::load_or_create(&dir.path().join("other")).unwrap();
        let err = other.verifier().open(&note).unwrap_err();
        assert!(err.starts_with("not signed by key"), "{err}");
        // An edited size, under the original signature.
        let edited = note.replacen("1042", "1043", 1);
        let err = verifier.open(&edited).unwrap_err();
        assert!(err.contains("does not verify"), "{err}");
    }

    #[test]
    fn the_key_file_is_created_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        let first = Signer::load_or_create(&path).unwrap();
        let again = Signer::load_or_create(&path).unwrap();
        assert_eq!(first.verifier(), again.verifier());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("PRIVATE+KEY+tollgate-audit+"), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "garbage").unwrap();
        assert!(Signer::load(&path).is_err());
        assert!(Verifier::parse("tollgate-audit+00000000+AQ==").is_err());
    }

    /// The rule `check_mode` sets: group bits pass (a Secret mounted with
    /// the pod's fsGroup is 0440), any access for other users fails.
    #[cfg(unix)]
    #[test]
    fn a_key_file_may_be_group_readable_but_not_open_to_others() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        let made = Signer::load_or_create(&path).unwrap().verifier();
        let chmod = |mode: u32| {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        for mode in [0o600, 0o400, 0o440, 0o640, 0o660] {
            chmod(mode);
            assert_eq!(Signer::load(&path).unwrap().verifier(), made, "{mode:o}");
            let again = Signer::load_or_create(&path).unwrap();
            assert_eq!(again.verifier(), made, "{mode:o}");
        }
        for mode in [0o644, 0o444, 0o604, 0o602, 0o601, 0o666] {
            chmod(mode);
            let err = Signer::load(&path).err().unwrap().to_string();
            assert!(
                err.contains("open to other users") && err.contains(&format!("(mode {mode:03o})")),
                "{mode:o}: {err}"
            );
            // Never replaced by a new key either.
            assert!(Signer::load_or_create(&path).is_err(), "{mode:o}");
        }
        chmod(0o600);
        assert_eq!(Signer::load(&path).unwrap().verifier(), made);
    }

    #[test]
    fn a_key_that_cannot_be_made_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-mounted").join("key");
        let err = Signer::load_or_create(&path).err().unwrap().to_string();
        assert!(
            err.starts_with(&format!(
                "no audit key at {} and none can be made there: ",
                path.display()
            )),
            "{err}"
        );
        assert!(!path.exists());
    }
}
