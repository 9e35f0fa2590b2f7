//! `snapshot restore`: a new ketch data dir from an etcd-format snapshot,
//! with a new membership, as etcd's restore makes one:
//!
//! 1. the file is read and refused whole if its trailer, its bbolt pages or
//!    its etcd records are wrong (nothing is written before that);
//! 2. the keys (every revision, tombstones too), compaction revisions,
//!    leases, alarms and the auth store (users, roles, the enabled flag and
//!    the auth revision) go into a new redb store; the old cluster's members
//!    do not (etcd's restore deletes them too);
//! 3. the WAL starts as a new cluster's does: one committed AddNode per
//!    member of `--initial-cluster`, at term 1. The store's Raft position is
//!    0, so the member applies them at start and learns its membership from
//!    them (etcd writes the same entries, and a snapshot at their index);
//! 4. all of it is built in `<data-dir>.restoring` (and `<wal-dir>.restoring`)
//!    and renamed into place at the end; any failure removes them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message;

use super::backend::{read_snapshot, LeaseRecord, AUTH_ENABLED, AUTH_REVISION};
use super::reader::BboltFile;
use super::SnapshotError;
use crate::mvcc::{import_backend, BackendImport};
use crate::pb::authpb::{Role, User};
use crate::pb::etcdserverpb::AlarmMember;
use crate::pb::ketchpb::MemberMetadata;

/// Where and as whom to restore.
#[derive(Clone, Debug)]
pub struct RestoreTarget {
    pub data_dir: PathBuf,
    /// None: `<data-dir>/member/wal`.
    pub wal_dir: Option<PathBuf>,
    pub member_id: u64,
    pub cluster_id: u64,
    /// Every member of the new cluster: (ID, name, peer URLs).
    pub members: Vec<(u64, String, Vec<String>)>,
}

/// What a restore brought over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    pub records: u64,
    pub leases: u64,
    pub revision: i64,
    pub users: u64,
    pub roles: u64,
}

/// Restores `snapshot` into `target` (see the module doc).
pub fn restore(
    snapshot: &Path,
    skip_hash_check: bool,
    target: &RestoreTarget,
) -> Result<RestoreSummary, SnapshotError> {
    if target.data_dir.exists() {
        return Err(SnapshotError::new(format!("data-dir {:?} exists", target.data_dir.display().to_string())));
    }
    if let Some(w) = &target.wal_dir {
        if w.exists() {
            return Err(SnapshotError::new(format!("wal-dir {:?} exists", w.display().to_string())));
        }
    }
    if !target.members.iter().any(|m| m.0 == target.member_id) {
        return Err(SnapshotError::new(format!("member {:x} is not one of the initial members", target.member_id)));
    }
    let content = read_snapshot(snapshot, skip_hash_check)?;
    let db = content.db()?;

    let staging = sibling(&target.data_dir);
    let wal_staging = target.wal_dir.as_deref().map(sibling);
    let cleanup = || {
        let _ = std::fs::remove_dir_all(&staging);
        if let Some(w) = &wal_staging {
            let _ = std::fs::remove_dir_all(w);
        }
    };
    cleanup();
    let result = (|| {
        let member = staging.join("member");
        std::fs::create_dir_all(&member)
            .map_err(|e| SnapshotError::io(&format!("creating {}", member.display()), &e))?;
        let mut summary = RestoreSummary::default();
        // The import speaks EtcdError; a SnapshotError from the reading side
        // waits here and wins.
        let mut failed: Option<SnapshotError> = None;
        import_backend(&member.join("db.redb"), |import| {
            let outcome = (|| -> Result<(), SnapshotError> {
                db.for_each(b"key", &mut |k, v| {
                    import.put_record(k, v).map_err(SnapshotError::from)?;
                    summary.records += 1;
                    summary.revision = i64::from_be_bytes(k[..8].try_into().expect("a checked revision key"));
                    Ok(())
                })?;
                let mut scheduled = None;
                let mut finished = None;
                db.for_each(b"meta", &mut |k, v| {
                    match k {
                        b"scheduledCompactRev" => scheduled = Some(v.to_vec()),
                        b"finishedCompactRev" => finished = Some(v.to_vec()),
                        _ => {}
                    }
                    Ok(())
                })?;
                import.set_compaction(scheduled.as_deref(), finished.as_deref()).map_err(SnapshotError::from)?;
                import.set_consistent_index(0, 0).map_err(SnapshotError::from)?;
                db.for_each(b"lease", &mut |k, v| {
                    let lease = LeaseRecord::decode(v)
                        .map_err(|e| SnapshotError::new(format!("lease record {k:x?}: not a leasepb.Lease: {e}")))?;
                    import.put_lease(lease.id, lease.ttl).map_err(SnapshotError::from)?;
                    summary.leases += 1;
                    Ok(())
                })?;
                db.for_each(b"alarm", &mut |k, _| {
                    let a = AlarmMember::decode(k)
                        .map_err(|e| SnapshotError::new(format!("alarm record {k:x?}: not an AlarmMember: {e}")))?;
                    import.put_alarm(a.member_id, a.alarm).map_err(SnapshotError::from)
                })?;
                restore_auth(&db, import, &mut summary)
            })();
            outcome.map_err(|e| {
                failed = Some(e);
                crate::error::EtcdError::Internal("restore stopped".into())
            })
        })
        .map_err(|e| failed.take().unwrap_or_else(|| SnapshotError::from(e)))?;
        let wal_dir = wal_staging.clone().unwrap_or_else(|| member.join("wal"));
        let meta = MemberMetadata { member_id: target.member_id, cluster_id: target.cluster_id };
        let log = crate::node::bootstrap_log(Arc::new(crate::wal::OsFs), &wal_dir, &meta, &target.members)
            .map_err(|e| SnapshotError::new(format!("writing the WAL in {}: {e}", wal_dir.display())))?;
        drop(log);
        sync_dir(&member)?;
        sync_dir(&staging)?;
        if let Some(w) = &wal_staging {
            rename(w, target.wal_dir.as_deref().expect("a staged wal dir has a target"))?;
        }
        rename(&staging, &target.data_dir)?;
        Ok(summary)
    })();
    if result.is_err() {
        cleanup();
        if let Some(w) = &target.wal_dir {
            if wal_staging.is_some() && !target.data_dir.exists() {
                let _ = std::fs::remove_dir_all(w);
            }
        }
    }
    result
}

/// The `auth`, `authUsers` and `authRoles` buckets into ketch's auth
/// tables. A snapshot without them (none of etcd's lacks them) restores as
/// a store that never had auth.
fn restore_auth(
    db: &BboltFile<'_>,
    import: &mut BackendImport<'_>,
    summary: &mut RestoreSummary,
) -> Result<(), SnapshotError> {
    let mut enabled = None;
    let mut revision = 1;
    if db.has_bucket(b"auth") {
        db.for_each(b"auth", &mut |k, v| {
            match k {
                // etcd's isAuthEnabled: on only for exactly {1}.
                AUTH_ENABLED => enabled = Some(v == [1]),
                AUTH_REVISION => {
                    let bytes: [u8; 8] = v.try_into().map_err(|_| {
                        SnapshotError::new(format!("auth bucket: authRevision is {} bytes, not 8", v.len()))
                    })?;
                    revision = u64::from_be_bytes(bytes);
                }
                _ => {}
            }
            Ok(())
        })?;
    }
    import.set_auth(enabled, revision).map_err(SnapshotError::from)?;
    let named = |bucket: &str, k: &[u8], name: &[u8]| {
        if k == name {
            Ok(())
        } else {
            Err(SnapshotError::new(format!(
                "{bucket} record {:?}: holds {:?}, not itself",
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(name)
            )))
        }
    };
    if db.has_bucket(b"authUsers") {
        db.for_each(b"authUsers", &mut |k, v| {
            let user = User::decode(v).map_err(|e| {
                SnapshotError::new(format!(
                    "authUsers record {:?}: not an authpb.User: {e}",
                    String::from_utf8_lossy(k)
                ))
            })?;
            named("authUsers", k, &user.name)?;
            import.put_auth_user(&user).map_err(SnapshotError::from)?;
            summary.users += 1;
            Ok(())
        })?;
    }
    if db.has_bucket(b"authRoles") {
        db.for_each(b"authRoles", &mut |k, v| {
            let role = Role::decode(v).map_err(|e| {
                SnapshotError::new(format!(
                    "authRoles record {:?}: not an authpb.Role: {e}",
                    String::from_utf8_lossy(k)
                ))
            })?;
            named("authRoles", k, &role.name)?;
            import.put_auth_role(&role).map_err(SnapshotError::from)?;
            summary.roles += 1;
            Ok(())
        })?;
    }
    Ok(())
}

/// `<path>.restoring`, beside it.
fn sibling(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
    name.push(".restoring");
    path.with_file_name(name)
}

fn sync_dir(dir: &Path) -> Result<(), SnapshotError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SnapshotError::io(&format!("syncing {}", dir.display()), &e))
}

fn rename(from: &Path, to: &Path) -> Result<(), SnapshotError> {
    std::fs::rename(from, to)
        .map_err(|e| SnapshotError::io(&format!("moving {} to {}", from.display(), to.display()), &e))?;
    if let Some(parent) = to.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(())
}
