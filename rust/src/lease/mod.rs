//! etcd's Lease service: a lease is a TTL that keys can be attached to;
//! when it is revoked, or expires, every key on it is deleted in one revision.
//!
//! ```text
//!  LeaseGrant ──► node: ID chosen (if 0) ──► Raft ──► apply: lessor.grant + lease record
//!  LeaseRevoke ─► node ─────────────────────► Raft ──► apply: delete keys (one revision),
//!                                                      remove record, lessor.remove
//!  Put{lease} ──► Raft ──► apply: store put ──► lessor.apply_moves (attach / detach / move)
//!  every tick, on the leader: lessor.take_expired ──► propose LeaseRevoke (as above)
//!  LeaseKeepAlive, LeaseTimeToLive, LeaseLeases ──► reader threads, straight at the lessor
//! ```
//!
//! Which leases exist and which keys they hold is the same on every member,
//! because it changes only by applying the log; expiry is the leader's
//! business alone (see [`lessor`]), and acts only through the log.
//!
//! Differences from etcd 3.4: no lease checkpoints (etcd's are off by
//! default too), so a new leader or a restarted member gives every lease its
//! full TTL again, exactly as etcd without checkpoints; a keep-alive for a
//! lease past its expiry answers TTL 0 at once where etcd waits for the
//! revoke to apply (then also answers 0).

pub mod lessor;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::engine::{decode, EngineConfig, HasHeader, Method, Shared};
use crate::error::EtcdError;
use crate::mvcc::{Store, WriteBatch};
use crate::pb::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesResponse,
    LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
    ResponseHeader,
};
pub use lessor::{LeaseInfo, Lessor, EXPIRED_RETRY, MAX_LEASE_TTL};

/// Most expired leases the leader proposes to revoke per tick (etcd: 1000
/// per second, checked every 500 ms; ketch checks every 100 ms tick).
pub const REVOKES_PER_TICK: usize = 100;

/// etcd's minimum lease TTL: (3 × election ticks / 2) heartbeats, rounded
/// up to whole seconds (2 s for etcd's defaults of 10 ticks of 100 ms).
pub fn min_ttl(config: &EngineConfig) -> i64 {
    let ticks = (3 * config.election_ticks / 2) as u32;
    let d = config.tick * ticks;
    d.as_secs() as i64 + i64::from(d.subsec_nanos() > 0)
}

/// How much a newly promoted leader adds to every lease: one election
/// timeout, as etcd's Promote(electionTimeout).
pub fn promote_extend(config: &EngineConfig) -> Duration {
    config.tick * config.election_ticks as u32
}

/// The lessor for a store just opened: its leases, with the keys their
/// latest versions name.
pub fn open(store: &Store, config: &EngineConfig) -> Result<Lessor, EtcdError> {
    Ok(Lessor::new(min_ttl(config), store.leases()?, store.leased_keys()?))
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

/// Applies a LeaseGrant entry (etcd's applierV3backend.LeaseGrant).
pub fn apply_grant(
    lessor: &Lessor,
    batch: &mut WriteBatch<'_>,
    req: &LeaseGrantRequest,
    now: Instant,
) -> Result<LeaseGrantResponse, EtcdError> {
    let ttl = lessor.grant(req.id, req.ttl, now)?;
    batch.put_lease(req.id, ttl)?;
    crate::metrics::LEASES_GRANTED.inc();
    Ok(LeaseGrantResponse { header: header(batch.revision()), id: req.id, ttl, error: String::new() })
}

/// Applies a LeaseRevoke entry (etcd's lessor.Revoke): the lease's keys are
/// deleted, sorted, as one write at one new revision, and the lease record
/// goes in the same backend transaction.
pub fn apply_revoke(
    lessor: &Lessor,
    batch: &mut WriteBatch<'_>,
    req: &LeaseRevokeRequest,
) -> Result<LeaseRevokeResponse, EtcdError> {
    let keys = lessor.keys(req.id).ok_or(EtcdError::LeaseNotFound)?;
    batch.delete_keys(&keys)?;
    lessor.apply_moves(batch.take_lease_moves());
    batch.remove_lease(req.id)?;
    lessor.remove(req.id);
    crate::metrics::LEASES_REVOKED.inc();
    Ok(LeaseRevokeResponse { header: header(batch.revision()) })
}

/// Serves the lease methods that do not go through Raft, on a reader thread.
pub(crate) fn serve(shared: &Shared, method: Method, request: Bytes, token: u64) {
    let lessor = &shared.lessor;
    let now = Instant::now();
    // Only the leader's lessor knows expiries (etcd forwards keep-alive and
    // TimeToLive to the leader; LeaseLeases it answers locally); the caller
    // forwards on NotLeader.
    if !lessor.is_primary() && method != Method::LeaseLeases {
        shared.completions.push(token, Err(EtcdError::NotLeader));
        return;
    }
    match method {
        Method::LeaseKeepAlive => {
            let result = decode::<LeaseKeepAliveRequest>(request).and_then(|r| {
                // etcd's keep-alive stream answers TTL 0 for a lease it does not have.
                let ttl = match lessor.renew(r.id, now) {
                    Ok(ttl) => {
                        crate::metrics::LEASES_RENEWED.inc();
                        ttl
                    }
                    Err(EtcdError::LeaseNotFound) => 0,
                    Err(e) => return Err(e),
                };
                Ok(LeaseKeepAliveResponse { header: None, id: r.id, ttl })
            });
            shared.answer(token, result);
        }
        Method::LeaseTimeToLive => {
            // etcd's API layer turns "not found" into TTL -1 (etcdctl: "already expired").
            let result =
                decode::<LeaseTimeToLiveRequest>(request).map(|r| match lessor.time_to_live(r.id, r.keys, now) {
                    Some(info) => LeaseTimeToLiveResponse {
                        header: None,
                        id: r.id,
                        ttl: info.remaining,
                        granted_ttl: info.granted,
                        keys: info.keys,
                    },
                    None => LeaseTimeToLiveResponse { header: None, id: r.id, ttl: -1, granted_ttl: 0, keys: vec![] },
                });
            shared.answer(token, result);
        }
        Method::LeaseLeases => {
            // The request has no fields; still, bytes that do not decode are refused as gRPC would.
            let result = decode::<crate::pb::etcdserverpb::LeaseLeasesRequest>(request).map(|_| LeaseLeasesResponse {
                header: None,
                leases: lessor.leases().into_iter().map(|id| LeaseStatus { id }).collect(),
            });
            shared.answer(token, result);
        }
        _ => unreachable!("{method:?} is not a lease read"),
    }
}

macro_rules! has_header {
    ($($t:ty),*) => {$(
        impl HasHeader for $t {
            fn header_mut(&mut self) -> &mut Option<ResponseHeader> { &mut self.header }
        }
    )*};
}
has_header!(
    LeaseGrantResponse,
    LeaseRevokeResponse,
    LeaseKeepAliveResponse,
    LeaseTimeToLiveResponse,
    LeaseLeasesResponse
);
