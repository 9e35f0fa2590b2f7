//! etcd's backend buckets (see the module doc): written from a read view
//! of ketch's store, and read back from any etcd 3.4/3.5 snapshot.

use std::fmt::Write as _;
use std::path::Path;

use prost::Message;
use sha2::{Digest, Sha256};

use super::crc32c::Crc32c;
use super::reader::BboltFile;
use super::writer::BboltWriter;
use super::SnapshotError;
use crate::mvcc::StoreView;
use crate::pb::etcdserverpb::{AlarmMember, Member};

/// etcd's leasepb.Lease (lease/leasepb/lease.proto).
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseRecord {
    #[prost(int64, tag = "1")]
    pub id: i64,
    #[prost(int64, tag = "2")]
    pub ttl: i64,
    #[prost(int64, tag = "3")]
    pub remaining_ttl: i64,
}

/// What the three auth buckets hold, as (key, value) pairs in key order:
/// `auth` has `authEnabled` (1 byte: 1 on, 0 off; absent until auth was
/// first enabled or disabled) and `authRevision` (u64 big-endian);
/// `authUsers` maps a name to its authpb.User (bcrypt hash, roles, options),
/// `authRoles` a name to its authpb.Role (key permissions). ketch's auth
/// tables hold exactly these records, so a snapshot copies them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthState {
    pub auth: Vec<(Vec<u8>, Vec<u8>)>,
    pub users: Vec<(Vec<u8>, Vec<u8>)>,
    pub roles: Vec<(Vec<u8>, Vec<u8>)>,
}

impl AuthState {
    /// What etcd's NewAuthStore writes for a backend that never had auth:
    /// `authRevision` = 1, no `authEnabled`, no users, no roles.
    pub fn never_enabled() -> AuthState {
        AuthState { auth: vec![(AUTH_REVISION.to_vec(), 1u64.to_be_bytes().to_vec())], ..AuthState::default() }
    }

    /// The auth store as of `view`. A store always has its revision (it
    /// writes 1 when it first opens); one that somehow lacks it gets etcd's 1.
    pub fn of_view(view: &StoreView) -> Result<AuthState, SnapshotError> {
        let r = view.auth_records()?;
        let mut auth = r.auth;
        if !auth.iter().any(|(k, _)| k.as_slice() == AUTH_REVISION) {
            auth.extend(AuthState::never_enabled().auth);
        }
        Ok(AuthState { auth, users: r.users, roles: r.roles })
    }
}

/// etcd's keys in the `auth` bucket (server/auth/store.go).
pub(crate) const AUTH_ENABLED: &[u8] = b"authEnabled";
pub(crate) const AUTH_REVISION: &[u8] = b"authRevision";

/// etcd's meta keys.
const META_CONF_STATE: &[u8] = b"confState";
const META_CONSISTENT_INDEX: &[u8] = b"consistent_index";
const META_FINISHED_COMPACT: &[u8] = b"finishedCompactRev";
const META_SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";
const META_TERM: &[u8] = b"term";

/// Writes the store as of `view` to `dest` as etcd's backend (a bbolt file,
/// no trailer), its auth buckets from the same view. `cluster_version` is
/// what the `cluster` bucket records ("3.5.0"). Returns the file's size. On
/// an error the file is removed.
pub fn write_snapshot(view: &StoreView, dest: &Path, cluster_version: &str) -> Result<u64, SnapshotError> {
    let result = write_buckets(view, dest, cluster_version);
    if result.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    result
}

fn write_buckets(view: &StoreView, dest: &Path, cluster_version: &str) -> Result<u64, SnapshotError> {
    let meta = view.meta()?;
    let auth = AuthState::of_view(view)?;
    let membership = view.membership()?;
    let mut w = BboltWriter::create(dest)?;
    let put_all = |w: &mut BboltWriter, name: &[u8], mut items: Vec<(Vec<u8>, Vec<u8>)>| -> Result<(), SnapshotError> {
        items.sort();
        let mut t = w.bucket(name)?;
        for (k, v) in &items {
            t.put(k, v)?;
        }
        t.finish().map(|_| ())
    };
    // Buckets in name order (byte order: "auth" < "authRoles" < "authUsers").
    let alarms = view
        .alarms()?
        .into_iter()
        .map(|(member_id, alarm)| (AlarmMember { member_id, alarm }.encode_to_vec(), Vec::new()));
    put_all(&mut w, b"alarm", alarms.collect())?;
    put_all(&mut w, b"auth", auth.auth)?;
    put_all(&mut w, b"authRoles", auth.roles)?;
    put_all(&mut w, b"authUsers", auth.users)?;
    put_all(&mut w, b"cluster", vec![(b"clusterVersion".to_vec(), cluster_version.as_bytes().to_vec())])?;
    {
        let mut keys = w.bucket(b"key")?;
        let mut failed = None;
        view.for_each_record(&mut |k, v| {
            keys.put(k, v).map_err(|e| {
                failed = Some(e);
                crate::error::EtcdError::Internal("bbolt writer failed".into())
            })
        })
        .map_err(|e| failed.take().unwrap_or_else(|| e.into()))?;
        keys.finish()?;
    }
    let leases = view
        .leases()?
        .into_iter()
        .map(|(id, ttl)| (id.to_be_bytes().to_vec(), LeaseRecord { id, ttl, remaining_ttl: 0 }.encode_to_vec()));
    put_all(&mut w, b"lease", leases.collect())?;
    let members =
        membership.members.values().map(|m| (format!("{:x}", m.id).into_bytes(), member_json(m).into_bytes()));
    put_all(&mut w, b"members", members.collect())?;
    let removed = membership.removed.iter().map(|id| (format!("{id:x}").into_bytes(), b"removed".to_vec()));
    put_all(&mut w, b"members_removed", removed.collect())?;
    let cs = membership.conf_state();
    let mut meta_items = vec![
        (META_CONF_STATE.to_vec(), conf_state_json(&cs.voters, &cs.learners).into_bytes()),
        (META_CONSISTENT_INDEX.to_vec(), meta.consistent_index.to_be_bytes().to_vec()),
        (META_TERM.to_vec(), meta.consistent_term.to_be_bytes().to_vec()),
    ];
    if let Some(r) = meta.scheduled_compact {
        meta_items.push((META_SCHEDULED_COMPACT.to_vec(), r));
    }
    if let Some(r) = meta.finished_compact {
        meta_items.push((META_FINISHED_COMPACT.to_vec(), r));
    }
    put_all(&mut w, b"meta", meta_items)?;
    w.finish()
}

/// etcd's membership.Member as Go's encoding/json writes it.
fn member_json(m: &Member) -> String {
    let list = |urls: &[String]| format!("[{}]", urls.iter().map(|u| go_json_string(u)).collect::<Vec<_>>().join(","));
    let mut s = format!(
        "{{\"id\":{},\"peerURLs\":{}",
        m.id,
        if m.peer_ur_ls.is_empty() { "null".into() } else { list(&m.peer_ur_ls) }
    );
    if m.is_learner {
        s.push_str(",\"isLearner\":true");
    }
    if !m.name.is_empty() {
        let _ = write!(s, ",\"name\":{}", go_json_string(&m.name));
    }
    if !m.client_ur_ls.is_empty() {
        let _ = write!(s, ",\"clientURLs\":{}", list(&m.client_ur_ls));
    }
    s.push('}');
    s
}

/// raftpb.ConfState as Go's encoding/json writes it (etcd 3.5's meta/confState).
fn conf_state_json(voters: &[u64], learners: &[u64]) -> String {
    let ids = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let mut s = String::from("{");
    if !voters.is_empty() {
        let _ = write!(s, "\"voters\":[{}],", ids(voters));
    }
    if !learners.is_empty() {
        let _ = write!(s, "\"learners\":[{}],", ids(learners));
    }
    s.push_str("\"auto_leave\":false}");
    s
}

/// A JSON string as Go escapes it (HTML-safe: <, > and & as \u00XX).
fn go_json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A snapshot file read whole, its trailer checked.
pub struct SnapshotContent {
    bytes: Vec<u8>,
    db_len: usize,
}

/// etcdctl's test for a trailer: a bbolt file is whole pages, so 32 bytes
/// past a multiple of 512 is a SHA-256 after it.
fn has_hash(len: usize) -> bool {
    len % 512 == 32
}

/// Reads `path` and checks its SHA-256 trailer as `etcdctl snapshot restore`
/// does (unless `skip_hash_check`), then the bbolt structure and that it is
/// an etcd backend.
pub fn read_snapshot(path: &Path, skip_hash_check: bool) -> Result<SnapshotContent, SnapshotError> {
    let bytes = std::fs::read(path).map_err(|e| SnapshotError::io(&format!("open {}", path.display()), &e))?;
    SnapshotContent::from_bytes(bytes, skip_hash_check)
}

impl SnapshotContent {
    /// [`read_snapshot`] of bytes already read.
    pub fn from_bytes(bytes: Vec<u8>, skip_hash_check: bool) -> Result<SnapshotContent, SnapshotError> {
        let hashed = has_hash(bytes.len());
        let db_len = if hashed { bytes.len() - 32 } else { bytes.len() };
        if !hashed && !skip_hash_check {
            return Err(SnapshotError::new("snapshot missing hash but --skip-hash-check=false".into()));
        }
        if hashed && !skip_hash_check {
            let want = &bytes[db_len..];
            let got = Sha256::digest(&bytes[..db_len]);
            if got.as_slice() != want {
                return Err(SnapshotError::new(format!("expected sha256 {}, got {}", go_bytes(want), go_bytes(&got))));
            }
        }
        let content = SnapshotContent { bytes, db_len };
        let db = content.db()?;
        for bucket in [b"key".as_slice(), b"meta"] {
            if !db.has_bucket(bucket) {
                return Err(SnapshotError::new(format!(
                    "not an etcd snapshot: the bbolt file has no {:?} bucket",
                    String::from_utf8_lossy(bucket)
                )));
            }
        }
        Ok(content)
    }
}

/// Go's %v of a byte slice: [1 2 3].
fn go_bytes(b: &[u8]) -> String {
    format!("[{}]", b.iter().map(u8::to_string).collect::<Vec<_>>().join(" "))
}

impl SnapshotContent {
    /// The bbolt file, checked.
    pub fn db(&self) -> Result<BboltFile<'_>, SnapshotError> {
        BboltFile::open(&self.bytes[..self.db_len])
    }
}

/// What `etcdctl snapshot status` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotStatus {
    /// CRC-32C over every bucket's name, then its keys and values in order.
    pub hash: u32,
    /// Main revision of the last record in `key`.
    pub revision: i64,
    /// Keys in all buckets.
    pub total_keys: u64,
    /// The database's size (bbolt's tx.Size()).
    pub total_size: u64,
}

/// etcdctl 3.4's Status: opens the file as bbolt (the trailer, if any, is
/// past the last page and not looked at) and hashes every bucket.
pub fn snapshot_status(path: &Path) -> Result<SnapshotStatus, SnapshotError> {
    let bytes = std::fs::read(path).map_err(|e| SnapshotError::io(&format!("open {}", path.display()), &e))?;
    status_of_bytes(&bytes)
}

/// [`snapshot_status`] of bytes already read.
pub fn status_of_bytes(bytes: &[u8]) -> Result<SnapshotStatus, SnapshotError> {
    let db = BboltFile::open(bytes)?;
    let mut h = Crc32c::default();
    let mut st = SnapshotStatus { hash: 0, revision: 0, total_keys: 0, total_size: db.size() };
    let names: Vec<Vec<u8>> = db.bucket_names().map(<[u8]>::to_vec).collect();
    for name in names {
        h.update(&name);
        let is_key = name == b"key";
        db.for_each(&name, &mut |k, v| {
            h.update(k);
            h.update(v);
            if is_key {
                // etcd's bytesToRev: the first 8 bytes, big-endian.
                let main = k.get(..8).and_then(|b| b.try_into().ok()).map_or(0, i64::from_be_bytes);
                st.revision = main;
            }
            st.total_keys += 1;
            Ok(())
        })?;
    }
    st.hash = h.sum();
    Ok(st)
}
