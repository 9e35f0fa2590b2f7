//! The lessor: every lease, the keys attached to it, and (on the leader)
//! when it expires. Plain data behind one mutex; no I/O and no clock of its
//! own (every method that needs the time takes `now`), so tests drive time.
//!
//! ```text
//!   leases   id → Lease { ttl, expiry (leader only), heap_at, keys }
//!   items    key → id            (a key is on at most one lease)
//!   heap     min-heap of (heap_at, id), lazily deleted:
//!
//!   grant 7 ttl 10 @0     heap [(10,7)]            leases {7: expiry 10}
//!   renew 7 @4            heap [(10,7) (14,7)]     leases {7: expiry 14, heap_at 14}
//!   expired? @11          pop (10,7): heap_at is 14, stale → dropped
//!   expired? @15          pop (14,7): live and due → revoke 7; retry at 18
//!                         (heap_at 18) in case the revoke never applies
//! ```
//!
//! An entry counts only if its lease still exists and `heap_at` equals its
//! time; every other entry is skipped when it reaches the top. The heap is
//! rebuilt from the leases when stale entries outnumber live ones, so a
//! keep-alive costs O(log n) and the heap stays O(leases).
//!
//! Only the leader (the *primary*) tracks expiries, as etcd's lessor: a
//! follower keeps every lease forever until it is promoted, and a promoted
//! lessor gives every lease `extend + ttl` from now, so no lease expires
//! early because leadership moved (or the member restarted).

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::error::EtcdError;
use crate::mvcc::LeaseCheck;

/// etcd's MaxLeaseTTL: a grant above it fails with "too large lease TTL".
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;
/// How long after proposing the revoke of an expired lease the leader
/// proposes it again if the lease is still there (etcd's
/// expiredLeaseRetryInterval): the first revoke may have been lost with a
/// leadership change.
pub const EXPIRED_RETRY: Duration = Duration::from_secs(3);

#[derive(Debug)]
struct Lease {
    /// Granted TTL in seconds (after raising to the minimum).
    ttl: i64,
    /// When it expires; None on a follower ("forever").
    expiry: Option<Instant>,
    /// Time of this lease's live heap entry, if it has one.
    heap_at: Option<Instant>,
    /// Sorted, so a revoke deletes in the same order on every member.
    keys: BTreeSet<Bytes>,
}

#[derive(Default)]
struct Inner {
    leases: HashMap<i64, Lease>,
    items: HashMap<Bytes, i64>,
    heap: BinaryHeap<Reverse<(Instant, i64)>>,
}

/// What TimeToLive reports of one lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// Whole seconds left, truncated toward zero as etcd's
    /// `int64(Remaining().Seconds())`; the granted TTL on a follower.
    pub remaining: i64,
    pub granted: i64,
    /// Sorted; empty unless asked for.
    pub keys: Vec<Bytes>,
}

/// See the module doc.
pub struct Lessor {
    inner: Mutex<Inner>,
    primary: AtomicBool,
    /// Smallest TTL granted, in seconds: etcd's ceil(1.5 × election timeout).
    min_ttl: i64,
}

impl Lessor {
    /// A lessor holding `leases` (id, granted TTL) with `keys` (key, lease)
    /// attached, as read from the store at open; not primary yet. A key
    /// naming a lease that is not in `leases` is ignored.
    pub fn new(min_ttl: i64, leases: Vec<(i64, i64)>, keys: Vec<(Bytes, i64)>) -> Lessor {
        let mut inner = Inner::default();
        for (id, ttl) in leases {
            inner.leases.insert(id, Lease { ttl, expiry: None, heap_at: None, keys: BTreeSet::new() });
        }
        for (key, id) in keys {
            if let Some(l) = inner.leases.get_mut(&id) {
                l.keys.insert(key.clone());
                inner.items.insert(key, id);
            }
        }
        Lessor { inner: Mutex::new(inner), primary: AtomicBool::new(false), min_ttl }
    }

    /// Takes the leases and keys of `other` (a lessor rebuilt from a store
    /// restored from a Raft snapshot); whether this one is primary is kept.
    pub fn replace_with(&self, other: Lessor) {
        *self.inner.lock() = other.inner.into_inner();
    }

    pub fn min_ttl(&self) -> i64 {
        self.min_ttl
    }

    pub fn is_primary(&self) -> bool {
        self.primary.load(Ordering::Acquire)
    }

    pub fn len(&self) -> usize {
        self.inner.lock().leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// etcd's lessor.Grant (applied from the log): the TTL granted, raised
    /// to the minimum. ID 0 is "no lease" and is refused as not found.
    pub fn grant(&self, id: i64, ttl: i64, now: Instant) -> Result<i64, EtcdError> {
        if id == 0 {
            return Err(EtcdError::LeaseNotFound);
        }
        if ttl > MAX_LEASE_TTL {
            return Err(EtcdError::LeaseTtlTooLarge);
        }
        let mut inner = self.inner.lock();
        if inner.leases.contains_key(&id) {
            return Err(EtcdError::LeaseExists);
        }
        let ttl = ttl.max(self.min_ttl);
        inner.leases.insert(id, Lease { ttl, expiry: None, heap_at: None, keys: BTreeSet::new() });
        if self.is_primary() {
            inner.refresh(id, Duration::ZERO, now);
        }
        Ok(ttl)
    }

    pub fn contains(&self, id: i64) -> bool {
        self.inner.lock().leases.contains_key(&id)
    }

    /// The keys attached to `id`, sorted (what its revoke deletes).
    pub fn keys(&self, id: i64) -> Option<Vec<Bytes>> {
        self.inner.lock().leases.get(&id).map(|l| l.keys.iter().cloned().collect())
    }

    /// Forgets `id` and detaches its keys (their deletion is the caller's).
    pub fn remove(&self, id: i64) -> bool {
        let mut inner = self.inner.lock();
        let Some(l) = inner.leases.remove(&id) else { return false };
        for k in &l.keys {
            inner.items.remove(k);
        }
        true
    }

    /// Moves keys between leases after writes: (key, lease) sets the key's
    /// lease (0 detaches it), as etcd's put/delete Detach then Attach.
    pub fn apply_moves(&self, moves: Vec<(Bytes, i64)>) {
        if moves.is_empty() {
            return;
        }
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        for (key, id) in moves {
            if id == 0 && inner.items.is_empty() {
                continue;
            }
            if let Some(old) = inner.items.remove(&key) {
                if let Some(l) = inner.leases.get_mut(&old) {
                    l.keys.remove(&key);
                }
            }
            if id != 0 {
                // The store checked the lease exists before writing.
                if let Some(l) = inner.leases.get_mut(&id) {
                    l.keys.insert(key.clone());
                    inner.items.insert(key, id);
                }
            }
        }
    }

    /// The lease a key is attached to (0 for none).
    pub fn lease_of(&self, key: &[u8]) -> i64 {
        self.inner.lock().items.get(key).copied().unwrap_or(0)
    }

    /// etcd's lessor.Renew (a keep-alive, on the leader, not through Raft):
    /// the lease gets its full TTL from now. A lease already expired is as
    /// good as revoked (its revoke is on its way): not found.
    pub fn renew(&self, id: i64, now: Instant) -> Result<i64, EtcdError> {
        if !self.is_primary() {
            return Err(EtcdError::NoLeader);
        }
        let mut inner = self.inner.lock();
        let Some(l) = inner.leases.get(&id) else { return Err(EtcdError::LeaseNotFound) };
        if l.expiry.is_some_and(|e| e <= now) {
            return Err(EtcdError::LeaseNotFound);
        }
        let ttl = l.ttl;
        inner.refresh(id, Duration::ZERO, now);
        Ok(ttl)
    }

    /// What LeaseTimeToLive reports; None if there is no such lease.
    pub fn time_to_live(&self, id: i64, with_keys: bool, now: Instant) -> Option<LeaseInfo> {
        let inner = self.inner.lock();
        let l = inner.leases.get(&id)?;
        let remaining = match l.expiry {
            Some(e) if e >= now => e.duration_since(now).as_secs() as i64,
            // Past due, not yet revoked: etcd truncates the negative seconds.
            Some(e) => -(now.duration_since(e).as_secs() as i64),
            None => l.ttl,
        };
        let keys = if with_keys { l.keys.iter().cloned().collect() } else { Vec::new() };
        Some(LeaseInfo { remaining, granted: l.ttl, keys })
    }

    /// Every lease ID, soonest expiry first (etcd's Leases sorts by
    /// remaining time); ties, and every lease on a follower, by ID.
    pub fn leases(&self) -> Vec<i64> {
        let inner = self.inner.lock();
        let mut all: Vec<(Option<Instant>, i64)> = inner.leases.iter().map(|(id, l)| (l.expiry, *id)).collect();
        // None (forever) sorts last.
        all.sort_by_key(|(e, id)| (e.is_none(), *e, *id));
        all.into_iter().map(|(_, id)| id).collect()
    }

    /// Becomes primary: every lease expires `extend + ttl` from now (etcd's
    /// Promote with extend = one election timeout).
    pub fn promote(&self, extend: Duration, now: Instant) {
        let mut inner = self.inner.lock();
        self.primary.store(true, Ordering::Release);
        inner.heap.clear();
        let ids: Vec<i64> = inner.leases.keys().copied().collect();
        for id in ids {
            inner.refresh(id, extend, now);
        }
    }

    /// Stops being primary: leases live forever here until promoted again.
    pub fn demote(&self) {
        let mut inner = self.inner.lock();
        self.primary.store(false, Ordering::Release);
        inner.heap.clear();
        for l in inner.leases.values_mut() {
            l.expiry = None;
            l.heap_at = None;
        }
    }

    /// Up to `limit` leases past their expiry, soonest first, for the leader
    /// to revoke through Raft. Each is re-armed `EXPIRED_RETRY` later, so it
    /// is handed out again only if its revoke did not apply by then.
    pub fn take_expired(&self, now: Instant, limit: usize) -> Vec<i64> {
        let mut out = Vec::new();
        if !self.is_primary() {
            return out;
        }
        let mut inner = self.inner.lock();
        while out.len() < limit {
            let Some(&Reverse((at, id))) = inner.heap.peek() else { break };
            if at > now {
                break;
            }
            inner.heap.pop();
            let Some(l) = inner.leases.get_mut(&id) else { continue };
            if l.heap_at != Some(at) {
                continue; // stale: renewed or re-armed since
            }
            let retry = now + EXPIRED_RETRY;
            l.heap_at = Some(retry);
            inner.heap.push(Reverse((retry, id)));
            out.push(id);
        }
        out
    }

    #[cfg(test)]
    pub(crate) fn heap_len(&self) -> usize {
        self.inner.lock().heap.len()
    }
}

impl Inner {
    /// Sets `id`'s expiry to now + extend + ttl and arms the heap for it.
    fn refresh(&mut self, id: i64, extend: Duration, now: Instant) {
        let Some(l) = self.leases.get_mut(&id) else { return };
        // TTLs up to MAX_LEASE_TTL (~285 years) fit an Instant on Linux.
        let at = now + extend + Duration::from_secs(l.ttl.max(0) as u64);
        l.expiry = Some(at);
        l.heap_at = Some(at);
        self.heap.push(Reverse((at, id)));
        if self.heap.len() > 2 * self.leases.len() + 64 {
            self.rebuild_heap();
        }
    }

    /// Drops every stale entry: one entry per lease that has a heap time.
    fn rebuild_heap(&mut self) {
        let live: Vec<Reverse<(Instant, i64)>> =
            self.leases.iter().filter_map(|(id, l)| l.heap_at.map(|at| Reverse((at, *id)))).collect();
        self.heap = BinaryHeap::from(live);
    }
}

impl LeaseCheck for Lessor {
    fn lease_exists(&self, id: i64) -> bool {
        self.contains(id)
    }
}
