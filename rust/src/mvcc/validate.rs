//! Stateless request checks, done before a request is proposed, as etcd's
//! v3rpc layer does (`checkPutRequest`, `checkTxnRequest`, `checkIntervals`).
//! The store runs them again at apply time so that an unchecked request can
//! never fail halfway through a txn.

use std::collections::HashSet;

use crate::error::EtcdError;
use crate::pb::etcdserverpb::{
    range_request::{SortOrder, SortTarget},
    request_op::Request,
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

/// EmptyKey; ValueProvided (ignore_value with a value); LeaseProvided (ignore_lease with a lease).
pub fn check_put(req: &PutRequest) -> Result<(), EtcdError> {
    if req.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

/// EmptyKey, and sort order/target must be values the protocol defines.
///
/// etcd 3.5+ answers an unknown sort option with "etcdserver: invalid sort
/// option" (InvalidArgument); [`EtcdError`] has no such variant yet, so this
/// is reported as `BadRequest` (3.4 itself panicked on an unknown target).
pub fn check_range(req: &RangeRequest) -> Result<(), EtcdError> {
    if req.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if SortOrder::try_from(req.sort_order).is_err() || SortTarget::try_from(req.sort_target).is_err() {
        return Err(EtcdError::BadRequest("invalid sort option".into()));
    }
    Ok(())
}

/// EmptyKey.
pub fn check_delete_range(req: &DeleteRangeRequest) -> Result<(), EtcdError> {
    if req.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

/// TooManyOps (the longest of compare/success/failure; nested txns get the
/// remaining budget, as etcd does), EmptyKey on a compare, every op checked,
/// an empty op is KeyNotFound (etcd's answer), then the duplicate-key rule on
/// each branch.
pub fn check_txn(req: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    check_txn_ops(req, max_txn_ops as i64)?;
    // After the per-op checks, as etcd does, so a huge txn is refused before
    // the overlap check's quadratic walk.
    check_intervals(&req.success)?;
    check_intervals(&req.failure)?;
    Ok(())
}

fn check_txn_ops(req: &TxnRequest, max_txn_ops: i64) -> Result<(), EtcdError> {
    let opc = req.compare.len().max(req.success.len()).max(req.failure.len()) as i64;
    if opc > max_txn_ops {
        return Err(EtcdError::TooManyOps);
    }
    if req.compare.iter().any(|c| c.key.is_empty()) {
        return Err(EtcdError::EmptyKey);
    }
    for op in req.success.iter().chain(&req.failure) {
        check_op(op, max_txn_ops - opc)?;
    }
    Ok(())
}

fn check_op(op: &RequestOp, max_txn_ops: i64) -> Result<(), EtcdError> {
    match &op.request {
        Some(Request::RequestRange(r)) => check_range(r),
        Some(Request::RequestPut(r)) => check_put(r),
        Some(Request::RequestDeleteRange(r)) => check_delete_range(r),
        Some(Request::RequestTxn(r)) => check_txn_ops(r, max_txn_ops),
        None => Err(EtcdError::KeyNotFound),
    }
}

/// A delete's keys as etcd's interval tree sees them: `[key, range_end)`, or
/// the point `key` when range_end is empty. A range_end of "\0" is taken
/// literally, as etcd does: the interval `[key, "\0")` is inverted and holds
/// no key, so a from-key delete never conflicts with a put.
struct Interval {
    begin: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Interval {
    fn holds(&self, k: &[u8]) -> bool {
        match &self.end {
            None => k == self.begin.as_slice(),
            Some(end) => self.begin.as_slice() <= k && k < end.as_slice(),
        }
    }
}

/// etcd's `checkIntervals`: in one branch of a txn, no key may be put twice,
/// nor put and deleted. The then/else branches of a nested txn exclude each
/// other, so both may put the same key. The order of the checks is etcd's,
/// so the same requests are refused:
///
/// ```text
///   ops = [ del [a,c) , txn{ then: put b } ]      → DuplicateKey (child put vs this level's delete)
///   ops = [ put b , txn{ then: del [a,c) } ]      → DuplicateKey (this level's put vs child delete)
///   ops = [ txn{ then: put a, else: put a } ]     → ok          (exclusive branches)
///   ops = [ put a, txn{ else: put a } ]           → DuplicateKey
/// ```
///
/// Returns the puts and deletes of `ops` (including nested) for the parent.
fn check_intervals(ops: &[RequestOp]) -> Result<(HashSet<Vec<u8>>, Vec<Interval>), EtcdError> {
    let mut dels: Vec<Interval> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestDeleteRange(d)) => {
                Some(Interval { begin: d.key.to_vec(), end: (!d.range_end.is_empty()).then(|| d.range_end.to_vec()) })
            }
            _ => None,
        })
        .collect();
    let deleted = |dels: &[Interval], k: &[u8]| dels.iter().any(|iv| iv.holds(k));

    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    for op in ops {
        let Some(Request::RequestTxn(t)) = &op.request else { continue };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || deleted(&dels, k) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in puts_else {
            if (puts.contains(&k) && !puts_then.contains(&k)) || deleted(&dels, &k) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(k);
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }

    for op in ops {
        let Some(Request::RequestPut(p)) = &op.request else { continue };
        let k = p.key.to_vec();
        if puts.contains(&k) || deleted(&dels, &k) {
            return Err(EtcdError::DuplicateKey);
        }
        puts.insert(k);
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::etcdserverpb::Compare;

    fn put(k: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestPut(PutRequest { key: k.as_bytes().to_vec().into(), ..Default::default() })),
        }
    }
    fn del(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: k.as_bytes().to_vec().into(),
                range_end: end.as_bytes().to_vec().into(),
                ..Default::default()
            })),
        }
    }
    fn get(k: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestRange(RangeRequest {
                key: k.as_bytes().to_vec().into(),
                ..Default::default()
            })),
        }
    }
    fn txn(then: Vec<RequestOp>, els: Vec<RequestOp>) -> RequestOp {
        RequestOp { request: Some(Request::RequestTxn(TxnRequest { compare: vec![], success: then, failure: els })) }
    }
    fn check(ops: Vec<RequestOp>) -> Result<(), EtcdError> {
        check_txn(&TxnRequest { compare: vec![], success: ops, failure: vec![] }, 128)
    }

    #[test]
    fn mvcc_check_put_rules() {
        let mut p = PutRequest { key: "".into(), ..Default::default() };
        assert_eq!(check_put(&p), Err(EtcdError::EmptyKey));
        p.key = "k".into();
        assert_eq!(check_put(&p), Ok(()));
        p.ignore_value = true;
        p.value = "v".into();
        assert_eq!(check_put(&p), Err(EtcdError::ValueProvided));
        p.value = "".into();
        p.ignore_lease = true;
        p.lease = 7;
        assert_eq!(check_put(&p), Err(EtcdError::LeaseProvided));
        p.lease = 0;
        assert_eq!(check_put(&p), Ok(()));
    }

    #[test]
    fn mvcc_check_range_and_delete_rules() {
        let mut r = RangeRequest::default();
        assert_eq!(check_range(&r), Err(EtcdError::EmptyKey));
        r.key = "a".into();
        assert_eq!(check_range(&r), Ok(()));
        r.sort_target = 9;
        assert!(matches!(check_range(&r), Err(EtcdError::BadRequest(_))));
        r.sort_target = 0;
        r.sort_order = 3;
        assert!(matches!(check_range(&r), Err(EtcdError::BadRequest(_))));
        assert_eq!(check_delete_range(&DeleteRangeRequest::default()), Err(EtcdError::EmptyKey));
        assert_eq!(check_delete_range(&DeleteRangeRequest { key: "a".into(), ..Default::default() }), Ok(()));
    }

    #[test]
    fn mvcc_check_txn_too_many_ops_and_empty() {
        let ops: Vec<_> = (0..3).map(|i| put(&format!("k{i}"))).collect();
        let t = TxnRequest { compare: vec![], success: ops.clone(), failure: vec![] };
        assert_eq!(check_txn(&t, 3), Ok(()));
        assert_eq!(check_txn(&t, 2), Err(EtcdError::TooManyOps));
        // A nested txn gets what is left of the budget after its parent's widest list.
        let nested = TxnRequest { compare: vec![], success: vec![txn(ops.clone(), vec![])], failure: vec![] };
        assert_eq!(check_txn(&nested, 4), Ok(()));
        assert_eq!(check_txn(&nested, 3), Err(EtcdError::TooManyOps));
        let cmp = TxnRequest { compare: vec![Compare::default()], success: vec![], failure: vec![] };
        assert_eq!(check_txn(&cmp, 128), Err(EtcdError::EmptyKey));
        assert_eq!(check(vec![RequestOp { request: None }]), Err(EtcdError::KeyNotFound));
        assert_eq!(check(vec![put("")]), Err(EtcdError::EmptyKey));
        assert_eq!(check(vec![txn(vec![], vec![del("", "")])]), Err(EtcdError::EmptyKey));
    }

    /// Cases from etcd's v3_grpc_test.go (TestV3TxnDuplicateKeys, TestV3TxnRangeCompare's neighbours).
    #[test]
    fn mvcc_check_txn_duplicate_keys() {
        let dup = Err(EtcdError::DuplicateKey);
        // Same level.
        assert_eq!(check(vec![put("abc"), put("abc")]), dup);
        assert_eq!(check(vec![put("abc"), del("abc", "")]), dup);
        assert_eq!(check(vec![put("abc"), del("a", "b")]), dup);
        assert_eq!(check(vec![put("abc"), del("abb", "abd")]), dup);
        assert_eq!(check(vec![put("abc"), del("abc", "abd")]), dup);
        assert_eq!(check(vec![put("abc"), del("abb", "abc")]), Ok(()));
        assert_eq!(check(vec![del("a", "b"), del("a", "b")]), Ok(()));
        assert_eq!(check(vec![put("abc"), get("abc")]), Ok(()));
        // From-key delete: etcd's interval [key, "\0") is empty, so no conflict.
        assert_eq!(check(vec![put("abc"), del("a", "\0")]), Ok(()));
        // Nested.
        assert_eq!(check(vec![put("abc"), txn(vec![put("abc")], vec![])]), dup);
        assert_eq!(check(vec![put("abc"), txn(vec![], vec![put("abc")])]), dup);
        assert_eq!(check(vec![txn(vec![put("abc")], vec![put("abc")])]), Ok(()));
        assert_eq!(check(vec![del("a", "b"), txn(vec![put("abc")], vec![])]), dup);
        assert_eq!(check(vec![put("abc"), txn(vec![del("a", "b")], vec![])]), dup);
        assert_eq!(check(vec![txn(vec![put("abc")], vec![]), txn(vec![put("abc")], vec![])]), dup);
        assert_eq!(check(vec![txn(vec![del("abc", "")], vec![]), txn(vec![put("abc")], vec![])]), dup);
        assert_eq!(check(vec![txn(vec![txn(vec![put("a")], vec![])], vec![]), put("a")]), dup);
        assert_eq!(check(vec![txn(vec![put("a")], vec![del("a", "")])]), Ok(()));
        assert_eq!(check(vec![txn(vec![put("a"), del("a", "")], vec![])]), dup);
        // The failure branch is checked on its own.
        let t = TxnRequest { compare: vec![], success: vec![put("a")], failure: vec![put("a"), put("a")] };
        assert_eq!(check_txn(&t, 128), dup);
        let t = TxnRequest { compare: vec![], success: vec![put("a")], failure: vec![put("a")] };
        assert_eq!(check_txn(&t, 128), Ok(()));
    }
}
