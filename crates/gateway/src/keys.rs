//! Virtual keys: one per agent, issued by `palisade keys create`, stored as SHA-256 only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use rand::RngCore;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Prefix of every Palisade agent key.
pub const KEY_PREFIX: &str = "pal_";

/// Errors of the key store.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// The database could not be opened or queried.
    #[error("key store `{path}`: {source}")]
    Db {
        /// Database file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The data directory could not be created.
    #[error("key store: cannot create data directory `{path}`: {source}")]
    DataDir {
        /// Directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// No key with that id.
    #[error("no key with id `{0}`")]
    UnknownKey(String),
    /// An agent name is required and must be a plain identifier.
    #[error("invalid {field} `{value}`: use letters, digits, `-`, `_` or `.` (1-64 characters)")]
    InvalidName {
        /// Which field.
        field: &'static str,
        /// The value.
        value: String,
    },
}

/// A stored key (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyRecord {
    /// Public key id (the 8 characters after the prefix).
    pub id: String,
    /// Agent bound to the key.
    pub agent: String,
    /// Role bound to the key.
    pub role: Option<String>,
    /// Workflow bound to the key.
    pub workflow: Option<String>,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// RFC 3339 revocation time.
    pub revoked_at: Option<String>,
}

/// A freshly created key: the only time the secret is available.
#[derive(Debug)]
pub struct NewKey {
    /// The key to hand to the agent (print once).
    pub key: String,
    /// Its record.
    pub record: KeyRecord,
}

/// The key store: `<data_dir>/keys.db`.
pub struct KeyStore {
    path: PathBuf,
    conn: Mutex<Connection>,
    cache: Mutex<Cache>,
    /// The store's WAL-index (`keys.db-shm`), read to notice changes without a SQLite read
    /// transaction (see [`KeyStore::authenticate`]); `None` if it could not be opened.
    shm: Option<std::fs::File>,
    /// Lookups that went to SQLite (tests check the cache with it).
    #[cfg(test)]
    lookups: std::sync::atomic::AtomicUsize,
}

/// Bytes of the WAL-index header compared: its first copy (SQLite's WAL file format,
/// "The WAL-Index Header": version, change counter, `mxFrame`, page count, checksums and
/// salts). Every commit to the database, from any connection, rewrites it.
const SHM_STAMP_LEN: usize = 48;

type Stamp = [u8; SHM_STAMP_LEN];

/// What the cache entries were read under: the store changed when it differs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    /// The WAL-index header.
    Stamp(Stamp),
    /// Without a WAL-index: SQLite's `data_version`.
    Data(i64),
}

#[derive(Default)]
struct Cache {
    version: Option<Version>,
    by_hash: HashMap<[u8; 32], Option<KeyRecord>>,
}

impl Cache {
    /// The cached answer for `h` under `version` (the cache is dropped first if the
    /// store changed).
    fn get(&mut self, version: Version, h: &[u8; 32]) -> Option<Option<KeyRecord>> {
        if self.version != Some(version) {
            self.by_hash.clear();
            self.version = Some(version);
            return None;
        }
        self.by_hash.get(h).cloned()
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl KeyStore {
    /// Opens (creating if needed) the key store in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<KeyStore, KeyStoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| KeyStoreError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join("keys.db");
        let db = |source| KeyStoreError::Db {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE IF NOT EXISTS keys (
                id TEXT PRIMARY KEY,
                hash BLOB NOT NULL UNIQUE,
                agent TEXT NOT NULL,
                role TEXT,
                workflow TEXT,
                created_at TEXT NOT NULL,
                revoked_at TEXT
             );",
        )
        .map_err(db)?;
        // The WAL-index exists while a connection has the database open in WAL mode (this
        // one, for the store's lifetime).
        let mut shm_path = path.clone().into_os_string();
        shm_path.push("-shm");
        let shm = std::fs::File::open(shm_path).ok();
        Ok(KeyStore {
            path,
            conn: Mutex::new(conn),
            cache: Mutex::new(Cache::default()),
            shm,
            #[cfg(test)]
            lookups: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// The WAL-index header now (`None`: no WAL-index, or it could not be read).
    fn stamp(&self) -> Option<Stamp> {
        use std::os::unix::fs::FileExt;
        let mut b = [0u8; SHM_STAMP_LEN];
        self.shm.as_ref()?.read_exact_at(&mut b, 0).ok()?;
        Some(b)
    }

    fn db_err(&self, source: rusqlite::Error) -> KeyStoreError {
        KeyStoreError::Db {
            path: self.path.clone(),
            source,
        }
    }

    /// Creates a key for `agent`. The returned key is shown once; only its hash is stored.
    pub fn create(
        &self,
        agent: &str,
        role: Option<&str>,
        workflow: Option<&str>,
    ) -> Result<NewKey, KeyStoreError> {
        for (field, value) in [
            ("agent", Some(agent)),
            ("role", role),
            ("workflow", workflow),
        ] {
            if let Some(v) = value {
                if !valid_name(v) {
                    return Err(KeyStoreError::InvalidName {
                        field,
                        value: v.to_owned(),
                    });
                }
            }
        }
        let mut raw = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut raw);
        let mut idb = [0u8; 4];
        rand::thread_rng().fill_bytes(&mut idb);
        let id = hex::encode(idb);
        let key = format!("{KEY_PREFIX}{id}_{}", hex::encode(raw));
        let record = KeyRecord {
            id: id.clone(),
            agent: agent.to_owned(),
            role: role.map(str::to_owned),
            workflow: workflow.map(str::to_owned),
            created_at: now_rfc3339(),
            revoked_at: None,
        };
        self.conn
            .lock()
            .execute(
                "INSERT INTO keys (id, hash, agent, role, workflow, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![record.id, hash_key(&key).to_vec(), record.agent, record.role, record.workflow, record.created_at],
            )
            .map_err(|e| self.db_err(e))?;
        Ok(NewKey { key, record })
    }

    /// Every key, newest first.
    pub fn list(&self) -> Result<Vec<KeyRecord>, KeyStoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare("SELECT id, agent, role, workflow, created_at, revoked_at FROM keys ORDER BY created_at DESC, id")
            .map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map([], row_to_record)
            .map_err(|e| self.db_err(e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.db_err(e))
    }

    /// Revokes a key by id; takes effect on the next request of a running gateway.
    pub fn revoke(&self, id: &str) -> Result<KeyRecord, KeyStoreError> {
        let conn = self.conn.lock();
        let n = conn
            .execute(
                "UPDATE keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, now_rfc3339()],
            )
            .map_err(|e| self.db_err(e))?;
        let rec = conn
            .query_row(
                "SELECT id, agent, role, workflow, created_at, revoked_at FROM keys WHERE id = ?1",
                params![id],
                row_to_record,
            )
            .optional()
            .map_err(|e| self.db_err(e))?;
        // (the WAL-index header changes too; this covers a store without one)
        self.cache.lock().by_hash.clear();
        match rec {
            Some(r) => {
                let _ = n;
                Ok(r)
            }
            None => Err(KeyStoreError::UnknownKey(id.to_owned())),
        }
    }

    /// Looks a presented key up. `Ok(None)` for unknown or revoked keys.
    ///
    /// Cached. The cache is dropped whenever the store changed (a key created or revoked by
    /// the CLI, or by this handle), so a revoked key is refused from the next request on.
    /// The change check reads the first bytes of SQLite's WAL-index (`keys.db-shm`, one
    /// `pread`): every commit rewrites its header, and a read costs no SQLite read
    /// transaction, no file lock and no wait on the connection. Without a WAL-index it
    /// falls back to `PRAGMA data_version` on every call.
    pub fn authenticate(&self, presented: &str) -> Result<Option<KeyRecord>, KeyStoreError> {
        if !presented.starts_with(KEY_PREFIX) {
            return Ok(None);
        }
        let h = hash_key(presented);
        // Read before the lookup: an entry is cached only under the version it was read
        // after, so a change that lands meanwhile drops it on the next call.
        let mut conn = None;
        let version = match self.stamp() {
            Some(s) => Version::Stamp(s),
            None => {
                let c = self.conn.lock();
                // Prepared once per connection (statement cache).
                let v = c
                    .prepare_cached("PRAGMA data_version")
                    .and_then(|mut st| st.query_row([], |r| r.get(0)))
                    .map_err(|e| self.db_err(e))?;
                conn = Some(c);
                Version::Data(v)
            }
        };
        if let Some(hit) = self.cache.lock().get(version, &h) {
            return Ok(hit);
        }
        let conn = conn.unwrap_or_else(|| self.conn.lock());
        #[cfg(test)]
        self.lookups
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let rec = conn
            .prepare_cached(
                "SELECT id, agent, role, workflow, created_at, revoked_at FROM keys WHERE hash = ?1",
            )
            .and_then(|mut st| st.query_row(params![h.as_slice()], row_to_record))
            .optional()
            .map_err(|e| self.db_err(e))?
            .filter(|r| r.revoked_at.is_none());
        drop(conn);
        let mut cache = self.cache.lock();
        // another call saw a newer version meanwhile: this answer may be older than it
        if cache.version != Some(version) {
            return Ok(rec);
        }
        if cache.by_hash.len() > 100_000 {
            cache.by_hash.clear();
        }
        cache.by_hash.insert(h, rec.clone());
        Ok(rec)
    }
}

fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRecord> {
    Ok(KeyRecord {
        id: r.get(0)?,
        agent: r.get(1)?,
        role: r.get(2)?,
        workflow: r.get(3)?,
        created_at: r.get(4)?,
        revoked_at: r.get(5)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_authenticate_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path()).unwrap();
        let k = store
            .create("planner", Some("planner"), Some("wf"))
            .unwrap();
        assert!(k.key.starts_with(KEY_PREFIX));
        let rec = store.authenticate(&k.key).unwrap().unwrap();
        assert_eq!(rec.agent, "planner");
        assert_eq!(rec.workflow.as_deref(), Some("wf"));
        assert_eq!(store.authenticate("pal_nope").unwrap(), None);
        // A second handle (the CLI) revokes; the first notices on the next lookup.
        let other = KeyStore::open(dir.path()).unwrap();
        other.revoke(&rec.id).unwrap();
        assert_eq!(store.authenticate(&k.key).unwrap(), None);
        assert_eq!(store.list().unwrap()[0].id, rec.id);
        assert!(matches!(
            store.revoke("zzzz"),
            Err(KeyStoreError::UnknownKey(_))
        ));
    }

    #[test]
    fn lookups_are_cached_until_the_store_changes() {
        use std::sync::atomic::Ordering::Relaxed;
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path()).unwrap();
        assert!(
            store.shm.is_some(),
            "the WAL-index is read for the change check"
        );
        let k = store.create("planner", None, None).unwrap();
        let before = store.lookups.load(Relaxed);
        for _ in 0..3 {
            assert_eq!(
                store.authenticate(&k.key).unwrap().unwrap().agent,
                "planner"
            );
        }
        assert_eq!(
            store.lookups.load(Relaxed),
            before + 1,
            "one SQLite lookup, then the cache"
        );
        // Any commit by another connection drops the cache, even one about another key.
        let other = KeyStore::open(dir.path()).unwrap();
        other.create("coder", None, None).unwrap();
        assert!(store.authenticate(&k.key).unwrap().is_some());
        assert_eq!(store.lookups.load(Relaxed), before + 2);
        assert!(store.authenticate(&k.key).unwrap().is_some());
        assert_eq!(store.lookups.load(Relaxed), before + 2);
        // Unknown keys are cached as unknown, and a key created later is found.
        let late = other.create("late", None, None).unwrap();
        assert!(store.authenticate(&late.key).unwrap().is_some());
    }

    #[test]
    fn a_revocation_through_the_same_handle_is_seen_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path()).unwrap();
        let k = store.create("planner", None, None).unwrap();
        assert!(store.authenticate(&k.key).unwrap().is_some());
        store.revoke(&k.record.id).unwrap();
        assert_eq!(store.authenticate(&k.key).unwrap(), None);
    }

    #[test]
    fn only_the_hash_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path()).unwrap();
        let k = store.create("a", None, None).unwrap();
        drop(store);
        let bytes = std::fs::read(dir.path().join("keys.db")).unwrap();
        let secret_part = k.key.rsplit('_').next().unwrap().as_bytes().to_vec();
        assert!(
            !bytes
                .windows(secret_part.len())
                .any(|w| w == secret_part.as_slice())
        );
    }

    #[test]
    fn rejects_bad_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path()).unwrap();
        assert!(matches!(
            store.create("bad name", None, None),
            Err(KeyStoreError::InvalidName { field: "agent", .. })
        ));
    }
}
