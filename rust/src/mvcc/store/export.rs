//! The store's content read out whole (for a snapshot in etcd's format) and
//! written in whole (for a restore), record by record as the backend holds
//! it. `crate::bbolt` turns these into and out of etcd's bbolt layout; this
//! file knows only redb.

use std::fmt::Write as _;
use std::path::Path;

use prost::Message;
use redb::{Durability, ReadTransaction, ReadableDatabase, TableDefinition};

use super::alarm::ALARM_TABLE;
use super::auth::{ENABLED_KEY, REVISION_KEY};
use super::lease::LEASE_TABLE;
use super::members::{MEMBER_TABLE, REMOVED_TABLE};
use super::{Membership, Store};
use crate::error::EtcdError;
use crate::mvcc::backend::{
    io, KeyTables, AUTH_ROLES_TABLE, AUTH_TABLE, AUTH_USERS_TABLE, CHUNK_TABLE, KEY_TABLE, META_CONSISTENT_INDEX,
    META_CONSISTENT_TERM, META_FINISHED_COMPACT, META_SCHEDULED_COMPACT, META_TABLE,
};
use crate::mvcc::revision::Revision;
use crate::pb::authpb::{Role, User};
use crate::pb::etcdserverpb::Member;
use crate::pb::mvccpb::KeyValue;

/// One consistent point of the backend: a redb read transaction begun while
/// no write batch was open, so every table agrees with the others (the Raft
/// position in `meta` is the one the keys are at). Writers go on meanwhile;
/// redb keeps the pages this view reads until it is dropped.
pub struct StoreView {
    rtx: ReadTransaction,
    /// The file `rtx` reads, kept open even if a defragment replaces it.
    _db: std::sync::Arc<redb::Database>,
}

/// A table's records, (key, value) in key order.
pub type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// The auth store's tables as a view has them, record by record, in key
/// order. Their layout is etcd's own (see `store::auth`), so a snapshot
/// copies them as they are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthRecords {
    /// `authEnabled` (absent until auth was first enabled or disabled) and
    /// `authRevision` (u64 big-endian).
    pub auth: Records,
    /// User name → encoded `authpb.User`.
    pub users: Records,
    /// Role name → encoded `authpb.Role`.
    pub roles: Records,
}

/// The numbers in the `meta` table, as a view has them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ViewMeta {
    pub consistent_index: u64,
    pub consistent_term: u64,
    /// Revision bytes (17), as stored; absent when never compacted.
    pub scheduled_compact: Option<Vec<u8>>,
    pub finished_compact: Option<Vec<u8>>,
}

type BytesTable = TableDefinition<'static, &'static [u8], &'static [u8]>;
type ReadBytesTable = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;
/// Called with each record: revision bytes, encoded KeyValue.
pub type RecordVisit<'v> = dyn FnMut(&[u8], &[u8]) -> Result<(), EtcdError> + 'v;

fn open(rtx: &ReadTransaction, def: BytesTable) -> Result<Option<ReadBytesTable>, EtcdError> {
    match rtx.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(io("open table")(e)),
    }
}

impl Store {
    /// A consistent read view of the whole backend (see [`StoreView`]).
    pub fn view(&self) -> Result<StoreView, EtcdError> {
        let _no_batch = self.state.read();
        let db = self.db.read().clone();
        let rtx = db.begin_read().map_err(io("begin read"))?;
        Ok(StoreView { rtx, _db: db })
    }
}

impl StoreView {
    /// Every key record in revision order, whole (big records' chunks
    /// joined): revision bytes → encoded `mvccpb.KeyValue`.
    pub fn for_each_record(&self, f: &mut RecordVisit<'_>) -> Result<(), EtcdError> {
        let tables = KeyTables {
            records: self.rtx.open_table(KEY_TABLE).map_err(io("open key table"))?,
            chunks: self.rtx.open_table(CHUNK_TABLE).map_err(io("open chunk table"))?,
        };
        for entry in tables.records.range::<&[u8]>(..).map_err(io("scan key table"))? {
            let (k, v) = entry.map_err(io("scan key table"))?;
            f(k.value(), &tables.load(k.value(), v.value())?)?;
        }
        Ok(())
    }

    pub fn meta(&self) -> Result<ViewMeta, EtcdError> {
        let mut out = ViewMeta::default();
        let Some(meta) = open(&self.rtx, META_TABLE)? else { return Ok(out) };
        let get = |name: &[u8]| -> Result<Option<Vec<u8>>, EtcdError> {
            Ok(meta.get(name).map_err(io("read meta"))?.map(|v| v.value().to_vec()))
        };
        let num = |v: Option<Vec<u8>>| -> Result<u64, EtcdError> {
            v.map_or(Ok(0), |b| {
                Ok(u64::from_be_bytes(
                    b.as_slice().try_into().map_err(|_| EtcdError::Internal("mvcc: corrupt meta value".into()))?,
                ))
            })
        };
        out.consistent_index = num(get(META_CONSISTENT_INDEX)?)?;
        out.consistent_term = num(get(META_CONSISTENT_TERM)?)?;
        out.scheduled_compact = get(META_SCHEDULED_COMPACT)?;
        out.finished_compact = get(META_FINISHED_COMPACT)?;
        Ok(out)
    }

    /// Every lease as (ID, granted TTL), in ID byte order.
    pub fn leases(&self) -> Result<Vec<(i64, i64)>, EtcdError> {
        let corrupt = || EtcdError::Internal("mvcc: corrupt lease record".into());
        let Some(table) = open(&self.rtx, LEASE_TABLE)? else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for entry in table.range::<&[u8]>(..).map_err(io("scan lease table"))? {
            let (k, v) = entry.map_err(io("scan lease table"))?;
            let id = i64::from_be_bytes(k.value().try_into().map_err(|_| corrupt())?);
            let ttl = i64::from_be_bytes(v.value().try_into().map_err(|_| corrupt())?);
            out.push((id, ttl));
        }
        Ok(out)
    }

    /// Active alarms as (member ID, alarm type).
    pub fn alarms(&self) -> Result<Vec<(u64, i32)>, EtcdError> {
        let corrupt = || EtcdError::Internal("mvcc: corrupt alarm record".into());
        let Some(table) = open(&self.rtx, ALARM_TABLE)? else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for entry in table.range::<&[u8]>(..).map_err(io("scan alarm table"))? {
            let (k, _) = entry.map_err(io("scan alarm table"))?;
            let k: [u8; 12] = k.value().try_into().map_err(|_| corrupt())?;
            let member = u64::from_be_bytes(k[..8].try_into().map_err(|_| corrupt())?);
            let alarm = i32::from_be_bytes(k[8..].try_into().map_err(|_| corrupt())?);
            out.push((member, alarm));
        }
        Ok(out)
    }

    /// The auth store's records (see [`AuthRecords`]); all empty for a
    /// backend that never opened its auth tables.
    pub fn auth_records(&self) -> Result<AuthRecords, EtcdError> {
        let all = |def: BytesTable, what: &str| -> Result<Records, EtcdError> {
            let Some(table) = open(&self.rtx, def)? else { return Ok(Vec::new()) };
            let mut out = Vec::new();
            for entry in table.range::<&[u8]>(..).map_err(io(what))? {
                let (k, v) = entry.map_err(io(what))?;
                out.push((k.value().to_vec(), v.value().to_vec()));
            }
            Ok(out)
        };
        let mut auth = all(AUTH_TABLE, "scan auth table")?;
        auth.retain(|(k, _)| k.as_slice() == ENABLED_KEY || k.as_slice() == REVISION_KEY);
        Ok(AuthRecords {
            auth,
            users: all(AUTH_USERS_TABLE, "scan auth_users table")?,
            roles: all(AUTH_ROLES_TABLE, "scan auth_roles table")?,
        })
    }

    /// The member list and the IDs removed for good.
    pub fn membership(&self) -> Result<Membership, EtcdError> {
        let mut out = Membership::default();
        if let Ok(members) = self.rtx.open_table(MEMBER_TABLE) {
            for entry in members.range::<u64>(..).map_err(io("scan members table"))? {
                let (id, bytes) = entry.map_err(io("scan members table"))?;
                let member = Member::decode(bytes.value())
                    .map_err(|e| EtcdError::Internal(format!("mvcc: corrupt member record {:x}: {e}", id.value())))?;
                out.members.insert(id.value(), member);
            }
        }
        if let Ok(removed) = self.rtx.open_table(REMOVED_TABLE) {
            for entry in removed.range::<u64>(..).map_err(io("scan removed-members table"))? {
                out.removed.insert(entry.map_err(io("scan removed-members table"))?.0.value());
            }
        }
        Ok(out)
    }
}

/// Writes a new backend file from records handed in one at a time (a
/// restore): what `fill` puts is committed once, durably, when it returns
/// `Ok`; on an error nothing is committed (the caller removes the file).
/// The members table stays empty: a restored member learns its new
/// membership from its first Raft entries, as a new cluster does.
pub fn import_backend(
    path: &Path,
    fill: impl FnOnce(&mut BackendImport<'_>) -> Result<(), EtcdError>,
) -> Result<(), EtcdError> {
    let db = crate::mvcc::backend::open_database(path, None)?;
    let mut tx = db.begin_write().map_err(io("begin write"))?;
    tx.set_durability(Durability::Immediate).map_err(|e| EtcdError::Internal(format!("mvcc: set durability: {e}")))?;
    {
        let mut import = BackendImport {
            keys: KeyTables {
                records: tx.open_table(KEY_TABLE).map_err(io("open key table"))?,
                chunks: tx.open_table(CHUNK_TABLE).map_err(io("open chunk table"))?,
            },
            meta: tx.open_table(META_TABLE).map_err(io("open meta table"))?,
            leases: tx.open_table(LEASE_TABLE).map_err(io("open lease table"))?,
            alarms: tx.open_table(ALARM_TABLE).map_err(io("open alarm table"))?,
            auth: tx.open_table(AUTH_TABLE).map_err(io("open auth table"))?,
            auth_users: tx.open_table(AUTH_USERS_TABLE).map_err(io("open auth_users table"))?,
            auth_roles: tx.open_table(AUTH_ROLES_TABLE).map_err(io("open auth_roles table"))?,
            last: None,
        };
        fill(&mut import)?;
    }
    tx.commit().map_err(io("commit the restored backend"))
}

/// See [`import_backend`].
pub struct BackendImport<'t> {
    keys: KeyTables<redb::Table<'t, &'static [u8], &'static [u8]>>,
    meta: redb::Table<'t, &'static [u8], &'static [u8]>,
    leases: redb::Table<'t, &'static [u8], &'static [u8]>,
    alarms: redb::Table<'t, &'static [u8], &'static [u8]>,
    auth: redb::Table<'t, &'static [u8], &'static [u8]>,
    auth_users: redb::Table<'t, &'static [u8], &'static [u8]>,
    auth_roles: redb::Table<'t, &'static [u8], &'static [u8]>,
    last: Option<Vec<u8>>,
}

impl BackendImport<'_> {
    /// A key record: revision bytes (17, or 18 for a tombstone) → encoded
    /// KeyValue. Records must come in increasing revision order and decode,
    /// or the restore is refused.
    pub fn put_record(&mut self, rev_key: &[u8], record: &[u8]) -> Result<(), EtcdError> {
        let bad = |what: &str| EtcdError::Internal(format!("key record {}: {what}", hex(rev_key)));
        if Revision::from_key(rev_key).is_none() {
            return Err(bad("not a revision"));
        }
        if self.last.as_deref().is_some_and(|l| l >= rev_key) {
            return Err(bad("out of revision order"));
        }
        KeyValue::decode(record).map_err(|e| bad(&format!("not an mvccpb.KeyValue: {e}")))?;
        self.keys.insert(rev_key, record)?;
        self.last = Some(rev_key.to_vec());
        Ok(())
    }

    /// The Raft position the data is at (a restore sets the new cluster's).
    pub fn set_consistent_index(&mut self, index: u64, term: u64) -> Result<(), EtcdError> {
        self.meta.insert(META_CONSISTENT_INDEX, index.to_be_bytes().as_slice()).map_err(io("write meta"))?;
        self.meta.insert(META_CONSISTENT_TERM, term.to_be_bytes().as_slice()).map_err(io("write meta"))?;
        Ok(())
    }

    /// The compaction revisions (revision bytes, as etcd's meta holds them).
    pub fn set_compaction(&mut self, scheduled: Option<&[u8]>, finished: Option<&[u8]>) -> Result<(), EtcdError> {
        for (name, value) in [(META_SCHEDULED_COMPACT, scheduled), (META_FINISHED_COMPACT, finished)] {
            if let Some(v) = value {
                if Revision::from_key(v).is_none() {
                    return Err(EtcdError::Internal(format!("meta {}: not a revision", String::from_utf8_lossy(name))));
                }
                self.meta.insert(name, v).map_err(io("write meta"))?;
            }
        }
        Ok(())
    }

    pub fn put_lease(&mut self, id: i64, ttl: i64) -> Result<(), EtcdError> {
        self.leases
            .insert(id.to_be_bytes().as_slice(), ttl.to_be_bytes().as_slice())
            .map_err(io("write lease record"))?;
        Ok(())
    }

    pub fn put_alarm(&mut self, member: u64, alarm: i32) -> Result<(), EtcdError> {
        let mut k = [0u8; 12];
        k[..8].copy_from_slice(&member.to_be_bytes());
        k[8..].copy_from_slice(&alarm.to_be_bytes());
        self.alarms.insert(k.as_slice(), [].as_slice()).map_err(io("write alarm"))?;
        Ok(())
    }
}

impl BackendImport<'_> {
    /// The auth flag (None: never enabled or disabled, so no record, as
    /// etcd keeps it) and the auth revision (0 is stored as etcd's first, 1).
    pub fn set_auth(&mut self, enabled: Option<bool>, revision: u64) -> Result<(), EtcdError> {
        if let Some(on) = enabled {
            self.auth.insert(ENABLED_KEY, [u8::from(on)].as_slice()).map_err(io("write auth flag"))?;
        }
        self.auth.insert(REVISION_KEY, revision.max(1).to_be_bytes().as_slice()).map_err(io("write auth revision"))?;
        Ok(())
    }

    /// A user, keyed by its name as the auth store keys it.
    pub fn put_auth_user(&mut self, user: &User) -> Result<(), EtcdError> {
        self.auth_users.insert(&user.name[..], user.encode_to_vec().as_slice()).map_err(io("write user"))?;
        Ok(())
    }

    /// A role, keyed by its name.
    pub fn put_auth_role(&mut self, role: &Role) -> Result<(), EtcdError> {
        self.auth_roles.insert(&role.name[..], role.encode_to_vec().as_slice()).map_err(io("write role"))?;
        Ok(())
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::with_capacity(b.len() * 2), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}
