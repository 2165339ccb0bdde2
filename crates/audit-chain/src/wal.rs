//! WAL checkpoints off the commit path.
//!
//! SQLite's automatic checkpoint runs inside the commit that takes the WAL past 1,000 pages:
//! that commit copies the WAL back into the database and fsyncs both files, and every
//! `durability: sync` request waiting for it waits too (a stall of several milliseconds,
//! about one commit in a hundred: the p99 latency of a gateway at one connection). This
//! thread, on its own connection, runs a `PASSIVE` checkpoint (which never blocks the
//! writer) at most every [`crate::WriterConfig::wal_checkpoint_every`] after a commit. The
//! writer connection of [`crate::AuditWriter::open`] keeps an automatic checkpoint at a
//! higher threshold (4,096 pages) only to let the WAL start over (a `PASSIVE` checkpoint on
//! another connection cannot, while the writer keeps appending): it finds the frames copied
//! already. Durability is unchanged: a commit is in the WAL either way.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use rusqlite::Connection;

use crate::store::{StoreError, sqlite_err};

/// Requests from other threads, under one lock.
#[derive(Default)]
struct State {
    /// Stop the thread.
    stop: bool,
    /// Forced runs asked for (tests: `WalCheckpointer::run_now`) and finished.
    asked: u64,
    done: u64,
}

struct Shared {
    /// Something was committed since the last checkpoint.
    dirty: AtomicBool,
    state: Mutex<State>,
    /// Wakes the thread (stop, forced run) and the callers of a forced run.
    cv: Condvar,
}

/// The checkpoint thread of one database; stops and joins when dropped.
pub(crate) struct WalCheckpointer {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WalCheckpointer {
    /// Opens a second connection to `db` and starts the thread.
    pub(crate) fn start(db: &Path, every: Duration) -> Result<WalCheckpointer, StoreError> {
        let shown = db.display().to_string();
        let err = |op| sqlite_err(&shown, op);
        let conn = Connection::open(db).map_err(err("open the checkpoint connection"))?;
        conn.busy_timeout(Duration::from_secs(2))
            .map_err(err("set busy timeout"))?;
        // The checkpoint reads WAL frames and writes database pages; it needs no cache.
        conn.pragma_update(None, "cache_size", -64i64)
            .map_err(err("set cache size"))?;
        let shared = Arc::new(Shared {
            dirty: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
        });
        let task = Task {
            conn,
            path: db.to_path_buf(),
            every,
            shared: Arc::clone(&shared),
            failing: false,
        };
        let thread = std::thread::Builder::new()
            .name("palisade-audit-wal".to_owned())
            .spawn(move || task.run())
            .map_err(|e| StoreError::Refused(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(WalCheckpointer {
            shared,
            thread: Some(thread),
        })
    }

    /// Notes a commit (no wake-up: the thread looks at its next tick).
    pub(crate) fn committed(&self) {
        self.shared.dirty.store(true, Ordering::Release);
    }

    /// Runs a checkpoint now and waits for it (tests).
    #[cfg(test)]
    pub(crate) fn run_now(&self) {
        let mut st = self.shared.state.lock();
        st.asked += 1;
        let want = st.asked;
        self.shared.cv.notify_all();
        while st.done < want && !st.stop {
            self.shared.cv.wait(&mut st);
        }
    }
}

impl Drop for WalCheckpointer {
    fn drop(&mut self) {
        self.shared.state.lock().stop = true;
        self.shared.cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Task {
    conn: Connection,
    path: PathBuf,
    every: Duration,
    shared: Arc<Shared>,
    /// The last checkpoint failed (logged once per streak).
    failing: bool,
}

impl Task {
    fn run(mut self) {
        let shared = Arc::clone(&self.shared);
        let mut st = shared.state.lock();
        loop {
            if st.stop {
                break;
            }
            let forced = st.asked > st.done;
            if !forced {
                // a forced run or a stop ends the wait early
                let _ = shared.cv.wait_for(&mut st, self.every);
                if st.stop {
                    break;
                }
            }
            let asked = st.asked;
            let due = asked > st.done || shared.dirty.swap(false, Ordering::AcqRel);
            if !due {
                continue;
            }
            drop(st);
            self.checkpoint();
            st = shared.state.lock();
            st.done = asked;
            shared.cv.notify_all();
        }
    }

    /// One `PASSIVE` checkpoint: copies what it can without waiting for the writer or
    /// readers; what is left is copied by a later one. A failure is retried at the next
    /// tick and logged once per streak (a failing disk would log at every tick).
    fn checkpoint(&mut self) {
        // (its row, busy / WAL frames / frames copied, is not needed: the next tick
        // copies what is left)
        let res = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        match (res, self.failing) {
            (Ok(()), false) => {}
            (Ok(()), true) => {
                self.failing = false;
                tracing::info!(db = %self.path.display(), "audit WAL checkpoint succeeded again");
            }
            (Err(e), failing) => {
                self.shared.dirty.store(true, Ordering::Release);
                if !failing {
                    self.failing = true;
                    tracing::warn!(db = %self.path.display(), error = %e, "audit WAL checkpoint failed; retried at every tick until it succeeds");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EventStore, SqliteOptions, SqliteStore, StoredEvent, db_path};

    fn event(seq: u64, prev: [u8; 32]) -> StoredEvent {
        StoredEvent {
            seq,
            id: format!("id-{seq}"),
            time: "2026-11-22T00:00:00Z".to_owned(),
            conversation: "c".to_owned(),
            agent: "a".to_owned(),
            workflow: None,
            decision: "ALLOW".to_owned(),
            event: vec![b'x'; 3000],
            prev_hash: prev.to_vec(),
            hash: [seq as u8; 32].to_vec(),
        }
    }

    /// A store whose writer checkpoints at `autocheckpoint` pages, and a checkpoint thread
    /// that runs only when asked (its tick is an hour).
    fn setup(
        autocheckpoint: u32,
    ) -> (
        tempfile::TempDir,
        std::path::PathBuf,
        SqliteStore,
        WalCheckpointer,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let db = db_path(dir.path());
        let store = SqliteStore::open(&db, SqliteOptions::default()).unwrap();
        store.set_autocheckpoint(autocheckpoint).unwrap();
        let wal = WalCheckpointer::start(&db, Duration::from_secs(3600)).unwrap();
        (dir, db, store, wal)
    }

    /// Commits `n` events after the store's head, one transaction each, telling `wal`.
    fn commit(store: &mut SqliteStore, wal: &WalCheckpointer, n: u64) {
        let head = store.head().unwrap();
        let (mut seq, mut prev) = head.map_or((0, [0u8; 32]), |h| (h.seq, h.hash));
        for _ in 0..n {
            seq += 1;
            store.begin().unwrap();
            store.insert_event(&event(seq, prev)).unwrap();
            store.commit().unwrap();
            prev = [seq as u8; 32];
            wal.committed();
        }
    }

    #[test]
    fn the_thread_copies_the_wal_into_the_database_and_the_commits_do_not() {
        let (_dir, db, mut store, wal) = setup(100_000);
        let size = || std::fs::metadata(&db).unwrap().len();
        let empty = size();
        // 1,500 commits of a page each: past SQLite's default automatic checkpoint (1,000
        // pages), which would have grown the database file.
        commit(&mut store, &wal, 1500);
        assert_eq!(size(), empty, "no commit copied the WAL into the database");
        wal.run_now();
        assert!(size() > empty + 1500 * 3000, "{} bytes", size());
        // the thread stops and the store stays usable
        drop(wal);
        assert_eq!(store.head().unwrap().unwrap().seq, 1500);
    }

    #[test]
    fn the_writers_own_checkpoint_lets_the_wal_start_over() {
        // The WAL restarts from its beginning only at a write transaction that follows a
        // checkpoint that copied every frame. A reader (export, tail) pinned on an older
        // snapshot stops the thread's checkpoint short of the newest frames, and the writer
        // appends again before another one runs: without the writer's own checkpoint (here
        // at 64 pages) the WAL file would keep every commit (about 40 MiB).
        let (_dir, db, mut store, wal) = setup(64);
        let reader = rusqlite::Connection::open(&db).unwrap();
        for _ in 0..30 {
            reader.execute_batch("BEGIN").unwrap();
            let _: i64 = reader
                .query_row("SELECT count(*) FROM audit_events", [], |r| r.get(0))
                .unwrap();
            commit(&mut store, &wal, 10);
            wal.run_now();
            reader.execute_batch("COMMIT").unwrap();
            commit(&mut store, &wal, 40);
        }
        let mut wal_file = db.clone().into_os_string();
        wal_file.push("-wal");
        let len = std::fs::metadata(&wal_file).unwrap().len();
        assert!(len < 2 << 20, "the WAL grew to {len} bytes");
    }
}
