//! The lessor alone on a clock the tests move, then with the store
//! (grant, attach, revoke in one revision, reopen).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::mvcc::{StoreOptions, WriteBatch};
use crate::pb::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest};

const MIN: i64 = 2;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn primary(t0: Instant) -> Lessor {
    let l = Lessor::new(MIN, vec![], vec![]);
    l.promote(Duration::ZERO, t0);
    l
}

#[test]
fn grant_follows_etcd_rules() {
    let t0 = Instant::now();
    let l = primary(t0);
    assert_eq!(l.grant(1, 60, t0), Ok(60));
    // Below the minimum (ceil(1.5 × election timeout)) is raised to it.
    assert_eq!(l.grant(2, 1, t0), Ok(MIN));
    assert_eq!(l.grant(3, 0, t0), Ok(MIN));
    assert_eq!(l.grant(1, 60, t0), Err(EtcdError::LeaseExists));
    assert_eq!(l.grant(4, MAX_LEASE_TTL + 1, t0), Err(EtcdError::LeaseTtlTooLarge));
    assert_eq!(l.grant(4, MAX_LEASE_TTL, t0), Ok(MAX_LEASE_TTL));
    assert_eq!(l.grant(0, 60, t0), Err(EtcdError::LeaseNotFound));
    assert_eq!(l.len(), 4);
    assert!(l.remove(1));
    assert!(!l.remove(1));
    assert_eq!(l.grant(1, 30, t0), Ok(30), "a revoked ID can be granted again");
}

#[test]
fn expiry_comes_off_the_heap_soonest_first() {
    let t0 = Instant::now();
    let l = primary(t0);
    l.grant(10, 10, t0).unwrap();
    l.grant(5, 5, t0).unwrap();
    l.grant(3, 3, t0).unwrap();
    l.grant(7, 7, t0).unwrap();
    assert!(l.take_expired(t0 + secs(2), 100).is_empty());
    assert_eq!(l.take_expired(t0 + secs(6), 100), vec![3, 5]);
    // Not revoked yet: handed out again only after the retry interval.
    assert!(l.take_expired(t0 + secs(6), 100).is_empty());
    assert_eq!(l.take_expired(t0 + secs(8), 100), vec![7]);
    l.remove(3);
    assert_eq!(l.take_expired(t0 + secs(6) + EXPIRED_RETRY, 100), vec![5]);
    // The limit bounds one call; the rest wait for the next.
    assert_eq!(l.take_expired(t0 + secs(60), 2).len(), 2);
}

#[test]
fn renew_restarts_the_ttl_and_stale_heap_entries_are_skipped() {
    let t0 = Instant::now();
    let l = primary(t0);
    l.grant(1, 5, t0).unwrap();
    for i in 1..=1000 {
        assert_eq!(l.renew(1, t0 + Duration::from_millis(i)), Ok(5));
    }
    // Renewals leave stale entries behind, but the heap stays bounded.
    assert!(l.heap_len() <= 2 + 64, "heap holds {}", l.heap_len());
    assert!(l.take_expired(t0 + secs(5) + Duration::from_millis(500), 10).is_empty());
    assert_eq!(l.take_expired(t0 + secs(6) + Duration::from_millis(1), 10), vec![1]);
    // Past its expiry a lease is as good as revoked: renew says not found.
    assert_eq!(l.renew(1, t0 + secs(7)), Err(EtcdError::LeaseNotFound));
    assert_eq!(l.renew(99, t0), Err(EtcdError::LeaseNotFound));
}

#[test]
fn time_to_live_truncates_like_etcd() {
    let t0 = Instant::now();
    let l = primary(t0);
    l.grant(1, 60, t0).unwrap();
    let info = l.time_to_live(1, true, t0 + Duration::from_millis(500)).unwrap();
    assert_eq!((info.remaining, info.granted), (59, 60));
    assert_eq!(l.time_to_live(1, false, t0 + Duration::from_millis(61_500)).unwrap().remaining, -1);
    assert_eq!(l.time_to_live(2, false, t0), None);
}

#[test]
fn keys_attach_detach_and_move() {
    let t0 = Instant::now();
    let l = primary(t0);
    l.grant(1, 60, t0).unwrap();
    l.grant(2, 60, t0).unwrap();
    l.apply_moves(vec![(b("a"), 1), (b("b"), 1), (b("c"), 1)]);
    assert_eq!(l.keys(1).unwrap(), vec![b("a"), b("b"), b("c")]);
    // Overwrite without a lease detaches; delete (0) detaches; another lease moves.
    l.apply_moves(vec![(b("a"), 0), (b("b"), 2), (b("c"), 0)]);
    assert_eq!(l.keys(1).unwrap(), Vec::<Bytes>::new());
    assert_eq!(l.keys(2).unwrap(), vec![b("b")]);
    assert_eq!((l.lease_of(b"a"), l.lease_of(b"b")), (0, 2));
    assert!(l.remove(2));
    assert_eq!(l.lease_of(b"b"), 0);
    assert_eq!(l.keys(2), None);
}

#[test]
fn promote_extends_and_followers_keep_leases_forever() {
    let t0 = Instant::now();
    let l = Lessor::new(MIN, vec![(1, 10), (2, 20)], vec![(b("k"), 1), (b("orphan"), 3)]);
    assert!(!l.is_primary());
    assert_eq!(l.keys(1).unwrap(), vec![b("k")]);
    assert_eq!(l.lease_of(b"orphan"), 0, "a key naming no known lease is not attached");
    assert_eq!(l.renew(1, t0), Err(EtcdError::NoLeader));
    assert!(l.take_expired(t0 + secs(1000), 10).is_empty());
    // A new leader gives every lease extend + its full TTL.
    l.promote(secs(1), t0);
    assert!(l.take_expired(t0 + secs(10) + Duration::from_millis(500), 10).is_empty());
    assert_eq!(l.take_expired(t0 + secs(11), 10), vec![1]);
    assert_eq!(l.leases(), vec![1, 2]);
    l.demote();
    assert!(l.take_expired(t0 + secs(1000), 10).is_empty());
    assert_eq!(l.time_to_live(2, false, t0).unwrap().remaining, 20);
    l.promote(secs(1), t0 + secs(100));
    assert_eq!(l.take_expired(t0 + secs(122), 10), vec![1, 2]);
}

#[test]
fn leases_list_soonest_expiry_first() {
    let t0 = Instant::now();
    let l = primary(t0);
    l.grant(1, 100, t0).unwrap();
    l.grant(2, 10, t0).unwrap();
    l.grant(3, 50, t0).unwrap();
    assert_eq!(l.leases(), vec![2, 3, 1]);
}

// ---- with the store --------------------------------------------------------

fn put_leased(batch: &mut WriteBatch<'_>, lessor: &Lessor, key: &str, lease: i64) -> i64 {
    let r = batch.put(&PutRequest { key: b(key), value: b("v"), lease, ..Default::default() }, lessor).unwrap();
    lessor.apply_moves(batch.take_lease_moves());
    r.header.unwrap().revision
}

#[test]
fn revoke_deletes_every_key_in_one_revision_and_reopen_restores_leases() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = Store::open(&path, StoreOptions::default()).unwrap();
    let t0 = Instant::now();
    let lessor = Lessor::new(MIN, store.leases().unwrap(), store.leased_keys().unwrap());
    lessor.promote(Duration::ZERO, t0);

    let mut batch = store.write_batch().unwrap();
    let g = apply_grant(&lessor, &mut batch, &LeaseGrantRequest { ttl: 60, id: 7 }, t0).unwrap();
    assert_eq!((g.id, g.ttl, g.header.unwrap().revision), (7, 60, 1));
    apply_grant(&lessor, &mut batch, &LeaseGrantRequest { ttl: 1, id: 8 }, t0).unwrap();
    assert_eq!(
        apply_grant(&lessor, &mut batch, &LeaseGrantRequest { ttl: 5, id: 7 }, t0).unwrap_err(),
        EtcdError::LeaseExists
    );
    for k in ["c", "a", "b", "moved", "detached"] {
        put_leased(&mut batch, &lessor, k, 7);
    }
    put_leased(&mut batch, &lessor, "moved", 8);
    put_leased(&mut batch, &lessor, "detached", 0);
    put_leased(&mut batch, &lessor, "other", 8);
    // A put naming a lease that does not exist is refused, as etcd does.
    let err = batch.put(&PutRequest { key: b("x"), lease: 99, ..Default::default() }, &lessor).unwrap_err();
    assert_eq!(err, EtcdError::LeaseNotFound);
    batch.commit(false).unwrap();
    assert_eq!(lessor.keys(7).unwrap(), vec![b("a"), b("b"), b("c")]);
    drop(lessor);

    // Reopen: leases come back from the lease table, keys from their latest versions.
    drop(store);
    let store = Store::open(&path, StoreOptions::default()).unwrap();
    assert_eq!(store.leases().unwrap(), vec![(7, 60), (8, MIN)]);
    let lessor = Lessor::new(MIN, store.leases().unwrap(), store.leased_keys().unwrap());
    assert_eq!(lessor.keys(7).unwrap(), vec![b("a"), b("b"), b("c")]);
    assert_eq!(lessor.keys(8).unwrap(), vec![b("moved"), b("other")]);

    // Deleting a key detaches it too.
    let mut batch = store.write_batch().unwrap();
    batch.delete_range(&DeleteRangeRequest { key: b("other"), ..Default::default() }).unwrap();
    lessor.apply_moves(batch.take_lease_moves());
    assert_eq!(lessor.keys(8).unwrap(), vec![b("moved")]);
    let before = batch.revision();
    let r = apply_revoke(&lessor, &mut batch, &LeaseRevokeRequest { id: 7 }).unwrap();
    assert_eq!(r.header.unwrap().revision, before + 1, "three deletes, one revision");
    assert_eq!(apply_revoke(&lessor, &mut batch, &LeaseRevokeRequest { id: 7 }).unwrap_err(), EtcdError::LeaseNotFound);
    batch.commit(false).unwrap();
    let all = store.range(&RangeRequest { key: b("\0"), range_end: b("\0"), ..Default::default() }).unwrap();
    let keys: Vec<Bytes> = all.kvs.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(keys, vec![b("detached"), b("moved")]);
    assert_eq!(all.kvs[1].lease, 8);
    // The three tombstones share the revoke's main revision, sub 0, 1, 2 in key order.
    let tombs: Vec<(i64, i64)> = store
        .state_for_test()
        .into_iter()
        .filter(|(main, _, t)| *t && *main == before + 1)
        .map(|(m, s, _)| (m, s))
        .collect();
    assert_eq!(tombs, vec![(before + 1, 0), (before + 1, 1), (before + 1, 2)]);
    drop(store);
    let store = Store::open(&path, StoreOptions::default()).unwrap();
    assert_eq!(store.leases().unwrap(), vec![(8, MIN)]);
    assert_eq!(store.leased_keys().unwrap(), vec![(b("moved"), 8)]);
}

#[test]
fn revoking_a_lease_without_keys_leaves_the_revision_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db"), StoreOptions::default()).unwrap();
    let lessor = Lessor::new(MIN, vec![], vec![]);
    let mut batch = store.write_batch().unwrap();
    apply_grant(&lessor, &mut batch, &LeaseGrantRequest { ttl: 60, id: 1 }, Instant::now()).unwrap();
    let r = apply_revoke(&lessor, &mut batch, &LeaseRevokeRequest { id: 1 }).unwrap();
    assert_eq!(r.header.unwrap().revision, 1);
    batch.commit(false).unwrap();
    assert!(store.leases().unwrap().is_empty());
}

#[test]
fn min_ttl_is_etcds() {
    let mut c = EngineConfig::new("/nonexistent", 1, 1);
    assert_eq!(min_ttl(&c), 2); // 15 × 100 ms = 1.5 s → 2 s
    c.election_ticks = 20;
    assert_eq!(min_ttl(&c), 3);
    c.election_ticks = 5; // 7 × 100 ms (integer ticks, as etcd) → 1 s
    assert_eq!(min_ttl(&c), 1);
    assert_eq!(promote_extend(&c), Duration::from_millis(500));
}
