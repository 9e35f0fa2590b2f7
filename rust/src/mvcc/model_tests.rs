//! Property test: the store against a model that keeps a full snapshot of
//! the key space at every revision (obviously right, hopelessly slow at
//! scale). After every step, every readable revision is read back whole.

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;

use super::key_index::KeySpan;
use super::tests::NoLeases;
use super::*;
use crate::error::EtcdError;
use crate::pb::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    request_op::Request,
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use crate::pb::mvccpb::KeyValue;

const KEYS: [&str; 4] = ["a", "ab", "b", "c"];

#[derive(Clone, Debug)]
enum Span {
    Single(usize),
    Range(usize, usize),
    From(usize),
}

impl Span {
    fn bytes(&self) -> (Bytes, Bytes) {
        let k = |i: usize| Bytes::from_static(KEYS[i].as_bytes());
        match *self {
            Span::Single(i) => (k(i), Bytes::new()),
            // End "b" after "ab" etc.; may be inverted on purpose.
            Span::Range(i, j) => (k(i), k(j)),
            Span::From(i) => (k(i), Bytes::from_static(b"\0")),
        }
    }
}

#[derive(Clone, Debug)]
enum WOp {
    Put(usize, u8),
    Del(Span),
}

#[derive(Clone, Debug)]
enum Step {
    Put(usize, u8),
    Del(Span),
    /// Compare key's version with a number; then/else op lists.
    Txn(usize, i64, Vec<WOp>, Vec<WOp>),
    /// Offset from the current revision (may be in the future or compacted).
    Compact(i64),
    /// One physical compaction batch of at most this many records.
    CompactBatch(usize),
    Reopen,
    Commit(bool),
}

fn span() -> impl Strategy<Value = Span> {
    prop_oneof![
        (0..KEYS.len()).prop_map(Span::Single),
        (0..KEYS.len(), 0..KEYS.len()).prop_map(|(i, j)| Span::Range(i, j)),
        (0..KEYS.len()).prop_map(Span::From),
    ]
}

fn wop() -> impl Strategy<Value = WOp> {
    prop_oneof![
        3 => (0..KEYS.len(), 0..4u8).prop_map(|(k, v)| WOp::Put(k, v)),
        1 => span().prop_map(WOp::Del),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..KEYS.len(), 0..4u8).prop_map(|(k, v)| Step::Put(k, v)),
        2 => span().prop_map(Step::Del),
        3 => (0..KEYS.len(), 0..3i64, prop::collection::vec(wop(), 0..3), prop::collection::vec(wop(), 0..3))
            .prop_map(|(k, v, t, e)| Step::Txn(k, v, t, e)),
        1 => (-3..2i64).prop_map(Step::Compact),
        2 => (1..4usize).prop_map(Step::CompactBatch),
        1 => Just(Step::Reopen),
        1 => any::<bool>().prop_map(Step::Commit),
    ]
}

/// `snaps[rev]` is the whole key space as of revision `rev` (index 0 unused).
struct Model {
    snaps: Vec<BTreeMap<Bytes, KeyValue>>,
    compact: i64,
}

impl Model {
    fn rev(&self) -> i64 {
        self.snaps.len() as i64 - 1
    }

    /// Applies writes as one revision; false (and nothing) if they changed nothing.
    fn write(&mut self, ops: &[WOp]) -> bool {
        let rev = self.rev() + 1;
        let mut m = self.snaps.last().unwrap().clone();
        let mut changed = false;
        for op in ops {
            match op {
                WOp::Put(k, v) => {
                    let key = Bytes::from_static(KEYS[*k].as_bytes());
                    let (create, version) = m.get(&key).map_or((rev, 1), |p| (p.create_revision, p.version + 1));
                    m.insert(
                        key.clone(),
                        KeyValue {
                            key,
                            create_revision: create,
                            mod_revision: rev,
                            version,
                            value: vec![*v].into(),
                            lease: 0,
                        },
                    );
                    changed = true;
                }
                WOp::Del(s) => {
                    let (k, e) = s.bytes();
                    let span = KeySpan::new(&k, &e);
                    let before = m.len();
                    m.retain(|key, _| !span.contains(key));
                    changed |= m.len() != before;
                }
            }
        }
        if changed {
            self.snaps.push(m);
        }
        changed
    }
}

fn to_op(op: &WOp) -> RequestOp {
    RequestOp {
        request: Some(match op {
            WOp::Put(k, v) => Request::RequestPut(PutRequest {
                key: Bytes::from_static(KEYS[*k].as_bytes()),
                value: vec![*v].into(),
                ..Default::default()
            }),
            WOp::Del(s) => {
                let (key, range_end) = s.bytes();
                Request::RequestDeleteRange(DeleteRangeRequest { key, range_end, prev_kv: false })
            }
        }),
    }
}

fn all_at(s: &Store, rev: i64) -> Result<Vec<KeyValue>, EtcdError> {
    s.range(&RangeRequest { key: "\0".into(), range_end: "\0".into(), revision: rev, ..Default::default() })
        .map(|r| r.kvs)
}

fn check(s: &Store, m: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(s.current_revision(), m.rev());
    prop_assert_eq!(s.compact_revision(), m.compact.max(0));
    for rev in m.compact.max(1)..=m.rev() {
        let want: Vec<_> = m.snaps[rev as usize].values().cloned().collect();
        prop_assert_eq!(all_at(s, rev)?, want, "at revision {}", rev);
    }
    if m.compact > 1 {
        prop_assert_eq!(all_at(s, m.compact - 1), Err(EtcdError::Compacted));
    }
    prop_assert_eq!(all_at(s, m.rev() + 1), Err(EtcdError::FutureRev));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn mvcc_store_matches_model(steps in prop::collection::vec(step(), 1..40), probes in prop::collection::vec((span(), 0..4i64), 4)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut s = Store::open(&path, StoreOptions::default())?;
        let mut m = Model { snaps: vec![BTreeMap::new(), BTreeMap::new()], compact: -1 }; // etcd's floor: compacting at 0 once succeeds
        let mut durable = false;
        for st in &steps {
            match st {
                Step::Put(k, v) => {
                    let mut w = s.write_batch()?;
                    let r = w.put(&PutRequest { key: Bytes::from_static(KEYS[*k].as_bytes()), value: vec![*v].into(), ..Default::default() }, &NoLeases)?;
                    w.commit(durable)?;
                    m.write(&[WOp::Put(*k, *v)]);
                    prop_assert_eq!(r.header.unwrap().revision, m.rev());
                }
                Step::Del(sp) => {
                    let (key, range_end) = sp.bytes();
                    let mut w = s.write_batch()?;
                    let r = w.delete_range(&DeleteRangeRequest { key, range_end, prev_kv: true })?;
                    w.commit(durable)?;
                    let before = m.snaps.last().unwrap().clone();
                    let changed = m.write(&[WOp::Del(sp.clone())]);
                    prop_assert_eq!(r.deleted > 0, changed);
                    prop_assert_eq!(r.deleted as usize, before.len() - m.snaps.last().unwrap().len());
                    prop_assert_eq!(r.header.unwrap().revision, m.rev());
                }
                Step::Txn(k, ver, then, els) => {
                    let req = TxnRequest {
                        compare: vec![Compare {
                            result: CompareResult::Equal as i32,
                            target: CompareTarget::Version as i32,
                            key: Bytes::from_static(KEYS[*k].as_bytes()),
                            range_end: Bytes::new(),
                            target_union: Some(TargetUnion::Version(*ver)),
                        }],
                        success: then.iter().map(to_op).collect(),
                        failure: els.iter().map(to_op).collect(),
                    };
                    let valid = check_txn(&req, 128);
                    let mut w = s.write_batch()?;
                    let r = w.txn(&req, &NoLeases);
                    if let Err(e) = valid {
                        prop_assert_eq!(r, Err(e));
                        drop(w);
                    } else {
                        let r = r?;
                        w.commit(durable)?;
                        let cur_ver = m.snaps.last().unwrap().get(KEYS[*k].as_bytes()).map_or(0, |kv| kv.version);
                        prop_assert_eq!(r.succeeded, cur_ver == *ver);
                        m.write(if r.succeeded { then } else { els });
                        prop_assert_eq!(r.header.unwrap().revision, m.rev());
                    }
                }
                Step::Compact(off) => {
                    let rev = m.rev() + off;
                    let mut w = s.write_batch()?;
                    let r = w.compact(&CompactionRequest { revision: rev, physical: true });
                    if rev <= m.compact {
                        prop_assert_eq!(r, Err(EtcdError::Compacted));
                    } else if rev > m.rev() {
                        prop_assert_eq!(r, Err(EtcdError::FutureRev));
                    } else {
                        prop_assert!(r.is_ok());
                        m.compact = rev;
                    }
                    w.commit(durable)?;
                }
                Step::CompactBatch(n) => {
                    // HashKV does not depend on how far the backend got.
                    let hash = s.hash_kv(0)?;
                    s.compact_step(*n)?;
                    prop_assert_eq!(s.hash_kv(0)?, hash);
                }
                Step::Reopen => {
                    drop(s);
                    s = Store::open(&path, StoreOptions::default())?;
                }
                Step::Commit(d) => durable = *d,
            }
            check(&s, &m)?;
        }
        // Random ranges with limits at the current revision.
        for (sp, limit) in &probes {
            let (key, range_end) = sp.bytes();
            let span = KeySpan::new(&key, &range_end);
            let want: Vec<_> = m.snaps.last().unwrap().values().filter(|kv| span.contains(&kv.key)).cloned().collect();
            let r = s.range(&RangeRequest { key, range_end, limit: *limit, ..Default::default() })?;
            prop_assert_eq!(r.count as usize, want.len());
            let n = if *limit > 0 { (*limit as usize).min(want.len()) } else { want.len() };
            prop_assert_eq!(&r.kvs[..], &want[..n]);
            prop_assert_eq!(r.more, n < want.len());
        }
        let hash = s.hash_kv(0)?;
        s.finish_compactions()?;
        prop_assert_eq!(s.hash_kv(0)?, hash);
        check(&s, &m)?;
    }
}
