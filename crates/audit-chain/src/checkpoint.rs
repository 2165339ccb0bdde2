//! Signed checkpoints: Ed25519 keys (`palisade audit keygen`), signing the chain head,
//! checking signatures.

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use policy_engine::SecretRef;
use sha2::{Digest, Sha256};

use crate::store::Checkpoint;

/// File name of the private key written by [`keygen`].
pub const PRIVATE_KEY_FILE: &str = "audit-signing.key";
/// File name of the public key written by [`keygen`].
pub const PUBLIC_KEY_FILE: &str = "audit-signing.pub";

/// Domain separation prefix of the signed message.
pub const CHECKPOINT_DOMAIN: &[u8] = b"palisade-audit-checkpoint-v1\n";

/// Why a key could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing a key file failed.
    #[error("audit key file `{path}`: {source}")]
    Io {
        /// File.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `keygen` refuses to overwrite an existing key.
    #[error("audit key file `{path}` already exists; refusing to overwrite it")]
    Exists {
        /// File.
        path: String,
    },
    /// The environment variable named by `signing_key_ref` is not set.
    #[error("audit signing key: environment variable `{0}` is not set")]
    MissingEnv(String),
    /// The text is neither PEM (PKCS#8 / SPKI) nor 64 hex digits.
    #[error("audit {what} from {from}: not a PEM Ed25519 key nor 64 hex digits")]
    Malformed {
        /// `signing key` or `public key`.
        what: &'static str,
        /// Where it came from.
        from: String,
    },
    /// Encoding the key failed.
    #[error("audit key: cannot encode key: {0}")]
    Encode(String),
}

/// Where [`keygen`] wrote the key pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPairFiles {
    /// PKCS#8 PEM private key, mode 0600.
    pub private_key: PathBuf,
    /// SPKI PEM public key.
    pub public_key: PathBuf,
    /// Key id: hex of the first 8 bytes of SHA-256 of the public key.
    pub key_id: String,
}

/// An Ed25519 public key for verifying checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses a SPKI PEM public key or 64 hex digits.
    pub fn parse(text: &str, from: &str) -> Result<PublicKey, KeyError> {
        let t = text.trim();
        if let Ok(k) = VerifyingKey::from_public_key_pem(t) {
            return Ok(PublicKey(k));
        }
        let malformed = || KeyError::Malformed {
            what: "public key",
            from: from.to_owned(),
        };
        let bytes: [u8; 32] = hex::decode(t)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(malformed)?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| malformed())
    }

    /// Reads a public key file (PEM or hex).
    pub fn load(path: &Path) -> Result<PublicKey, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        PublicKey::parse(&text, &format!("`{}`", path.display()))
    }

    /// Key id: hex of the first 8 bytes of SHA-256 of the 32 key bytes.
    pub fn key_id(&self) -> String {
        key_id(&self.0)
    }

    /// The 32 key bytes, hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }

    /// Whether `cp` carries a valid signature by this key over its `{seq, hash, time}`.
    pub fn verifies(&self, cp: &Checkpoint) -> bool {
        let Ok(sig) = Signature::from_slice(&cp.signature) else {
            return false;
        };
        self.0
            .verify(&checkpoint_message(cp.seq, &cp.hash, &cp.time), &sig)
            .is_ok()
    }
}

fn key_id(k: &VerifyingKey) -> String {
    let d = Sha256::digest(k.as_bytes());
    hex::encode(&d[..8])
}

/// The bytes signed for a checkpoint: [`CHECKPOINT_DOMAIN`] followed by the canonical JSON
/// `{"hash":"<hex>","seq":<n>,"time":"<rfc3339>"}`.
pub fn checkpoint_message(seq: u64, hash: &[u8], time: &str) -> Vec<u8> {
    let v = serde_json::json!({"hash": hex::encode(hash), "seq": seq, "time": time});
    let mut out = CHECKPOINT_DOMAIN.to_vec();
    // Only strings and an integer: cannot fail.
    let _ = crate::canonical::write_canonical(&v, &mut out);
    out
}

/// Signs checkpoints. `Debug` shows the key id only.
#[derive(Clone)]
pub struct CheckpointSigner {
    key: SigningKey,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("key_id", &self.public_key().key_id())
            .finish()
    }
}

impl CheckpointSigner {
    /// Parses a PKCS#8 PEM private key or 64 hex digits (the 32-byte seed).
    pub fn parse(text: &str, from: &str) -> Result<CheckpointSigner, KeyError> {
        let t = text.trim();
        if let Ok(key) = SigningKey::from_pkcs8_pem(t) {
            return Ok(CheckpointSigner { key });
        }
        let seed: [u8; 32] = hex::decode(t)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| KeyError::Malformed {
                what: "signing key",
                from: from.to_owned(),
            })?;
        Ok(CheckpointSigner {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Reads the key named by a pack's `signing_key_ref` (env var or file).
    pub fn from_secret_ref(r: &SecretRef) -> Result<CheckpointSigner, KeyError> {
        match r {
            SecretRef::Env(var) => {
                let v = std::env::var(var).map_err(|_| KeyError::MissingEnv(var.clone()))?;
                CheckpointSigner::parse(&v, &format!("environment variable `{var}`"))
            }
            SecretRef::File(path) => {
                let v = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
                    path: path.display().to_string(),
                    source,
                })?;
                CheckpointSigner::parse(&v, &format!("`{}`", path.display()))
            }
        }
    }

    /// A fresh random key.
    pub fn generate() -> CheckpointSigner {
        CheckpointSigner {
            key: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.key.verifying_key())
    }

    /// Signs the head `{seq, hash, time}`.
    pub fn sign(&self, seq: u64, hash: &[u8; 32], time: &str) -> Checkpoint {
        let sig = self.key.sign(&checkpoint_message(seq, hash, time));
        Checkpoint {
            seq,
            hash: hash.to_vec(),
            time: time.to_owned(),
            key_id: self.public_key().key_id(),
            signature: sig.to_bytes().to_vec(),
        }
    }
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let shown = path.display().to_string();
    let mut f = opts.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            KeyError::Exists {
                path: shown.clone(),
            }
        } else {
            KeyError::Io {
                path: shown.clone(),
                source,
            }
        }
    })?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|source| KeyError::Io {
            path: shown,
            source,
        })
}

/// Makes a new Ed25519 key pair in `out_dir`: [`PRIVATE_KEY_FILE`] (PKCS#8 PEM, mode 0600)
/// and [`PUBLIC_KEY_FILE`] (SPKI PEM). Refuses to overwrite existing files.
pub fn keygen(out_dir: &Path) -> Result<KeyPairFiles, KeyError> {
    std::fs::create_dir_all(out_dir).map_err(|source| KeyError::Io {
        path: out_dir.display().to_string(),
        source,
    })?;
    let private_key = out_dir.join(PRIVATE_KEY_FILE);
    let public_key = out_dir.join(PUBLIC_KEY_FILE);
    for p in [&private_key, &public_key] {
        if p.exists() {
            return Err(KeyError::Exists {
                path: p.display().to_string(),
            });
        }
    }
    let signer = CheckpointSigner::generate();
    let pem = signer
        .key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeyError::Encode(e.to_string()))?;
    let pub_pem = signer
        .key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| KeyError::Encode(e.to_string()))?;
    write_new(&private_key, pem.as_bytes(), 0o600)?;
    write_new(&public_key, pub_pem.as_bytes(), 0o644)?;
    Ok(KeyPairFiles {
        private_key,
        public_key,
        key_id: signer.public_key().key_id(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_writes_a_private_key_only_the_owner_can_read_and_keys_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let files = keygen(dir.path()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&files.private_key)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let signer =
            CheckpointSigner::from_secret_ref(&SecretRef::File(files.private_key.clone())).unwrap();
        let pk = PublicKey::load(&files.public_key).unwrap();
        assert_eq!(pk, signer.public_key());
        assert_eq!(pk.key_id(), files.key_id);
        let cp = signer.sign(7, &[9u8; 32], "2025-01-01T00:00:00.000000Z");
        assert!(pk.verifies(&cp));
        let mut forged = cp.clone();
        forged.seq = 8;
        assert!(!pk.verifies(&forged));
        assert!(matches!(keygen(dir.path()), Err(KeyError::Exists { .. })));
    }
}
