//! Defragment without stopping the store (etcd's Defragment, which in etcd
//! holds every read and write for the whole rewrite: etcd-io/etcd#9222).
//!
//! redb's own `compact()` needs the `Database` to itself, so it would stop
//! the store just as bbolt's defrag stops etcd. Instead the store is copied
//! into a fresh file beside the live one while it serves, and the copy is
//! swapped in:
//!
//! ```text
//!  1. bulk      physical compaction paused (so the key tables only grow, at
//!               their end); every table copied from one read snapshot into
//!               <db>.defrag, in key order, in bounded transactions
//!               ── nothing locked: reads and writes go on
//!  2. catch-up  rounds copy the key records written meanwhile (they sort
//!               after the last one copied), each from a newer snapshot,
//!               until a round finds fewer than CATCH_UP_ENOUGH; a durable
//!               commit of the copy
//!               ── nothing locked
//!  3. switch    the writer lock: apply batches wait, readers go on (on the
//!               old file, which nobody changes now). The last records, the
//!               small tables again whole, one durable commit, the copy
//!               renamed over the live file; then the state lock for as long
//!               as a pointer swap takes; the directory synced. The old
//!               file is closed after the writer lock is let go.
//!               ── writes wait for one short batch, reads for the swap
//! ```
//!
//! The catch-up relies on two facts of the key tables: a write only ever
//! adds records at a revision above every earlier one, and only physical
//! compaction removes records (paused here). The other tables are small
//! (members, leases, alarms, auth, meta), so step 3 copies them again whole
//! instead of tracking their changes.
//!
//! **Crash.** Before the rename the live file is untouched and the copy is
//! removed when the store opens; after it the copy, synced before the
//! rename, is the store.
//!
//! **Restore.** A Raft snapshot installed meanwhile replaces the file the
//! copy came from; step 3 notices (`generation`) and drops the copy, since
//! the installed file is freshly written anyway.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadTransaction, ReadableDatabase, TableDefinition, TableHandle, WriteTransaction};

use super::alarm::ALARM_TABLE;
use super::lease::LEASE_TABLE;
use super::members::{MEMBER_TABLE, REMOVED_TABLE};
use super::Store;
use crate::error::EtcdError;
use crate::logging::humanize_bytes;
use crate::mvcc::backend::{
    io, open_database, AUTH_ROLES_TABLE, AUTH_TABLE, AUTH_USERS_TABLE, CHUNK_TABLE, KEY_TABLE, META_TABLE,
};

type BytesTable = TableDefinition<'static, &'static [u8], &'static [u8]>;

/// The tables copied again whole at the switch: small, and changed in place.
const SMALL_TABLES: [BytesTable; 6] =
    [META_TABLE, LEASE_TABLE, ALARM_TABLE, AUTH_TABLE, AUTH_USERS_TABLE, AUTH_ROLES_TABLE];

/// The tables that only grow at their end while compaction is paused.
const GROWING_TABLES: [BytesTable; 2] = [KEY_TABLE, CHUNK_TABLE];

/// Records per transaction of the copy: bounds its memory (a redb write
/// transaction keeps its dirty pages until commit).
const COPY_BATCH: usize = 20_000;

/// A catch-up round that found fewer new records than this ends the
/// catch-up: the switch then copies at most about this many with writes held.
const CATCH_UP_ENOUGH: usize = 1_000;

/// Catch-up rounds at most (under a write load faster than the copy, the
/// switch takes what is left).
const CATCH_UP_ROUNDS: usize = 16;

/// Where the copy is written, beside the live file.
pub(super) fn copy_path(live: &Path) -> PathBuf {
    let mut name = live.as_os_str().to_owned();
    name.push(".defrag");
    PathBuf::from(name)
}

/// The copy being built: the new file and, per growing table, the first key
/// not yet copied.
struct NewFile {
    db: Database,
    path: PathBuf,
    cursors: [Vec<u8>; GROWING_TABLES.len()],
}

impl Store {
    /// etcd's Defragment: rewrites the backend into a fresh file holding no
    /// free pages, while reads and writes go on (see the module doc).
    /// Physical compactions wait until it is done.
    pub fn defragment(&self) -> Result<(), EtcdError> {
        let _one_at_a_time = self.defrag.lock();
        self.check_failed()?;
        let started = Instant::now();
        let (size, in_use) = (self.db_size(), self.db_size_in_use());
        crate::log_info!(
            "defragmenting";
            "path" => self.path.display().to_string(),
            "current-db-size-bytes" => size,
            "current-db-size" => humanize_bytes(size),
            "current-db-size-in-use-bytes" => in_use,
            "current-db-size-in-use" => humanize_bytes(in_use),
        );
        crate::metrics::DEFRAG_INFLIGHT.set(1);
        let generation = self.generation.load(Ordering::Acquire);
        self.compactions.pause(true);
        let result = self.defragment_paused(generation);
        self.compactions.pause(false);
        crate::metrics::DEFRAG_INFLIGHT.set(0);
        let held = match result {
            Ok(held) => held,
            Err(e) => {
                let _ = std::fs::remove_file(copy_path(&self.path));
                return Err(e);
            }
        };
        let took = started.elapsed();
        crate::metrics::BACKEND_DEFRAG.observe(took);
        let (size2, in_use2) = (self.db_size(), self.db_size_in_use());
        crate::log_info!(
            "finished defragmenting directory";
            "path" => self.path.display().to_string(),
            "current-db-size-bytes-diff" => size2.cast_signed() - size.cast_signed(),
            "current-db-size-bytes" => size2,
            "current-db-size" => humanize_bytes(size2),
            "current-db-size-in-use-bytes-diff" => in_use2.cast_signed() - in_use.cast_signed(),
            "current-db-size-in-use-bytes" => in_use2,
            "current-db-size-in-use" => humanize_bytes(in_use2),
            "took" => took,
            // ketch's own: how long apply batches waited for the switch.
            "writes-held" => held,
        );
        Ok(())
    }

    /// Returns how long the switch held writers off.
    fn defragment_paused(&self, generation: u64) -> Result<Duration, EtcdError> {
        let path = copy_path(&self.path);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.defrag_error("removing an old copy", &e)),
        }
        let mut copy =
            NewFile { db: open_database(&path, self.opts.backend.as_ref())?, path, cursors: Default::default() };

        // 1. bulk: every table from one snapshot.
        let rtx = self.db.read().begin_read().map_err(io("begin read"))?;
        check_known_tables(&rtx)?;
        for (i, def) in GROWING_TABLES.into_iter().enumerate() {
            copy_from(&rtx, &copy.db, def, &mut copy.cursors[i])?;
        }
        let wtx = copy.db.begin_write().map_err(io("begin write"))?;
        copy_small_tables(&rtx, &wtx)?;
        for def in GROWING_TABLES {
            // An empty table exists too (the store opens each one it reads).
            if rtx.open_table(def).is_ok() {
                wtx.open_table(def).map_err(io("create table"))?;
            }
        }
        commit(wtx, Durability::None)?;
        drop(rtx);

        #[cfg(test)]
        if let Some(hook) = self.defrag_hook.lock().take() {
            hook();
        }

        // 2. catch-up.
        for _ in 0..CATCH_UP_ROUNDS {
            let rtx = self.db.read().begin_read().map_err(io("begin read"))?;
            let mut copied = 0;
            for (i, def) in GROWING_TABLES.into_iter().enumerate() {
                copied += copy_from(&rtx, &copy.db, def, &mut copy.cursors[i])?;
            }
            if copied < CATCH_UP_ENOUGH {
                break;
            }
        }
        make_copy_durable(&copy.db)?;

        // 3. switch. The old file is closed once writers are let in again:
        // redb's close writes and syncs it.
        let switching = Instant::now();
        let old = self.switch(copy, generation)?;
        let held = switching.elapsed();
        drop(old);
        Ok(held)
    }

    /// Step 3 (see the module doc). Returns the replaced `Database` (None:
    /// a restore replaced the store meanwhile and the copy is dropped).
    fn switch(&self, mut copy: NewFile, generation: u64) -> Result<Option<Arc<Database>>, EtcdError> {
        let _no_batch = self.writer.lock();
        if self.generation.load(Ordering::Acquire) != generation {
            crate::log_info!("defragment: a snapshot replaced the backend meanwhile; its copy is dropped");
            drop(copy.db);
            let _ = std::fs::remove_file(&copy.path);
            return Ok(None);
        }
        self.check_failed()?;
        let rtx = self.db.read().begin_read().map_err(io("begin read"))?;
        for (i, def) in GROWING_TABLES.into_iter().enumerate() {
            copy_from(&rtx, &copy.db, def, &mut copy.cursors[i])?;
        }
        let wtx = copy.db.begin_write().map_err(io("begin write"))?;
        copy_small_tables(&rtx, &wtx)?;
        check_known_tables(&rtx)?;
        drop(rtx);
        commit(wtx, Durability::Immediate)?;
        std::fs::rename(&copy.path, &self.path).map_err(|e| self.defrag_error("moving the copy into place", &e))?;
        // From here on the copy is the store, whatever else fails.
        let old = {
            // Readers hold the state lock for as long as they read: once it
            // is ours none reads the old file, and the next reads the new.
            let _no_reader = self.state.write();
            std::mem::replace(&mut *self.db.write(), Arc::new(copy.db))
        };
        // Everything committed is in the new file, durably.
        self.durable_index.store(self.consistent.lock().0, Ordering::Release);
        self.dirty.store(false, Ordering::Release);
        self.quota.lock().counted_at = None;
        if let Some(dir) = self.path.parent() {
            // Unsynced, the rename may be undone by a crash, and the old file
            // lacks what the WAL may now drop: take no more writes.
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| self.fail(self.defrag_error("syncing the data dir", &e)))?;
        }
        // The old file (unlinked now) closes when the caller drops this, or
        // when the last view that holds it is dropped.
        Ok(Some(old))
    }

    fn defrag_error(&self, what: &str, e: &dyn std::fmt::Display) -> EtcdError {
        EtcdError::Internal(format!("mvcc: defragment {}: {what}: {e}", self.path.display()))
    }
}

/// Refuses a backend with a table this module does not know: a defragment
/// must never drop a table someone added without adding it here.
fn check_known_tables(rtx: &ReadTransaction) -> Result<(), EtcdError> {
    let known: Vec<&str> = GROWING_TABLES
        .iter()
        .chain(SMALL_TABLES.iter())
        .map(TableHandle::name)
        .chain([MEMBER_TABLE.name(), REMOVED_TABLE.name()])
        .collect();
    for table in rtx.list_tables().map_err(io("list tables"))? {
        if !known.contains(&table.name()) {
            return Err(EtcdError::Internal(format!(
                "mvcc: defragment: the backend holds table {:?}, which defragment does not know how to copy",
                table.name()
            )));
        }
    }
    Ok(())
}

/// Copies `def`'s records from `*cursor` on into `to`, in transactions of
/// [`COPY_BATCH`] records (non-durable); moves the cursor past the last
/// one. Returns how many were copied.
fn copy_from(rtx: &ReadTransaction, to: &Database, def: BytesTable, cursor: &mut Vec<u8>) -> Result<usize, EtcdError> {
    let from = match rtx.open_table(def) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(io("open table")(e)),
    };
    let mut copied = 0;
    let mut records = from.range::<&[u8]>(cursor.as_slice()..).map_err(io("scan table"))?.peekable();
    while records.peek().is_some() {
        let wtx = to.begin_write().map_err(io("begin write"))?;
        {
            let mut table = wtx.open_table(def).map_err(io("open table"))?;
            for entry in records.by_ref().take(COPY_BATCH) {
                let (k, v) = entry.map_err(io("scan table"))?;
                table.insert(k.value(), v.value()).map_err(io("copy record"))?;
                cursor.clear();
                cursor.extend_from_slice(k.value());
                // The smallest key after this one.
                cursor.push(0);
                copied += 1;
            }
        }
        commit(wtx, Durability::None)?;
    }
    Ok(copied)
}

/// The small tables and the member tables, replaced whole in `to`.
fn copy_small_tables(rtx: &ReadTransaction, to: &WriteTransaction) -> Result<(), EtcdError> {
    for def in SMALL_TABLES {
        replace_table(rtx, to, def)?;
    }
    replace_table(rtx, to, MEMBER_TABLE)?;
    replace_table(rtx, to, REMOVED_TABLE)
}

fn replace_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    rtx: &ReadTransaction,
    to: &WriteTransaction,
    def: TableDefinition<'static, K, V>,
) -> Result<(), EtcdError> {
    to.delete_table(def).map_err(io("clear table"))?;
    let from = match rtx.open_table(def) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(io("open table")(e)),
    };
    let mut table = to.open_table(def).map_err(io("open table"))?;
    for entry in from.range::<K::SelfType<'_>>(..).map_err(io("scan table"))? {
        let (k, v) = entry.map_err(io("scan table"))?;
        table.insert(k.value(), v.value()).map_err(io("copy record"))?;
    }
    Ok(())
}

fn make_copy_durable(db: &Database) -> Result<(), EtcdError> {
    commit(db.begin_write().map_err(io("begin write"))?, Durability::Immediate)
}

fn commit(mut wtx: WriteTransaction, durability: Durability) -> Result<(), EtcdError> {
    wtx.set_durability(durability).map_err(|e| EtcdError::Internal(format!("mvcc: set durability: {e}")))?;
    wtx.commit().map_err(io("commit the copy"))
}
