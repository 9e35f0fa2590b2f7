//! The writer against the reader, restores into stores that open, and
//! mutated files that are never accepted.

use std::path::Path;

use bytes::Bytes;
use proptest::prelude::*;
use prost::Message;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use super::backend::{status_of_bytes, LeaseRecord};
use super::*;
use crate::mvcc::{LeaseCheck, Store, StoreOptions};
use crate::pb::etcdserverpb::{CompactionRequest, DeleteRangeRequest, Member, PutRequest, RangeRequest};
use crate::pb::mvccpb::KeyValue;

struct AnyLease;
impl LeaseCheck for AnyLease {
    fn lease_exists(&self, _: i64) -> bool {
        true
    }
}

fn put(s: &Store, k: &[u8], v: &[u8], lease: i64) {
    let mut w = s.write_batch().unwrap();
    w.put(
        &PutRequest { key: Bytes::copy_from_slice(k), value: Bytes::copy_from_slice(v), lease, ..Default::default() },
        &AnyLease,
    )
    .unwrap();
    w.commit(false).unwrap();
}

/// A store with puts, a txn-less overwrite, a delete, a big value, a lease,
/// a member and a compaction: every kind of record a snapshot carries.
fn sample_store(dir: &Path, keys: usize) -> Store {
    let s = Store::open(&dir.join("db"), StoreOptions::default()).unwrap();
    let mut w = s.write_batch().unwrap();
    w.put_lease(7, 600).unwrap();
    w.put_member(&Member {
        id: 0xabc,
        name: "a".into(),
        peer_ur_ls: vec!["http://127.0.0.1:2380".into()],
        client_ur_ls: vec![],
        is_learner: false,
    })
    .unwrap();
    w.set_consistent_index(42, 3);
    w.commit(false).unwrap();
    for i in 0..keys {
        put(&s, format!("/registry/pods/default/p{i:06}").as_bytes(), format!("value {i}").as_bytes(), 0);
    }
    put(&s, b"leased", b"x", 7);
    put(&s, b"big", &vec![b'z'; 20_000], 0);
    put(&s, b"gone", b"1", 0);
    let mut w = s.write_batch().unwrap();
    w.delete_range(&DeleteRangeRequest { key: Bytes::from_static(b"gone"), ..Default::default() }).unwrap();
    w.commit(false).unwrap();
    put(&s, b"/registry/pods/default/p000000", b"overwritten", 0);
    let mut w = s.write_batch().unwrap();
    w.compact(&CompactionRequest { revision: 2, physical: true }).unwrap();
    w.commit(true).unwrap();
    // Physical compaction runs in the background now; the sample is the
    // store once it finished (finishedCompactRev written).
    s.finish_compactions().unwrap();
    s
}

/// The snapshot stream's bytes: the bbolt file, then its SHA-256.
fn snapshot_bytes(s: &Store, dir: &Path) -> Vec<u8> {
    let path = dir.join("snap.db");
    let _ = std::fs::remove_file(&path);
    write_snapshot(&s.view().unwrap(), &path, "3.5.0").unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let sum = Sha256::digest(&bytes);
    bytes.extend_from_slice(&sum);
    bytes
}

fn records(db: &BboltFile<'_>, bucket: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    db.for_each(bucket, &mut |k, v| {
        out.push((k.to_vec(), v.to_vec()));
        Ok(())
    })
    .unwrap();
    out
}

#[test]
fn a_snapshot_holds_every_bucket_as_etcd_lays_it_out() {
    let dir = tempfile::tempdir().unwrap();
    let s = sample_store(dir.path(), 3000);
    let bytes = snapshot_bytes(&s, dir.path());
    assert_eq!(bytes.len() % 512, 32);
    let content = SnapshotContent::from_bytes(bytes.clone(), false).unwrap();
    let db = content.db().unwrap();
    let names: Vec<&[u8]> = db.bucket_names().collect();
    let want: Vec<&[u8]> = vec![
        b"alarm",
        b"auth",
        b"authRoles",
        b"authUsers",
        b"cluster",
        b"key",
        b"lease",
        b"members",
        b"members_removed",
        b"meta",
    ];
    assert_eq!(names, want);

    let mut from_store = Vec::new();
    s.view()
        .unwrap()
        .for_each_record(&mut |k, v| {
            from_store.push((k.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
    let keys = records(&db, b"key");
    assert_eq!(keys, from_store, "the key bucket is the store's key table, record for record");
    assert!(keys.iter().any(|(_, v)| v.len() > 20_000), "the big record came through whole");
    assert!(keys.iter().any(|(k, _)| k.len() == 18 && k[17] == b't'), "the tombstone kept its marker");
    let kv = KeyValue::decode(keys.last().unwrap().1.as_slice()).unwrap();
    assert_eq!(kv.value.as_ref(), b"overwritten");

    let leases = records(&db, b"lease");
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].0, 7i64.to_be_bytes());
    assert_eq!(LeaseRecord::decode(leases[0].1.as_slice()).unwrap(), LeaseRecord { id: 7, ttl: 600, remaining_ttl: 0 });

    let meta: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = records(&db, b"meta").into_iter().collect();
    assert_eq!(meta[b"consistent_index".as_slice()], 42u64.to_be_bytes());
    assert_eq!(meta[b"term".as_slice()], 3u64.to_be_bytes());
    assert_eq!(meta[b"confState".as_slice()], br#"{"voters":[2748],"auto_leave":false}"#);
    assert_eq!(&meta[b"finishedCompactRev".as_slice()][..8], 2i64.to_be_bytes());
    assert_eq!(
        records(&db, b"members"),
        vec![(b"abc".to_vec(), br#"{"id":2748,"peerURLs":["http://127.0.0.1:2380"],"name":"a"}"#.to_vec())]
    );
    assert_eq!(records(&db, b"auth"), vec![(b"authRevision".to_vec(), 1u64.to_be_bytes().to_vec())]);
    assert_eq!(records(&db, b"cluster"), vec![(b"clusterVersion".to_vec(), b"3.5.0".to_vec())]);

    let st = status_of_bytes(&bytes).unwrap();
    assert_eq!(st.revision, s.current_revision());
    assert_eq!(st.total_size, (bytes.len() - 32) as u64);
    let all: usize = want.iter().map(|b| records(&db, b).len()).sum();
    assert_eq!(st.total_keys, all as u64);
}

#[test]
fn an_empty_store_makes_a_valid_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("db"), StoreOptions::default()).unwrap();
    let bytes = snapshot_bytes(&s, dir.path());
    let content = SnapshotContent::from_bytes(bytes, false).unwrap();
    assert!(records(&content.db().unwrap(), b"key").is_empty());
}

#[test]
fn a_restore_is_a_store_with_the_same_keys_and_a_bootstrap_wal() {
    let dir = tempfile::tempdir().unwrap();
    let s = sample_store(dir.path(), 500);
    let path = dir.path().join("snap.db");
    std::fs::write(&path, snapshot_bytes(&s, dir.path())).unwrap();
    let target = RestoreTarget {
        data_dir: dir.path().join("restored"),
        wal_dir: None,
        member_id: 5,
        cluster_id: 9,
        members: vec![
            (5, "x".into(), vec!["http://127.0.0.1:1".into()]),
            (6, "y".into(), vec!["http://127.0.0.1:2".into()]),
        ],
    };
    restore(&path, false, &target).unwrap();
    let restored = Store::open(&target.data_dir.join("member").join("db.redb"), StoreOptions::default()).unwrap();
    assert_eq!(restored.current_revision(), s.current_revision());
    assert_eq!(restored.compact_revision(), s.compact_revision());
    assert_eq!(restored.consistent_index(), (0, 0));
    assert!(restored.membership().members.is_empty(), "members come from the new WAL");
    assert_eq!(restored.leases().unwrap(), vec![(7, 600)]);
    let all =
        RangeRequest { key: Bytes::from_static(b"\0"), range_end: Bytes::from_static(b"\0"), ..Default::default() };
    assert_eq!(restored.range(&all).unwrap().kvs, s.range(&all).unwrap().kvs);
    let opened = crate::raftlog::RaftLog::open(&target.data_dir.join("member").join("wal")).unwrap();
    assert_eq!(opened.log.last_index(), 2, "one AddNode per new member");
    assert!(!dir.path().join("restored.restoring").exists());

    let err = restore(&path, false, &target).unwrap_err();
    assert!(err.0.starts_with("data-dir ") && err.0.ends_with(" exists"), "{err}");
}

fn restore_fails_and_leaves_nothing(dir: &TempDir, bytes: &[u8], skip: bool) -> String {
    let path = dir.path().join("bad.db");
    std::fs::write(&path, bytes).unwrap();
    let target = RestoreTarget {
        data_dir: dir.path().join("out"),
        wal_dir: Some(dir.path().join("wal")),
        member_id: 1,
        cluster_id: 2,
        members: vec![(1, "a".into(), vec!["http://127.0.0.1:1".into()])],
    };
    let err = restore(&path, skip, &target).unwrap_err();
    for left in ["out", "wal", "out.restoring", "wal.restoring"] {
        assert!(!dir.path().join(left).exists(), "{left} left behind after: {err}");
    }
    assert!(!err.0.contains('\n'), "one line: {err}");
    err.0
}

#[test]
fn bad_files_are_refused_with_one_line_and_nothing_left() {
    let dir = tempfile::tempdir().unwrap();
    let s = sample_store(dir.path(), 50);
    let good = snapshot_bytes(&s, dir.path());

    let mut flipped = good.clone();
    flipped[5000] ^= 0x40;
    assert!(restore_fails_and_leaves_nothing(&dir, &flipped, false).starts_with("expected sha256 ["));

    let mut trailer = good.clone();
    let n = trailer.len();
    trailer[n - 1] ^= 1;
    assert!(restore_fails_and_leaves_nothing(&dir, &trailer, false).starts_with("expected sha256 ["));

    let cut = &good[..good.len() - 32 - 4096];
    assert_eq!(restore_fails_and_leaves_nothing(&dir, cut, false), "snapshot missing hash but --skip-hash-check=false");
    assert!(restore_fails_and_leaves_nothing(&dir, cut, true).contains("truncated"));

    let mut not_bbolt = vec![7u8; 4 * 4096];
    let sum = Sha256::digest(&not_bbolt);
    not_bbolt.extend_from_slice(&sum);
    assert!(restore_fails_and_leaves_nothing(&dir, &not_bbolt, false).contains("wrong magic"));

    // A bbolt file that is not etcd's: no key bucket.
    let path = dir.path().join("plain.db");
    let mut w = BboltWriter::create(&path).unwrap();
    let mut t = w.bucket(b"other").unwrap();
    t.put(b"k", b"v").unwrap();
    t.finish().unwrap();
    w.finish().unwrap();
    let plain = std::fs::read(&path).unwrap();
    assert!(restore_fails_and_leaves_nothing(&dir, &plain, true).contains("not an etcd snapshot"));
}

#[test]
fn many_keys_make_a_deep_tree_that_reads_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let mut w = BboltWriter::create(&path).unwrap();
    let mut t = w.bucket(b"b").unwrap();
    let n = 200_000u32;
    for i in 0..n {
        t.put(&i.to_be_bytes(), &[1u8; 30]).unwrap();
    }
    t.finish().unwrap();
    w.finish().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let db = BboltFile::open(&bytes).unwrap();
    let mut next = 0u32;
    db.for_each(b"b", &mut |k, _| {
        assert_eq!(k, next.to_be_bytes());
        next += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(next, n);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// A flipped byte or a cut anywhere: with the hash check on, never
    /// accepted; with it off, never a panic.
    #[test]
    fn mutated_snapshots_are_never_accepted(cut in proptest::option::of(0usize..1_000_000), flips in proptest::collection::vec((0usize..1_000_000, 1u8..=255), 0..4)) {
        prop_assume!(cut.is_some() || !flips.is_empty());
        let good = mutation_base();
        let mut bytes = good.clone();
        for (at, x) in &flips {
            let at = at % bytes.len();
            bytes[at] ^= x;
        }
        if let Some(c) = cut {
            bytes.truncate(c % good.len());
        }
        prop_assume!(bytes != good);
        prop_assert!(SnapshotContent::from_bytes(bytes.clone(), false).is_err());
        if let Ok(c) = SnapshotContent::from_bytes(bytes.clone(), true) {
            let db = c.db().unwrap();
            let names: Vec<Vec<u8>> = db.bucket_names().map(<[u8]>::to_vec).collect();
            for n in names {
                db.for_each(&n, &mut |_, _| Ok(())).unwrap();
            }
        }
        let _ = status_of_bytes(&bytes);
    }

    /// Flips in the structure (meta pages, page headers, element headers),
    /// with a recomputed trailer, so only the bbolt checks stand in the way:
    /// never a panic, and whatever is accepted reads whole.
    #[test]
    fn structural_damage_never_panics(flips in proptest::collection::vec((0usize..64, 0usize..8, 1u8..=255), 1..4)) {
        let good = mutation_base();
        let mut db = good[..good.len() - 32].to_vec();
        let pages = db.len() / 4096;
        for (page, byte, x) in &flips {
            let at = (page % pages) * 4096 + byte * 8 % 96;
            db[at] ^= x;
        }
        let sum = Sha256::digest(&db);
        db.extend_from_slice(&sum);
        if let Ok(c) = SnapshotContent::from_bytes(db.clone(), false) {
            let f = c.db().unwrap();
            let names: Vec<Vec<u8>> = f.bucket_names().map(<[u8]>::to_vec).collect();
            for n in names {
                f.for_each(&n, &mut |_, _| Ok(())).unwrap();
            }
        }
        let _ = status_of_bytes(&db);
    }
}

/// One real snapshot, made once for all the mutation cases.
fn mutation_base() -> Vec<u8> {
    static BASE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let s = sample_store(dir.path(), 400);
        snapshot_bytes(&s, dir.path())
    })
    .clone()
}

/// A store with auth on: root, and a user whose role reads and writes one prefix.
fn store_with_auth(dir: &Path) -> Store {
    use crate::pb::authpb::{permission::Type, Permission, Role, User, UserAddOptions};
    let s = Store::open(&dir.join("db"), StoreOptions::default()).unwrap();
    let mut w = s.write_batch().unwrap();
    let user = |name: &str, hash: &str, roles: &[&str]| User {
        name: Bytes::copy_from_slice(name.as_bytes()),
        password: Bytes::copy_from_slice(hash.as_bytes()),
        roles: roles.iter().map(ToString::to_string).collect(),
        options: Some(UserAddOptions { no_password: false }),
    };
    w.put_auth_role(Role { name: Bytes::from_static(b"root"), key_permission: vec![] }).unwrap();
    w.put_auth_role(Role {
        name: Bytes::from_static(b"apps"),
        key_permission: vec![Permission {
            perm_type: Type::Readwrite as i32,
            key: Bytes::from_static(b"/apps/"),
            range_end: Bytes::from_static(b"/apps0"),
        }],
    })
    .unwrap();
    w.put_auth_user(user("root", "$2a$10$roothash", &["root"])).unwrap();
    w.put_auth_user(user("app", "$2a$10$apphash", &["apps"])).unwrap();
    w.commit_auth_revision().unwrap();
    w.set_auth_enabled(true).unwrap();
    w.commit(false).unwrap();
    s
}

#[test]
fn the_auth_store_travels_through_a_snapshot_and_a_restore() {
    use crate::pb::authpb::{Role, User};
    let dir = tempfile::tempdir().unwrap();
    let s = store_with_auth(dir.path());
    let bytes = snapshot_bytes(&s, dir.path());
    let content = SnapshotContent::from_bytes(bytes.clone(), false).unwrap();
    let db = content.db().unwrap();
    // etcd's layout: the flag as one byte, the revision as 8 big-endian bytes.
    assert_eq!(
        records(&db, b"auth"),
        vec![(b"authEnabled".to_vec(), vec![1]), (b"authRevision".to_vec(), 2u64.to_be_bytes().to_vec())]
    );
    let users = records(&db, b"authUsers");
    assert_eq!(users.iter().map(|(k, _)| k.as_slice()).collect::<Vec<_>>(), [b"app".as_slice(), b"root"]);
    let app = User::decode(users[0].1.as_slice()).unwrap();
    assert_eq!((app.password.as_ref(), app.roles.clone()), (b"$2a$10$apphash".as_slice(), vec!["apps".to_string()]));
    let roles = records(&db, b"authRoles");
    let apps = Role::decode(roles[0].1.as_slice()).unwrap();
    assert_eq!(apps.key_permission[0].key.as_ref(), b"/apps/");

    let path = dir.path().join("snap.db");
    std::fs::write(&path, &bytes).unwrap();
    let target = RestoreTarget {
        data_dir: dir.path().join("restored"),
        wal_dir: None,
        member_id: 5,
        cluster_id: 9,
        members: vec![(5, "x".into(), vec!["http://127.0.0.1:1".into()])],
    };
    let summary = restore(&path, false, &target).unwrap();
    assert_eq!((summary.users, summary.roles), (2, 2));
    let restored = Store::open(&target.data_dir.join("member").join("db.redb"), StoreOptions::default()).unwrap();
    let (want, got) = (s.auth(), restored.auth());
    assert!(got.enabled);
    assert_eq!(got.revision, want.revision);
    assert_eq!(got.users, want.users);
    assert_eq!(got.roles, want.roles);
    // The restored store enforces the role: inside the prefix, not outside.
    let app = crate::auth::AuthInfo { username: "app".into(), revision: got.revision };
    assert!(got.check_write(Some(&app), b"/apps/a", &[]).is_ok());
    assert!(got.check_write(Some(&app), b"/other", &[]).is_err());
    // And a snapshot of the restored store holds the same auth buckets.
    let again_dir = tempfile::tempdir().unwrap();
    let again = SnapshotContent::from_bytes(snapshot_bytes(&restored, again_dir.path()), false).unwrap();
    for bucket in [b"auth".as_slice(), b"authUsers", b"authRoles"] {
        assert_eq!(records(&again.db().unwrap(), bucket), records(&db, bucket));
    }
}

#[test]
fn a_store_that_never_had_auth_snapshots_as_etcd_writes_one() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("db"), StoreOptions::default()).unwrap();
    let content = SnapshotContent::from_bytes(snapshot_bytes(&s, dir.path()), false).unwrap();
    let db = content.db().unwrap();
    assert_eq!(records(&db, b"auth"), AuthState::never_enabled().auth);
    assert!(records(&db, b"authUsers").is_empty() && records(&db, b"authRoles").is_empty());
}
