//! Store unit tests: etcd's behaviour, request by request.

use bytes::Bytes;
use tempfile::TempDir;

use super::store::{CompactionHash, COMPACTION_HASHES_KEPT};
use super::*;
use crate::error::EtcdError;
use crate::pb::etcdserverpb::{
    compare::{CompareResult as R, CompareTarget as T, TargetUnion as U},
    range_request::{SortOrder, SortTarget},
    request_op::Request,
    response_op::Response,
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, ResponseHeader, TxnRequest,
};
use crate::pb::mvccpb::KeyValue;

pub(super) struct NoLeases;
impl LeaseCheck for NoLeases {
    fn lease_exists(&self, _: i64) -> bool {
        false
    }
}
struct Leases(Vec<i64>);
impl LeaseCheck for Leases {
    fn lease_exists(&self, id: i64) -> bool {
        self.0.contains(&id)
    }
}

fn open() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("db"), StoreOptions::default()).unwrap();
    (dir, s)
}
fn reopen(dir: &TempDir, s: Store) -> Store {
    drop(s);
    Store::open(&dir.path().join("db"), StoreOptions::default()).unwrap()
}
fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}
fn preq(k: &str, v: &str) -> PutRequest {
    PutRequest { key: b(k), value: b(v), ..Default::default() }
}
fn put(s: &Store, k: &str, v: &str) -> i64 {
    let mut w = s.write_batch().unwrap();
    let r = w.put(&preq(k, v), &NoLeases).unwrap();
    w.commit(false).unwrap();
    r.header.unwrap().revision
}
fn del(s: &Store, k: &str, end: &str) -> (i64, i64) {
    let mut w = s.write_batch().unwrap();
    let r = w.delete_range(&DeleteRangeRequest { key: b(k), range_end: b(end), prev_kv: false }).unwrap();
    w.commit(false).unwrap();
    (r.deleted, r.header.unwrap().revision)
}
fn txn(s: &Store, t: &TxnRequest) -> Result<crate::pb::etcdserverpb::TxnResponse, EtcdError> {
    let mut w = s.write_batch()?;
    let r = w.txn(t, &NoLeases)?;
    w.commit(false)?;
    Ok(r)
}
fn compact(s: &Store, rev: i64) -> Result<i64, EtcdError> {
    let mut w = s.write_batch()?;
    let r = w.compact(&CompactionRequest { revision: rev, physical: true })?;
    w.commit(true)?;
    s.finish_compactions()?;
    Ok(r.header.unwrap().revision)
}
fn rreq(k: &str, end: &str) -> RangeRequest {
    RangeRequest { key: b(k), range_end: b(end), ..Default::default() }
}
fn get(s: &Store, k: &str, rev: i64) -> Option<KeyValue> {
    let mut r = s.range(&RangeRequest { revision: rev, ..rreq(k, "") }).unwrap();
    assert!(r.kvs.len() <= 1);
    r.kvs.pop()
}
fn keys(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter().map(|kv| String::from_utf8(kv.key.to_vec()).unwrap()).collect()
}
fn op_put(k: &str, v: &str) -> RequestOp {
    RequestOp { request: Some(Request::RequestPut(preq(k, v))) }
}
fn op_get(k: &str) -> RequestOp {
    RequestOp { request: Some(Request::RequestRange(rreq(k, ""))) }
}
fn op_del(k: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestDeleteRange(DeleteRangeRequest { key: b(k), range_end: b(end), prev_kv: true })),
    }
}
fn cmp(k: &str, target: T, result: R, u: U) -> Compare {
    Compare { result: result as i32, target: target as i32, key: b(k), range_end: Bytes::new(), target_union: Some(u) }
}

#[test]
fn mvcc_put_get_versions_create_revision() {
    let (_d, s) = open();
    assert_eq!(s.current_revision(), 1);
    assert_eq!(s.compact_revision(), 0);
    assert_eq!(put(&s, "a", "1"), 2);
    assert_eq!(put(&s, "a", "2"), 3);
    assert_eq!(put(&s, "b", "x"), 4);
    let a = get(&s, "a", 0).unwrap();
    assert_eq!((a.create_revision, a.mod_revision, a.version, &a.value[..]), (2, 3, 2, &b"2"[..]));
    let a2 = get(&s, "a", 2).unwrap();
    assert_eq!((a2.create_revision, a2.mod_revision, a2.version, &a2.value[..]), (2, 2, 1, &b"1"[..]));
    assert_eq!(get(&s, "b", 3), None);
    let r = s.range(&rreq("a", "")).unwrap();
    assert_eq!(r.header.unwrap().revision, 4);
    assert_eq!(r.count, 1);
    assert_eq!(s.range(&RangeRequest { revision: 5, ..rreq("a", "") }), Err(EtcdError::FutureRev));
    assert_eq!(s.range(&rreq("", "")), Err(EtcdError::EmptyKey));
}

#[test]
fn mvcc_put_prev_kv_ignore_value_ignore_lease_and_lease_check() {
    let (_d, s) = open();
    let mut w = s.write_batch().unwrap();
    let r = w.put(&PutRequest { prev_kv: true, ..preq("a", "1") }, &NoLeases).unwrap();
    assert_eq!(r.prev_kv, None);
    let iv = PutRequest { key: b("z"), ignore_value: true, ..Default::default() };
    assert_eq!(w.put(&iv, &NoLeases), Err(EtcdError::KeyNotFound));
    assert_eq!(w.put(&PutRequest { lease: 9, ..preq("a", "2") }, &NoLeases), Err(EtcdError::LeaseNotFound));
    let r = w.put(&PutRequest { lease: 9, prev_kv: true, ..preq("a", "2") }, &Leases(vec![9])).unwrap();
    assert_eq!(r.prev_kv.unwrap().value, b("1"));
    assert_eq!(r.header.unwrap().revision, 3);
    // ignore_value keeps "2" but takes the request's lease (none here: the
    // lease is dropped, as etcd does); ignore_lease keeps the key's lease.
    w.put(&PutRequest { key: b("a"), ignore_value: true, ..Default::default() }, &NoLeases).unwrap();
    w.put(&PutRequest { key: b("a"), ignore_value: true, lease: 9, ..Default::default() }, &Leases(vec![9])).unwrap();
    w.put(&PutRequest { key: b("a"), value: b("3"), ignore_lease: true, ..Default::default() }, &NoLeases).unwrap();
    assert_eq!(
        w.put(&PutRequest { ignore_value: true, value: b("v"), ..preq("a", "") }, &NoLeases),
        Err(EtcdError::ValueProvided)
    );
    w.commit(true).unwrap();
    let a = get(&s, "a", 0).unwrap();
    assert_eq!((a.version, a.lease, &a.value[..], a.mod_revision), (5, 9, &b"3"[..], 6));
    let a4 = get(&s, "a", 4).unwrap();
    assert_eq!((&a4.value[..], a4.lease), (&b"2"[..], 0));
    assert_eq!(get(&s, "a", 5).unwrap().value, b("2"));
    assert_eq!(s.current_revision(), 6);
}

#[test]
fn mvcc_delete_tombstone_and_new_generation() {
    let (_d, s) = open();
    put(&s, "a", "1"); // 2
    put(&s, "a", "2"); // 3
    assert_eq!(del(&s, "a", ""), (1, 4));
    assert_eq!(get(&s, "a", 0), None);
    assert_eq!(get(&s, "a", 3).unwrap().version, 2);
    // Deleting nothing keeps the revision.
    assert_eq!(del(&s, "a", ""), (0, 4));
    assert_eq!(del(&s, "x", "y"), (0, 4));
    assert_eq!(s.current_revision(), 4);
    put(&s, "a", "3"); // 5
    let a = get(&s, "a", 0).unwrap();
    assert_eq!((a.create_revision, a.version), (5, 1));
    // Range delete with prev_kv.
    put(&s, "b", "1"); // 6
    put(&s, "c", "1"); // 7
    let mut w = s.write_batch().unwrap();
    let r = w.delete_range(&DeleteRangeRequest { key: b("a"), range_end: b("c"), prev_kv: true }).unwrap();
    w.commit(false).unwrap();
    assert_eq!(r.deleted, 2);
    assert_eq!(keys(&r.prev_kvs), ["a", "b"]);
    assert_eq!(r.header.unwrap().revision, 8);
    assert_eq!(keys(&s.range(&rreq("\0", "\0")).unwrap().kvs), ["c"]);
    assert_eq!(keys(&s.range(&RangeRequest { revision: 7, ..rreq("\0", "\0") }).unwrap().kvs), ["a", "b", "c"]);
}

#[test]
fn mvcc_range_forms_limit_count() {
    let (_d, s) = open();
    for k in ["a", "ab", "abc", "b", "c\u{7f}", "d"] {
        put(&s, k, k);
    }
    let ks = |k: &str, e: &str| keys(&s.range(&rreq(k, e)).unwrap().kvs);
    assert_eq!(ks("ab", ""), ["ab"]);
    assert_eq!(ks("a", "b"), ["a", "ab", "abc"]); // prefix "a"
    assert_eq!(ks("ab", "ac"), ["ab", "abc"]); // prefix "ab"
    assert_eq!(ks("b", "\0"), ["b", "c\u{7f}", "d"]); // from key
    assert_eq!(ks("\0", "\0"), ["a", "ab", "abc", "b", "c\u{7f}", "d"]); // all
    assert_eq!(ks("c", "a"), Vec::<String>::new());
    assert_eq!(ks("zz", ""), Vec::<String>::new());

    let r = s.range(&RangeRequest { limit: 2, ..rreq("\0", "\0") }).unwrap();
    assert_eq!((keys(&r.kvs), r.more, r.count), (vec!["a".to_string(), "ab".into()], true, 6));
    let r = s.range(&RangeRequest { limit: 6, ..rreq("\0", "\0") }).unwrap();
    assert_eq!((r.kvs.len(), r.more, r.count), (6, false, 6));
    let r = s.range(&RangeRequest { count_only: true, limit: 1, ..rreq("a", "b") }).unwrap();
    assert_eq!((r.kvs.len(), r.more, r.count), (0, false, 3));
    let r = s.range(&RangeRequest { keys_only: true, ..rreq("a", "b") }).unwrap();
    assert!(r.kvs.iter().all(|kv| kv.value.is_empty() && kv.version == 1));
    assert_eq!(r.header.unwrap().revision, 7);
}

#[test]
fn mvcc_range_sort_every_order_and_target() {
    let (_d, s) = open();
    // key  value  create  mod  version
    //  a    z       2      6     2
    //  b    y       3      3     1
    //  c    x       4      4     1
    //  d    w       5      7     3
    put(&s, "a", "q");
    put(&s, "b", "y");
    put(&s, "c", "x");
    put(&s, "d", "q");
    put(&s, "a", "z");
    put(&s, "d", "v");
    put(&s, "d", "w");
    let sorted = |order: SortOrder, target: SortTarget| {
        let r = s
            .range(&RangeRequest { sort_order: order as i32, sort_target: target as i32, ..rreq("\0", "\0") })
            .unwrap();
        keys(&r.kvs).concat()
    };
    use SortOrder::*;
    use SortTarget::*;
    let cases = [
        (None, Key, "abcd"),
        (Ascend, Key, "abcd"),
        (Descend, Key, "dcba"),
        // Only a target: etcd sorts ascending.
        (None, Version, "bcad"), // ties (b, c) keep key order
        (Ascend, Version, "bcad"),
        (Descend, Version, "dabc"),
        (None, Create, "abcd"),
        (Ascend, Create, "abcd"),
        (Descend, Create, "dcba"),
        (None, Mod, "bcad"),
        (Ascend, Mod, "bcad"),
        (Descend, Mod, "dacb"),
        (None, Value, "dcba"),
        (Ascend, Value, "dcba"),
        (Descend, Value, "abcd"),
    ];
    for (o, t, want) in cases {
        assert_eq!(sorted(o, t), want, "{o:?} {t:?}");
    }
    // Sort then limit: the top two by mod revision.
    let r = s.range(&RangeRequest { sort_order: 2, sort_target: 3, limit: 2, ..rreq("\0", "\0") }).unwrap();
    assert_eq!((keys(&r.kvs).concat(), r.more, r.count), ("da".to_string(), true, 4));
    assert!(matches!(s.range(&RangeRequest { sort_target: 7, ..rreq("a", "") }), Err(EtcdError::BadRequest(_))));
}

#[test]
fn mvcc_range_min_max_filters() {
    let (_d, s) = open();
    for k in ["a", "b", "c", "d"] {
        put(&s, k, "v"); // a:2 b:3 c:4 d:5
    }
    put(&s, "a", "w"); // a: create 2, mod 6
    let f = |r: RangeRequest| {
        let r = s.range(&RangeRequest { key: b("\0"), range_end: b("\0"), ..r }).unwrap();
        (keys(&r.kvs).concat(), r.count)
    };
    assert_eq!(f(RangeRequest { min_mod_revision: 4, ..Default::default() }), ("acd".into(), 4));
    assert_eq!(f(RangeRequest { max_mod_revision: 4, ..Default::default() }), ("bc".into(), 4));
    assert_eq!(f(RangeRequest { min_create_revision: 3, ..Default::default() }), ("bcd".into(), 4));
    assert_eq!(f(RangeRequest { max_create_revision: 3, ..Default::default() }), ("ab".into(), 4));
    assert_eq!(f(RangeRequest { min_create_revision: 3, max_mod_revision: 4, ..Default::default() }), ("bc".into(), 4));
    // Filters run before limit: `more` is about what the filter left.
    let r = s.range(&RangeRequest { min_mod_revision: 4, limit: 2, ..rreq("\0", "\0") }).unwrap();
    assert_eq!((keys(&r.kvs).concat(), r.more), ("ac".to_string(), true));
}

#[test]
fn mvcc_txn_compare_every_target_and_result() {
    let (_d, s) = open();
    let mut w = s.write_batch().unwrap();
    w.put(&PutRequest { lease: 5, ..preq("k", "m") }, &Leases(vec![5])).unwrap(); // 2
    w.put(&preq("k", "m"), &NoLeases).unwrap(); // 3, version 2, lease 0
    w.put(&PutRequest { lease: 5, ..preq("k", "m") }, &Leases(vec![5])).unwrap(); // 4, version 3, lease 5
    w.commit(false).unwrap();
    let k = get(&s, "k", 0).unwrap();
    assert_eq!((k.create_revision, k.mod_revision, k.version, k.lease), (2, 4, 3, 5));
    // (target, union below, equal, above) for key k
    let targets: Vec<(T, U, U, U)> = vec![
        (T::Version, U::Version(2), U::Version(3), U::Version(4)),
        (T::Create, U::CreateRevision(1), U::CreateRevision(2), U::CreateRevision(3)),
        (T::Mod, U::ModRevision(3), U::ModRevision(4), U::ModRevision(5)),
        (T::Value, U::Value(b("l")), U::Value(b("m")), U::Value(b("n"))),
        (T::Lease, U::Lease(4), U::Lease(5), U::Lease(6)),
    ];
    let judge = |c: Compare| {
        let t = TxnRequest { compare: vec![c], success: vec![], failure: vec![] };
        txn(&s, &t).unwrap().succeeded
    };
    for (t, below, eq, above) in targets {
        // The stored value is compared against the given one: stored > below.
        for (u, want_eq, want_gt, want_lt) in
            [(below, false, true, false), (eq, true, false, false), (above, false, false, true)]
        {
            assert_eq!(judge(cmp("k", t, R::Equal, u.clone())), want_eq, "{t:?} eq {u:?}");
            assert_eq!(judge(cmp("k", t, R::NotEqual, u.clone())), !want_eq, "{t:?} ne {u:?}");
            assert_eq!(judge(cmp("k", t, R::Greater, u.clone())), want_gt, "{t:?} gt {u:?}");
            assert_eq!(judge(cmp("k", t, R::Less, u.clone())), want_lt, "{t:?} lt {u:?}");
        }
    }
    // A missing key compares as version/create/mod/lease 0, and never on value.
    assert!(judge(cmp("nope", T::Version, R::Equal, U::Version(0))));
    assert!(judge(cmp("nope", T::Create, R::Equal, U::CreateRevision(0))));
    assert!(judge(cmp("nope", T::Mod, R::Less, U::ModRevision(1))));
    assert!(judge(cmp("nope", T::Lease, R::Equal, U::Lease(0))));
    assert!(!judge(cmp("nope", T::Value, R::Equal, U::Value(Bytes::new()))));
    assert!(!judge(cmp("nope", T::Value, R::NotEqual, U::Value(b("x")))));
    // A union of the wrong kind compares against 0.
    assert!(judge(cmp("k", T::Version, R::Greater, U::ModRevision(100))));
    // Compares change nothing.
    assert_eq!(s.current_revision(), 4);
}

#[test]
fn mvcc_txn_range_end_compares() {
    let (_d, s) = open();
    put(&s, "a1", "x"); // 2
    put(&s, "a2", "y"); // 3
    put(&s, "b", "z"); // 4
    let judge =
        |c: Compare| txn(&s, &TxnRequest { compare: vec![c], success: vec![], failure: vec![] }).unwrap().succeeded;
    let ranged = |target: T, result: R, u: U, end: &str| Compare { range_end: b(end), ..cmp("a", target, result, u) };
    // Every key in [a, b) must pass.
    assert!(judge(ranged(T::Create, R::Less, U::CreateRevision(4), "b")));
    assert!(!judge(ranged(T::Create, R::Less, U::CreateRevision(3), "b")));
    assert!(judge(ranged(T::Version, R::Equal, U::Version(1), "\0")));
    assert!(!judge(ranged(T::Value, R::Equal, U::Value(b("x")), "b")));
    assert!(judge(ranged(T::Value, R::Greater, U::Value(b("w")), "b")));
    // An empty range behaves as a missing key.
    assert!(judge(Compare { key: b("c"), ..ranged(T::Mod, R::Equal, U::ModRevision(0), "d") }));
    assert!(!judge(Compare { key: b("c"), ..ranged(T::Value, R::NotEqual, U::Value(b("q")), "d") }));
}

#[test]
fn mvcc_txn_one_revision_own_writes_and_headers() {
    let (_d, s) = open();
    put(&s, "a", "0"); // 2
    let t = TxnRequest {
        compare: vec![cmp("a", T::Value, R::Equal, U::Value(b("0")))],
        success: vec![
            op_get("a"),      // before any write: sees rev 2, header 2
            op_put("a", "1"), // 3.0
            op_get("a"),      // own write, header 3
            op_del("b", ""),  // nothing deleted, but the txn has changes: header 3
            op_put("b", "1"), // put and delete of "b" in one branch: refused below
        ],
        failure: vec![],
    };
    // The delete and put of "b" in one branch is a duplicate.
    assert_eq!(txn(&s, &t), Err(EtcdError::DuplicateKey));
    let t = TxnRequest { success: t.success[..4].to_vec(), ..t };
    let r = txn(&s, &t).unwrap();
    assert!(r.succeeded);
    assert_eq!(r.header.unwrap().revision, 3);
    let hdr = |i: usize| match &r.responses[i].response {
        Some(Response::ResponseRange(x)) => (x.header.unwrap().revision, x.kvs[0].value.clone()),
        Some(Response::ResponsePut(x)) => (x.header.unwrap().revision, Bytes::new()),
        Some(Response::ResponseDeleteRange(x)) => (x.header.unwrap().revision, Bytes::new()),
        _ => panic!(),
    };
    assert_eq!(hdr(0), (2, b("0")));
    assert_eq!(hdr(1), (3, Bytes::new()));
    assert_eq!(hdr(2), (3, b("1")));
    assert_eq!(hdr(3), (3, Bytes::new()));

    // A delete of nothing as the first op reports the revision before.
    let t = TxnRequest {
        compare: vec![],
        success: vec![op_del("zz", ""), op_put("c", "1"), op_put("d", "1")],
        failure: vec![],
    };
    let r = txn(&s, &t).unwrap();
    match &r.responses[0].response {
        Some(Response::ResponseDeleteRange(x)) => assert_eq!(x.header.unwrap().revision, 3),
        _ => panic!(),
    }
    assert_eq!(r.header.unwrap().revision, 4);
    // Both puts share revision 4, as sub revisions 0 and 1.
    assert_eq!(get(&s, "c", 0).unwrap().mod_revision, 4);
    assert_eq!(get(&s, "d", 0).unwrap().mod_revision, 4);
    // A read-only txn reports the current revision.
    let r = txn(&s, &TxnRequest { compare: vec![], success: vec![op_get("a")], failure: vec![] }).unwrap();
    assert_eq!(r.header.unwrap().revision, 4);
    assert_eq!(s.current_revision(), 4);
}

#[test]
fn mvcc_txn_nested_and_failure_branch() {
    let (_d, s) = open();
    put(&s, "a", "1"); // 2
    let nested = |succ: Vec<RequestOp>, fail: Vec<RequestOp>, c: Vec<Compare>| RequestOp {
        request: Some(Request::RequestTxn(TxnRequest { compare: c, success: succ, failure: fail })),
    };
    // The nested compare is judged before the outer ops run: "a" is still "1".
    let t = TxnRequest {
        compare: vec![cmp("a", T::Value, R::Equal, U::Value(b("nope")))],
        success: vec![op_put("x", "never")],
        failure: vec![
            op_put("a", "2"),
            nested(
                vec![op_put("n", "then")],
                vec![op_put("n", "else")],
                vec![cmp("a", T::Value, R::Equal, U::Value(b("1")))],
            ),
        ],
    };
    let r = txn(&s, &t).unwrap();
    assert!(!r.succeeded);
    assert_eq!(r.header.unwrap().revision, 3);
    match &r.responses[1].response {
        Some(Response::ResponseTxn(inner)) => {
            assert!(inner.succeeded);
            // etcd leaves nested txn headers empty.
            assert_eq!(inner.header, Some(ResponseHeader::default()));
            match &inner.responses[0].response {
                Some(Response::ResponsePut(p)) => assert_eq!(p.header.unwrap().revision, 3),
                _ => panic!(),
            }
        }
        _ => panic!(),
    }
    assert_eq!(get(&s, "n", 0).unwrap().value, b("then"));
    assert_eq!(get(&s, "x", 0), None);
    let n = get(&s, "n", 0).unwrap();
    assert_eq!(n.mod_revision, 3);

    // Errors on the chosen path refuse the whole txn and change nothing.
    let bad = TxnRequest {
        compare: vec![],
        success: vec![op_put("q", "1"), nested(vec![op_put("a", "9")], vec![], vec![]), {
            let mut r = rreq("a", "");
            r.revision = 99;
            RequestOp { request: Some(Request::RequestRange(r)) }
        }],
        failure: vec![],
    };
    assert_eq!(txn(&s, &bad), Err(EtcdError::FutureRev));
    let ign = TxnRequest {
        compare: vec![],
        success: vec![
            op_put("q", "1"),
            RequestOp {
                request: Some(Request::RequestPut(PutRequest {
                    key: b("zz"),
                    ignore_value: true,
                    ..Default::default()
                })),
            },
        ],
        failure: vec![],
    };
    assert_eq!(txn(&s, &ign), Err(EtcdError::KeyNotFound));
    let lease = TxnRequest {
        compare: vec![],
        success: vec![RequestOp { request: Some(Request::RequestPut(PutRequest { lease: 3, ..preq("l", "") })) }],
        failure: vec![],
    };
    assert_eq!(txn(&s, &lease), Err(EtcdError::LeaseNotFound));
    let too_many = TxnRequest {
        compare: vec![],
        success: (0..129).map(|i| op_put(&format!("k{i}"), "")).collect(),
        failure: vec![],
    };
    assert_eq!(txn(&s, &too_many), Err(EtcdError::TooManyOps));
    assert_eq!(s.current_revision(), 3);
    assert_eq!(get(&s, "q", 0), None);
}

#[test]
fn mvcc_compaction_errors_and_effects() {
    let (d, s) = open();
    put(&s, "a", "1"); // 2
    put(&s, "a", "2"); // 3
    put(&s, "b", "1"); // 4
    del(&s, "b", ""); // 5
    put(&s, "c", "1"); // 6
    assert_eq!(compact(&s, 7), Err(EtcdError::FutureRev));
    // Never compacted: etcd's floor is -1, so 0 is accepted and changes nothing.
    assert_eq!(compact(&s, 0), Ok(6));
    assert_eq!(compact(&s, 0), Err(EtcdError::Compacted));
    let size_before = s.db_size();
    assert_eq!(compact(&s, 5), Ok(6));
    assert_eq!(s.compact_revision(), 5);
    assert_eq!(compact(&s, 5), Err(EtcdError::Compacted));
    assert_eq!(compact(&s, 4), Err(EtcdError::Compacted));
    for rev in 1..5 {
        assert_eq!(s.range(&RangeRequest { revision: rev, ..rreq("a", "") }), Err(EtcdError::Compacted));
    }
    // The compact revision itself is still readable.
    assert_eq!(get(&s, "a", 5).unwrap().value, b("2"));
    assert_eq!(get(&s, "b", 5), None);
    assert_eq!(get(&s, "c", 6).unwrap().value, b("1"));
    // Physically: a@2 and b's put and tombstone are gone; a@3 and c@6 remain.
    assert_eq!(s.state_for_test(), vec![(3, 0, false), (6, 0, false)]);
    assert!(s.db_size() >= size_before || s.db_size() > 0);
    assert!(s.db_size_in_use() <= s.db_size());
    // Restart keeps the compaction and the revision.
    let s = reopen(&d, s);
    assert_eq!(s.compact_revision(), 5);
    assert_eq!(s.current_revision(), 6);
    assert_eq!(get(&s, "a", 0).unwrap().version, 2);
    assert_eq!(put(&s, "a", "3"), 7);
    assert_eq!(get(&s, "a", 0).unwrap().version, 3);
    assert_eq!(get(&s, "a", 0).unwrap().create_revision, 2);
    // Compacting everything: a delete at the top revision is removed too, and
    // the revision survives a restart.
    del(&s, "a", ""); // 8
    del(&s, "c", ""); // 9
    assert_eq!(compact(&s, 9), Ok(9));
    assert_eq!(s.state_for_test(), vec![]);
    let s = reopen(&d, s);
    assert_eq!(s.current_revision(), 9);
    assert_eq!(put(&s, "a", "new"), 10);
    assert_eq!(get(&s, "a", 0).unwrap().create_revision, 10);
}

#[test]
fn mvcc_reopen_rebuilds_identical_state_and_consistent_index() {
    let (d, s) = open();
    let mut w = s.write_batch().unwrap();
    w.put(&preq("a", "1"), &NoLeases).unwrap();
    w.put(&preq("b", "1"), &NoLeases).unwrap();
    w.set_consistent_index(10, 2);
    w.commit(true).unwrap();
    put(&s, "a", "2");
    del(&s, "b", "");
    put(&s, "b", "2");
    assert_eq!(s.consistent_index(), (10, 2));
    assert_eq!(s.durable_consistent_index(), 10);
    let mut w = s.write_batch().unwrap();
    w.set_consistent_index(11, 3);
    w.commit(false).unwrap();
    assert_eq!(s.consistent_index(), (11, 3));
    assert_eq!(s.durable_consistent_index(), 10);
    let all = |s: &Store| {
        (1..=s.current_revision())
            .map(|rev| s.range(&RangeRequest { revision: rev, ..rreq("\0", "\0") }).unwrap().kvs)
            .collect::<Vec<_>>()
    };
    let before = all(&s);
    let rev = s.current_revision();
    let s = reopen(&d, s);
    assert_eq!(s.current_revision(), rev);
    assert_eq!(all(&s), before);
    assert_eq!(s.consistent_index(), (11, 3));
    assert_eq!(s.durable_consistent_index(), 11);
    let b = get(&s, "b", 0).unwrap();
    assert_eq!((b.create_revision, b.version), (6, 1));
}

#[test]
fn mvcc_dropped_batch_leaves_nothing() {
    let (d, s) = open();
    put(&s, "a", "1"); // 2
    put(&s, "b", "1"); // 3
    {
        let mut w = s.write_batch().unwrap();
        w.put(&preq("a", "2"), &NoLeases).unwrap();
        w.put(&preq("new", "1"), &NoLeases).unwrap();
        w.delete_range(&DeleteRangeRequest { key: b("b"), ..Default::default() }).unwrap();
        w.compact(&CompactionRequest { revision: 4, physical: false }).unwrap();
        w.put(&preq("b", "again"), &NoLeases).unwrap();
        w.set_consistent_index(99, 9);
        // dropped here
    }
    assert_eq!(s.current_revision(), 3);
    assert_eq!(s.compact_revision(), 0);
    assert_eq!(s.consistent_index(), (0, 0));
    assert_eq!(get(&s, "a", 0).unwrap().value, b("1"));
    assert_eq!(get(&s, "a", 2).unwrap().value, b("1"));
    assert_eq!(get(&s, "new", 0), None);
    assert_eq!(get(&s, "b", 0).unwrap().value, b("1"));
    // The next write takes the revision the dropped batch had used.
    assert_eq!(put(&s, "c", "1"), 4);
    let s = reopen(&d, s);
    assert_eq!(s.current_revision(), 4);
    assert_eq!(get(&s, "new", 0), None);
}

#[test]
fn mvcc_non_durable_commit_is_visible_to_readers() {
    let (_d, s) = open();
    let mut w = s.write_batch().unwrap();
    w.put(&preq("a", "1"), &NoLeases).unwrap();
    w.set_consistent_index(5, 1);
    w.commit(false).unwrap();
    let s2 = &s;
    let seen = std::thread::scope(|sc| sc.spawn(move || get(s2, "a", 0)).join().unwrap());
    assert_eq!(seen.unwrap().value, b("1"));
    assert_eq!(s.consistent_index(), (5, 1));
    assert_eq!(s.durable_consistent_index(), 0);
    // The accessors do not wait for an open batch.
    let w = s.write_batch().unwrap();
    assert_eq!(s.current_revision(), 2);
    assert!(s.db_size_in_use() <= s.db_size());
    drop(w);
}

#[test]
fn mvcc_readers_wait_for_an_open_batch() {
    let (_d, s) = open();
    let mut w = s.write_batch().unwrap();
    w.put(&preq("a", "1"), &NoLeases).unwrap();
    std::thread::scope(|sc| {
        let h = sc.spawn(|| get(&s, "a", 0));
        std::thread::sleep(std::time::Duration::from_millis(50));
        w.commit(false).unwrap();
        // The reader saw the batch's result, never the index ahead of the backend.
        assert_eq!(h.join().unwrap().unwrap().value, b("1"));
    });
}

#[test]
fn alarms_persist_in_the_batch_and_roll_back_with_it() {
    let (dir, s) = open();
    let mut w = s.write_batch().unwrap();
    assert!(w.activate_alarm(7, ALARM_NOSPACE).unwrap());
    assert!(!w.activate_alarm(7, ALARM_NOSPACE).unwrap());
    drop(w); // rolled back
    assert!(s.alarms().is_empty());
    let mut w = s.write_batch().unwrap();
    assert!(w.activate_alarm(7, ALARM_NOSPACE).unwrap());
    assert!(w.activate_alarm(9, ALARM_CORRUPT).unwrap());
    w.commit(false).unwrap();
    let s = reopen(&dir, s);
    assert_eq!(s.alarms(), vec![(ALARM_NOSPACE, 7), (ALARM_CORRUPT, 9)]);
    let mut w = s.write_batch().unwrap();
    assert!(w.deactivate_alarm(7, ALARM_NOSPACE).unwrap());
    assert!(!w.deactivate_alarm(7, ALARM_NOSPACE).unwrap());
    assert!(w.has_alarm(ALARM_CORRUPT) && !w.has_alarm(ALARM_NOSPACE));
    w.commit(true).unwrap();
    let s = reopen(&dir, s);
    assert_eq!(s.alarms(), vec![(ALARM_CORRUPT, 9)]);
}

#[test]
fn hash_kv_is_deterministic_and_bounded_by_revision() {
    let (_d1, one) = open();
    let (_d2, two) = open();
    for s in [&one, &two] {
        put(s, "a", "1");
        put(s, "b", "2");
    }
    assert_eq!(one.hash_kv(0).unwrap(), two.hash_kv(0).unwrap());
    assert_eq!(one.hash_all().unwrap(), two.hash_all().unwrap());
    let (at2, cur, compacted) = one.hash_kv(2).unwrap();
    assert_eq!((cur, compacted), (3, -1));
    put(&one, "c", "3");
    assert_eq!(one.hash_kv(2).unwrap().0, at2);
    assert_ne!(one.hash_kv(0).unwrap().0, two.hash_kv(0).unwrap().0);
    assert_ne!(one.hash_all().unwrap(), two.hash_all().unwrap());
    assert_eq!(one.hash_kv(5), Err(EtcdError::FutureRev));
    compact(&one, 3).unwrap();
    assert_eq!(one.hash_kv(3), Err(EtcdError::Compacted));
    assert_eq!(one.hash_kv(4).unwrap().2, 3);
}

#[test]
fn copy_to_is_a_store_that_opens_with_every_commit() {
    let (dir, s) = open();
    put(&s, "a", "1"); // non-durable commits: the copy must still hold them
    put(&s, "b", "2");
    let dest = dir.path().join("copy");
    let size = s.copy_to(&dest).unwrap();
    assert_eq!(size, std::fs::metadata(&dest).unwrap().len());
    put(&s, "c", "3");
    let copy = Store::open(&dest, StoreOptions::default()).unwrap();
    assert_eq!(copy.current_revision(), 3);
    assert_eq!(get(&copy, "b", 0).unwrap().value, b("2"));
    assert!(get(&copy, "c", 0).is_none());
    assert_eq!(copy.hash_kv(0).unwrap().0, s.hash_kv(3).unwrap().0);
}

#[test]
fn defragment_keeps_data_and_does_not_grow_the_file() {
    let (dir, s) = open();
    let big = "v".repeat(10_000);
    for i in 0..50 {
        put(&s, &format!("k{i}"), &big);
    }
    del(&s, "k", "l");
    compact(&s, s.current_revision()).unwrap();
    put(&s, "kept", "yes");
    let before = s.db_size();
    let hash = s.hash_kv(0).unwrap();
    s.defragment().unwrap();
    assert!(s.db_size() <= before, "{} > {before}", s.db_size());
    assert_eq!(s.hash_kv(0).unwrap(), hash);
    put(&s, "after", "1");
    let s = reopen(&dir, s);
    assert_eq!(get(&s, "kept", 0).unwrap().value, b("yes"));
    assert_eq!(get(&s, "after", 0).unwrap().value, b("1"));
}

/// What the defragment tests store before defragmenting: small and chunked
/// records, deletes, and a compaction that leaves garbage to drop.
fn fill_for_defragment(s: &Store) {
    for i in 0..2_000 {
        put(s, &format!("k{i:05}"), &i.to_string());
    }
    for i in 0..20 {
        put(s, &format!("big{i}"), &"v".repeat(10_000));
    }
    del(s, "k00", "k01");
    compact(s, s.current_revision()).unwrap();
}

/// What they write while the defragment copies: more records than one
/// catch-up round ends on, a chunked record, a delete, a lease, and a
/// compaction whose physical half must wait for the defragment.
fn write_during_defragment(s: &Store) {
    for i in 0..1_500 {
        put(s, &format!("new{i:05}"), &i.to_string());
    }
    put(s, "bignew", &"w".repeat(10_000));
    del(s, "k01", "k015");
    let mut w = s.write_batch().unwrap();
    w.put_lease(7, 60).unwrap();
    w.commit(false).unwrap();
    compact_logically(s, s.current_revision() - 10);
    assert!(s.compaction_pending());
}

#[test]
fn defragment_lets_reads_and_writes_through_while_it_copies_and_keeps_them() {
    let (dir, s) = open();
    fill_for_defragment(&s);
    let before = s.db_size();
    let s = std::sync::Arc::new(s);
    let during = s.clone();
    // The hook runs on the defragment's thread between its bulk copy and
    // its catch-up: if it held a lock a write batch or a read needs, this
    // would never return.
    *s.defrag_hook.lock() = Some(Box::new(move || {
        write_during_defragment(&during);
        assert_eq!(get(&during, "k00999", 0), None);
        assert_eq!(get(&during, "k01499", 0), None);
        assert_eq!(get(&during, "k01500", 0).unwrap().value, b("1500"));
        assert_eq!(get(&during, "new01499", 0).unwrap().value, b("1499"));
    }));
    s.defragment().unwrap();
    assert!(s.defrag_hook.lock().is_none(), "the hook ran");
    assert!(!dir.path().join("db.defrag").exists());

    // The same history without a defragment hashes the same, table by table.
    let (_d2, reference) = open();
    fill_for_defragment(&reference);
    write_during_defragment(&reference);
    assert_eq!(s.hash_all().unwrap(), reference.hash_all().unwrap());
    assert_eq!(s.current_revision(), reference.current_revision());
    assert_eq!(s.leases().unwrap(), vec![(7, 60)]);
    // The compaction queued meanwhile runs once the defragment is done.
    s.finish_compactions().unwrap();
    reference.finish_compactions().unwrap();
    assert_eq!(s.hash_all().unwrap(), reference.hash_all().unwrap());
    assert!(s.db_size() <= before, "{} > {before}", s.db_size());

    // The new file is the store: reopened, it holds the same, and takes writes.
    let s = std::sync::Arc::into_inner(s).expect("the hook dropped its reference");
    let s = reopen(&dir, s);
    assert_eq!(s.hash_all().unwrap(), reference.hash_all().unwrap());
    put(&s, "after", "1");
    assert_eq!(get(&s, "bignew", 0).unwrap().value.len(), 10_000);
}

#[test]
fn defragment_drops_its_copy_when_a_snapshot_replaced_the_store_meanwhile() {
    let (dir, s) = open();
    fill_for_defragment(&s);
    let (incoming, expected) = (dir.path().join("incoming"), dir.path().join("expected"));
    s.copy_to(&incoming).unwrap();
    s.copy_to(&expected).unwrap();
    let s = std::sync::Arc::new(s);
    let during = s.clone();
    *s.defrag_hook.lock() = Some(Box::new(move || {
        write_during_defragment(&during);
        during.restore(&incoming).unwrap();
    }));
    s.defragment().unwrap();
    let expected = Store::open(&expected, StoreOptions::default()).unwrap();
    assert_eq!(s.hash_all().unwrap(), expected.hash_all().unwrap());
    assert_eq!(get(&s, "new00000", 0), None);
    assert!(!dir.path().join("db.defrag").exists());
}

#[test]
fn a_defragment_cut_short_leaves_a_copy_that_open_removes() {
    let (dir, s) = open();
    put(&s, "a", "1");
    drop(s);
    std::fs::write(dir.path().join("db.defrag"), b"half a copy").unwrap();
    let s = Store::open(&dir.path().join("db"), StoreOptions::default()).unwrap();
    assert!(!dir.path().join("db.defrag").exists());
    assert_eq!(get(&s, "a", 0).unwrap().value, b("1"));
}

#[test]
fn big_records_are_chunked_whole_pages_and_read_back_everywhere() {
    let (dir, s) = open();
    let sizes = [backend::CHUNK_BYTES - 40, backend::CHUNK_BYTES, backend::CHUNK_BYTES * 3, 65536, 200_000];
    let value = |n: usize, tag: u8| (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(tag)).collect::<Vec<u8>>();
    let mut revs = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        let mut w = s.write_batch().unwrap();
        let req = PutRequest { key: b(&format!("k{i}")), value: value(n, 1).into(), ..Default::default() };
        revs.push(w.put(&req, &NoLeases).unwrap().header.unwrap().revision);
        w.commit(false).unwrap();
    }
    // A second version of k4, so compaction has a chunked record to drop.
    let mut w = s.write_batch().unwrap();
    w.put(&PutRequest { key: b("k4"), value: value(70_000, 2).into(), ..Default::default() }, &NoLeases).unwrap();
    w.commit(false).unwrap();
    let check = |s: &Store| {
        for (i, &n) in sizes.iter().enumerate() {
            let kv = get(s, &format!("k{i}"), revs[i]).expect("old revision readable");
            assert_eq!(kv.value.as_ref(), value(n, 1).as_slice(), "k{i} ({n} bytes)");
        }
        assert_eq!(get(s, "k4", 0).unwrap().value.as_ref(), value(70_000, 2).as_slice());
        let events = s.events(revs[0], revs[4] + 1).unwrap();
        assert_eq!(events.len(), sizes.len() + 1);
        assert_eq!(events[3].kv.as_ref().unwrap().value.len(), 65536);
    };
    check(&s);
    let hash = s.hash_kv(0).unwrap().0;
    let s = reopen(&dir, s);
    check(&s);
    assert_eq!(s.hash_kv(0).unwrap().0, hash, "the same after reopening");
    // Compaction past k4's first version drops its head and its chunks.
    let chunks_before = chunk_count(&s);
    compact(&s, revs[4] + 1).unwrap();
    assert_eq!(chunk_count(&s), chunks_before - 200_000 / backend::CHUNK_BYTES);
    assert_eq!(get(&s, "k4", 0).unwrap().value.len(), 70_000);
    let s = reopen(&dir, s);
    assert_eq!(get(&s, "k3", 0).unwrap().value.as_ref(), value(65536, 1).as_slice());
}

fn chunk_count(s: &Store) -> usize {
    s.chunks_for_test()
}

/// Compacts at `rev` in the index only (the physical half left queued).
fn compact_logically(s: &Store, rev: i64) {
    let mut w = s.write_batch().unwrap();
    w.compact(&CompactionRequest { revision: rev, physical: false }).unwrap();
    w.commit(true).unwrap();
}

#[test]
fn compactions_record_the_hash_hashkv_gave_before_them_and_keep_the_last_ten() {
    let (_d, s) = open();
    let mut expected = Vec::new();
    for round in 0..COMPACTION_HASHES_KEPT + 2 {
        for i in 0..5 {
            put(&s, &format!("k{i}"), &round.to_string());
        }
        put(&s, "big", &"v".repeat(10_000 + round));
        del(&s, "k4", "");
        let rev = s.current_revision();
        let (hash, _, compact_revision) = s.hash_kv(rev).unwrap();
        compact(&s, rev).unwrap();
        expected.push(CompactionHash { hash, revision: rev, compact_revision });
    }
    assert_eq!(expected[0].compact_revision, -1);
    assert_eq!(s.compaction_hashes(), expected[2..]);
    // A peer asking at a compacted revision gets the recorded hash.
    let last = expected[expected.len() - 1];
    assert_eq!(s.peer_hash_kv(last.revision).unwrap(), (last.hash, s.current_revision(), last.compact_revision));
}

#[test]
fn a_compaction_resumed_after_a_restart_records_no_hash() {
    let (dir, s) = open();
    for i in 0..10 {
        put(&s, "a", &i.to_string());
    }
    compact_logically(&s, 8);
    let s = reopen(&dir, s);
    assert!(s.compaction_pending());
    s.finish_compactions().unwrap();
    assert_eq!(s.compaction_hashes(), vec![]);
    compact(&s, 10).unwrap();
    assert_eq!(s.compaction_hashes().len(), 1);
}

#[test]
fn physical_compaction_runs_in_bounded_batches_after_the_logical_one() {
    let (_d, s) = open();
    for i in 0..10 {
        put(&s, "a", &i.to_string()); // 2..=11
    }
    put(&s, "b", "1"); // 12
    compact_logically(&s, 11);
    // Logically done: nothing below 11 is readable, the latest is.
    assert_eq!(s.compact_revision(), 11);
    assert_eq!(s.range(&RangeRequest { revision: 10, ..rreq("a", "") }), Err(EtcdError::Compacted));
    assert_eq!(get(&s, "a", 11).unwrap().value, b("9"));
    // Physically not yet: every record is still there.
    assert_eq!(s.state_for_test().len(), 11);
    assert_eq!(s.finished_compact_revision(), -1);
    let hash = s.hash_kv(0).unwrap();
    // Batches of 4 records: 2..5, 6..9, then 10, 11 (fewer than 4: done).
    let step = s.compact_step(4).unwrap();
    assert_eq!((step.idle, step.deleted, step.finished), (false, 4, None));
    assert_eq!(s.state_for_test().len(), 7);
    assert_eq!(s.hash_kv(0).unwrap(), hash, "HashKV does not see how far the batches got");
    let step = s.compact_step(4).unwrap();
    assert_eq!((step.deleted, step.finished), (4, None));
    let step = s.compact_step(4).unwrap();
    assert_eq!((step.deleted, step.finished), (1, Some(11)));
    assert_eq!(s.state_for_test(), vec![(11, 0, false), (12, 0, false)]);
    assert_eq!(s.finished_compact_revision(), 11);
    assert!(s.compact_step(4).unwrap().idle);
    assert_eq!(s.hash_kv(0).unwrap(), hash);
}

#[test]
fn a_compaction_cut_short_resumes_on_open() {
    let (d, s) = open();
    for i in 0..20 {
        put(&s, &format!("k{}", i % 3), &i.to_string()); // 2..=21
    }
    del(&s, "k0", ""); // 22
    put(&s, "k0", "again"); // 23
    let before: Vec<_> =
        (22..=23).map(|rev| s.range(&RangeRequest { revision: rev, ..rreq("\0", "\0") }).unwrap().kvs).collect();
    compact_logically(&s, 22);
    s.compact_step(5).unwrap();
    // The process dies here: the scheduled mark is durable, the finished one is not there.
    let s = reopen(&d, s);
    assert_eq!(s.compact_revision(), 22);
    assert_eq!(s.current_revision(), 23);
    assert_eq!(s.finished_compact_revision(), -1);
    assert!(!s.compact_step(usize::MAX).unwrap().idle, "open queued the rest again");
    assert_eq!(s.finished_compact_revision(), 22);
    // Below 22 only the versions alive at 22 remain: k2@19 and k1@21 (k0 was deleted at 22).
    assert_eq!(s.state_for_test(), vec![(19, 0, false), (21, 0, false), (23, 0, false)]);
    let after: Vec<_> =
        (22..=23).map(|rev| s.range(&RangeRequest { revision: rev, ..rreq("\0", "\0") }).unwrap().kvs).collect();
    assert_eq!(after, before);
    // And it is finished for good.
    let s = reopen(&d, s);
    assert_eq!(s.finished_compact_revision(), 22);
    assert!(s.compact_step(usize::MAX).unwrap().idle);
}

#[test]
fn physical_waiters_are_handed_back_when_their_compaction_is_done() {
    let (_d, s) = open();
    for i in 0..6 {
        put(&s, "a", &i.to_string()); // 2..=7
    }
    compact_logically(&s, 4);
    compact_logically(&s, 6);
    let waiter = |token| CompactionWaiter { token, answer: vec![token as u8] };
    assert!(s.when_compacted(4, waiter(1)).is_none());
    assert!(s.when_compacted(6, waiter(2)).is_none());
    let step = s.compact_step(usize::MAX).unwrap();
    assert_eq!((step.finished, step.waiters.iter().map(|w| w.token).collect::<Vec<_>>()), (Some(4), vec![1]));
    let step = s.compact_step(usize::MAX).unwrap();
    assert_eq!((step.finished, step.waiters.iter().map(|w| w.token).collect::<Vec<_>>()), (Some(6), vec![2]));
    // Already done: handed straight back.
    assert_eq!(s.when_compacted(6, waiter(3)).map(|w| w.token), Some(3));
}

#[test]
fn a_dropped_batch_queues_no_compaction() {
    let (_d, s) = open();
    put(&s, "a", "1");
    put(&s, "a", "2");
    {
        let mut w = s.write_batch().unwrap();
        w.compact(&CompactionRequest { revision: 2, physical: false }).unwrap();
    }
    assert!(s.compact_step(usize::MAX).unwrap().idle);
    assert_eq!(s.state_for_test().len(), 2);
}
