//! etcd's server-side Lock and Election services (`v3lockpb.Lock`,
//! `v3electionpb.Election`), built as etcd builds them: the recipes of
//! clientv3/concurrency (Mutex, Election) run by the server against its own
//! store, here through the same engine calls a client's requests take.
//!
//! Both keep one key per contender under `name + "/"`, named by its lease in
//! hex and living as long as the lease. The contender whose key was created
//! first holds the lock (leads); every other waits until every key created
//! before its own is deleted:
//!
//! ```text
//!  name/694d77a0b6d1f10a   create_revision 7    holds the lock
//!  name/694d77a0b6d1f111   create_revision 9    waits for 7's delete
//!  name/694d77a0b6d1f117   create_revision 12   waits for 9's, then for 7's if still there
//! ```
//!
//! A caller that goes away while it waits gives its key up (the lock's is
//! deleted, a campaign resigns), as etcd does when the call's context ends.

use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use tonic::Status;

use crate::auth::Caller;
use crate::completion::Waiter;
use crate::engine::Method;
use crate::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::pb::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::pb::etcdserverpb::request_op::Request;
use crate::pb::etcdserverpb::response_op::Response;
use crate::pb::etcdserverpb::watch_request::RequestUnion;
use crate::pb::etcdserverpb::{
    Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseGrantResponse, PutRequest, RangeRequest, RangeResponse,
    RequestOp, ResponseHeader, TxnRequest, TxnResponse, WatchCreateRequest, WatchRequest, WatchResponse,
};
use crate::pb::mvccpb::event::EventType;
use crate::pb::mvccpb::KeyValue;
use crate::pb::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest, ProclaimResponse,
    ResignRequest, ResignResponse,
};
use crate::pb::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use crate::server::calls::Calls;
use crate::server::status::status_of;
use crate::server::streams::ResponseStream;

/// clientv3/concurrency's default session TTL: a call that names no lease
/// gets one of this many seconds, not kept alive (etcd's server orphans it).
const SESSION_TTL: i64 = 60;

// etcd's words for these (plain errors, so grpc-go sends them as Unknown).
const NOT_LEADER: &str = "election: not leader";
const NO_LEADER: &str = "election: no leader";
const MISSING_LEADER_KEY: &str = "\"leader\" field must be provided";

/// One of the unary methods of the two services.
#[derive(Clone, Copy, Debug)]
pub enum Recipe {
    Lock,
    Unlock,
    Campaign,
    Proclaim,
    Leader,
    Resign,
}

/// Runs a recipe as `caller`: each KV call it makes is checked as that
/// caller's own would be.
pub async fn serve(calls: &Arc<Calls>, recipe: Recipe, request: Bytes, caller: Caller) -> Result<Bytes, Status> {
    let store = Store(calls.clone(), caller);
    let answer = match recipe {
        Recipe::Lock => lock(&store, decode(request)?).await?.encode_to_vec(),
        Recipe::Unlock => unlock(&store, decode(request)?).await?.encode_to_vec(),
        Recipe::Campaign => campaign(&store, decode(request)?).await?.encode_to_vec(),
        Recipe::Proclaim => proclaim(&store, decode(request)?).await?.encode_to_vec(),
        Recipe::Leader => leader(&store, decode(request)?).await?.encode_to_vec(),
        Recipe::Resign => resign(&store, decode(request)?).await?.encode_to_vec(),
    };
    Ok(answer.into())
}

fn decode<M: Message + Default>(request: Bytes) -> Result<M, Status> {
    M::decode(request).map_err(|e| status_of(&crate::error::EtcdError::BadRequest(e.to_string())))
}

/// The store as the recipes see it: typed KV calls on this member's
/// engine, made as the recipe's caller.
#[derive(Clone)]
struct Store(Arc<Calls>, Caller);

impl Store {
    /// An engine error comes back as etcd's recipes return it: its message
    /// with code Unknown (clientv3 turns the status into a plain error,
    /// which grpc-go sends as Unknown).
    async fn call<Q: Message, A: Message + Default>(&self, method: Method, request: &Q) -> Result<A, Status> {
        let answer = self
            .0
            .call_as(method, request.encode_to_vec().into(), &self.1)
            .await
            .map_err(|e| Status::unknown(e.to_string()))?;
        A::decode(&answer[..]).map_err(|e| Status::internal(format!("etcdserver: undecodable answer: {e}")))
    }

    async fn txn(&self, request: TxnRequest) -> Result<TxnResponse, Status> {
        self.call(Method::KvTxn, &request).await
    }

    async fn range(&self, request: RangeRequest) -> Result<RangeResponse, Status> {
        self.call(Method::KvRange, &request).await
    }

    async fn grant(&self, ttl: i64) -> Result<i64, Status> {
        let answer: LeaseGrantResponse = self.call(Method::LeaseGrant, &LeaseGrantRequest { ttl, id: 0 }).await?;
        Ok(answer.id)
    }

    /// A lease for a call: the caller's, or a new one as etcd's session makes.
    async fn lease_or_new(&self, lease: i64) -> Result<i64, Status> {
        if lease == 0 {
            self.grant(SESSION_TTL).await
        } else {
            Ok(lease)
        }
    }

    /// The key under `prefix` created first (clientv3's WithFirstCreate).
    async fn first_created(&self, prefix: &[u8]) -> Result<RangeResponse, Status> {
        self.range(first_created(prefix)).await
    }

    /// Waits until no key under `prefix` was created at or before
    /// `max_create_revision` (clientv3/concurrency's waitDeletes); the header
    /// of the read that found none.
    async fn wait_deletes(&self, prefix: &[u8], max_create_revision: i64) -> Result<Option<ResponseHeader>, Status> {
        loop {
            let last = self
                .range(RangeRequest {
                    key: Bytes::copy_from_slice(prefix),
                    range_end: prefix_end(prefix),
                    limit: 1,
                    sort_order: SortOrder::Descend as i32,
                    sort_target: SortTarget::Create as i32,
                    max_create_revision,
                    ..RangeRequest::default()
                })
                .await?;
            let Some(kv) = last.kvs.first() else { return Ok(last.header) };
            let at = last.header.as_ref().map_or(0, |h| h.revision);
            let mut watch = Watch::open(self, kv.key.clone(), Bytes::new(), at);
            loop {
                let response = watch.next().await?;
                if response.events.iter().any(|e| e.r#type == EventType::Delete as i32) {
                    break;
                }
            }
        }
    }

    /// Deletes `key` if it was created at `revision` (a leadership's key).
    async fn delete_if_created_at(&self, key: &Bytes, revision: i64) -> Result<TxnResponse, Status> {
        self.txn(TxnRequest {
            compare: vec![created_at(key, revision)],
            success: vec![op(Request::RequestDeleteRange(DeleteRangeRequest {
                key: key.clone(),
                ..DeleteRangeRequest::default()
            }))],
            failure: vec![],
        })
        .await
    }
}

fn op(request: Request) -> RequestOp {
    RequestOp { request: Some(request) }
}

fn created_at(key: &Bytes, revision: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.clone(),
        range_end: Bytes::new(),
        target_union: Some(TargetUnion::CreateRevision(revision)),
    }
}

fn put(key: &Bytes, value: Bytes, lease: i64) -> RequestOp {
    op(Request::RequestPut(PutRequest { key: key.clone(), value, lease, ..PutRequest::default() }))
}

fn get(key: &Bytes) -> RequestOp {
    op(Request::RequestRange(RangeRequest { key: key.clone(), ..RangeRequest::default() }))
}

fn first_created(prefix: &[u8]) -> RangeRequest {
    RangeRequest {
        key: Bytes::copy_from_slice(prefix),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: SortOrder::Ascend as i32,
        sort_target: SortTarget::Create as i32,
        ..RangeRequest::default()
    }
}

/// The end of the range of every key starting with `prefix` (clientv3's GetPrefixRangeEnd).
fn prefix_end(prefix: &[u8]) -> Bytes {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end.into();
        }
    }
    // Every byte 0xff (or empty): to the end of the keyspace.
    Bytes::from_static(&[0])
}

/// `name/` and the contender's key `name/<lease in hex>`.
fn contender_key(name: &[u8], lease: i64) -> (Vec<u8>, Bytes) {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    let mut key = prefix.clone();
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    (prefix, key.into())
}

fn range_of(txn: &TxnResponse, i: usize) -> Option<&RangeResponse> {
    match txn.responses.get(i)?.response.as_ref()? {
        Response::ResponseRange(r) => Some(r),
        _ => None,
    }
}

/// Deletes a contender's key unless disarmed: a call that ends before it is
/// done (its client went away) leaves no key behind to block the others.
struct GiveUp {
    store: Option<Store>,
    key: Bytes,
    /// The key's create revision, for a campaign (its Resign); 0: delete it as it is.
    revision: i64,
}

impl GiveUp {
    fn disarm(mut self) {
        self.store = None;
    }
}

impl Drop for GiveUp {
    fn drop(&mut self) {
        let Some(calls) = self.store.take() else { return };
        let (key, revision) = (self.key.clone(), self.revision);
        tokio::spawn(async move {
            let store = calls;
            if revision == 0 {
                let _ = unlock(&store, UnlockRequest { key }).await;
            } else {
                let _ = store.delete_if_created_at(&key, revision).await;
            }
        });
    }
}

async fn lock(store: &Store, req: LockRequest) -> Result<LockResponse, Status> {
    let lease = store.lease_or_new(req.lease).await?;
    let (prefix, key) = contender_key(&req.name, lease);
    let owner = op(Request::RequestRange(first_created(&prefix)));
    let txn = store
        .txn(TxnRequest {
            compare: vec![created_at(&key, 0)],
            success: vec![put(&key, Bytes::new(), lease), owner.clone()],
            failure: vec![get(&key), owner],
        })
        .await?;
    let mut my_revision = txn.header.as_ref().map_or(0, |h| h.revision);
    if !txn.succeeded {
        my_revision = range_of(&txn, 0).and_then(|r| r.kvs.first()).map_or(my_revision, |kv| kv.create_revision);
    }
    let holder = range_of(&txn, 1).and_then(|r| r.kvs.first()).map(|kv| kv.create_revision);
    if holder.is_none_or(|rev| rev == my_revision) {
        return Ok(LockResponse { header: txn.header, key });
    }
    let give_up = GiveUp { store: Some(store.clone()), key: key.clone(), revision: 0 };
    // On an error too the key is given up (etcd's Lock unlocks then).
    let header = store.wait_deletes(&prefix, my_revision - 1).await?;
    give_up.disarm();
    Ok(LockResponse { header, key })
}

async fn unlock(store: &Store, req: UnlockRequest) -> Result<UnlockResponse, Status> {
    let answer: crate::pb::etcdserverpb::DeleteRangeResponse = store
        .call(Method::KvDeleteRange, &DeleteRangeRequest { key: req.key, ..DeleteRangeRequest::default() })
        .await?;
    Ok(UnlockResponse { header: answer.header })
}

async fn campaign(store: &Store, req: CampaignRequest) -> Result<CampaignResponse, Status> {
    let lease = store.lease_or_new(req.lease).await?;
    let (prefix, key) = contender_key(&req.name, lease);
    let txn = store
        .txn(TxnRequest {
            compare: vec![created_at(&key, 0)],
            success: vec![put(&key, req.value.clone(), lease)],
            failure: vec![get(&key)],
        })
        .await?;
    let mut leader =
        LeaderKey { name: req.name, key: key.clone(), rev: txn.header.as_ref().map_or(0, |h| h.revision), lease };
    if !txn.succeeded {
        if let Some(kv) = range_of(&txn, 0).and_then(|r| r.kvs.first()) {
            leader.rev = kv.create_revision;
            if kv.value != req.value {
                // Campaigning again with a new value proclaims it.
                if let Err(e) = proclaim_value(store, &leader, req.value).await {
                    let _ = store.delete_if_created_at(&key, leader.rev).await;
                    return Err(e);
                }
            }
        }
    }
    let give_up = GiveUp { store: Some(store.clone()), key, revision: leader.rev };
    let waited = store.wait_deletes(&prefix, leader.rev - 1).await;
    // Only a caller that went away resigns; an error leaves the key (as etcd).
    give_up.disarm();
    waited?;
    Ok(CampaignResponse { header: txn.header, leader: Some(leader) })
}

async fn proclaim_value(store: &Store, leader: &LeaderKey, value: Bytes) -> Result<TxnResponse, Status> {
    let txn = store
        .txn(TxnRequest {
            compare: vec![created_at(&leader.key, leader.rev)],
            success: vec![put(&leader.key, value, leader.lease)],
            failure: vec![],
        })
        .await?;
    if txn.succeeded {
        Ok(txn)
    } else {
        Err(Status::unknown(NOT_LEADER))
    }
}

async fn proclaim(store: &Store, req: ProclaimRequest) -> Result<ProclaimResponse, Status> {
    let leader = req.leader.ok_or_else(|| Status::unknown(MISSING_LEADER_KEY))?;
    let txn = proclaim_value(store, &leader, req.value).await?;
    Ok(ProclaimResponse { header: txn.header })
}

async fn resign(store: &Store, req: ResignRequest) -> Result<ResignResponse, Status> {
    let leader = req.leader.ok_or_else(|| Status::unknown(MISSING_LEADER_KEY))?;
    let txn = store.delete_if_created_at(&leader.key, leader.rev).await?;
    Ok(ResignResponse { header: txn.header })
}

async fn leader(store: &Store, req: LeaderRequest) -> Result<LeaderResponse, Status> {
    let (prefix, _) = contender_key(&req.name, 0);
    let mut answer = store.first_created(&prefix).await?;
    if answer.kvs.is_empty() {
        return Err(Status::unknown(NO_LEADER));
    }
    Ok(LeaderResponse { header: answer.header.take(), kv: Some(answer.kvs.swap_remove(0)) })
}

/// Election.Observe: the leader now (or the first one to come), then every
/// proclamation of that leader, then the next leader once its key is
/// deleted, and so on until the client goes away (clientv3's observe).
pub fn observe(calls: &Arc<Calls>, request: Bytes, caller: Caller) -> Result<ResponseStream, Status> {
    let req: LeaderRequest = decode(request)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Status>>(16);
    let store = Store(calls.clone(), caller);
    tokio::spawn(async move {
        let send = |header: Option<ResponseHeader>, kv: KeyValue| {
            let tx = tx.clone();
            async move { tx.send(Ok(LeaderResponse { header, kv: Some(kv) }.encode_to_vec().into())).await.is_ok() }
        };
        let gone = tx.clone();
        let observing = async {
            let (prefix, _) = contender_key(&req.name, 0);
            loop {
                let mut first = store.first_created(&prefix).await?;
                let (mut header, kv) = if first.kvs.is_empty() {
                    // No leader: wait for the first put under the prefix.
                    let at = first.header.as_ref().map_or(0, |h| h.revision);
                    let mut watch = Watch::open(&store, Bytes::from(prefix.clone()), prefix_end(&prefix), at);
                    loop {
                        let response = watch.next().await?;
                        let put = response.events.into_iter().find(|e| e.r#type == EventType::Put as i32);
                        if let Some(kv) = put.and_then(|e| e.kv) {
                            let mut header = response.header.unwrap_or_default();
                            header.revision = kv.mod_revision;
                            break (Some(header), kv);
                        }
                    }
                } else {
                    (first.header.take(), first.kvs.swap_remove(0))
                };
                let key = kv.key.clone();
                let from = header.as_ref().map_or(0, |h| h.revision) + 1;
                if !send(header.take(), kv).await {
                    return Ok(());
                }
                // This leader's proclamations, until its key goes.
                let mut watch = Watch::open(&store, key, Bytes::new(), from);
                'leader: loop {
                    let response = watch.next().await?;
                    for event in response.events {
                        if event.r#type == EventType::Delete as i32 {
                            break 'leader;
                        }
                        if let Some(kv) = event.kv {
                            if !send(response.header, kv).await {
                                return Ok(());
                            }
                        }
                    }
                }
            }
        };
        tokio::select! {
            result = observing => {
                if let Err(status) = result {
                    let _ = tx.send(Err(status)).await;
                }
            }
            () = gone.closed() => {}
        }
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}

/// A watch the server opens on its own store, for the recipes.
struct Watch {
    calls: Arc<Calls>,
    token: u64,
    rx: tokio::sync::mpsc::UnboundedReceiver<crate::completion::Answer>,
}

impl Watch {
    fn open(store: &Store, key: Bytes, range_end: Bytes, start_revision: i64) -> Watch {
        let (calls, caller) = (&store.0, &store.1);
        let token = calls.token();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let engine = &calls.engine;
        engine.completions().add_waiter(token, Waiter::Stream(tx));
        engine.submit_method(Method::WatchOpen, Bytes::new(), token);
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key,
                range_end,
                start_revision,
                ..WatchCreateRequest::default()
            })),
        };
        engine.submit_as(Method::WatchRequest, create.encode_to_vec().into(), token, caller);
        Watch { calls: calls.clone(), token, rx }
    }

    /// The next response that carries events.
    async fn next(&mut self) -> Result<WatchResponse, Status> {
        loop {
            let answer = self.rx.recv().await.unwrap_or(Err(crate::error::EtcdError::Stopped));
            let bytes = answer.map_err(|e| status_of(&e))?;
            self.calls.engine.submit_method(Method::WatchAck, Bytes::copy_from_slice(&1u64.to_le_bytes()), self.token);
            let response = WatchResponse::decode(&bytes[..])
                .map_err(|e| Status::internal(format!("etcdserver: undecodable watch response: {e}")))?;
            if response.canceled {
                let why = if response.compact_revision > 0 {
                    crate::error::EtcdError::Compacted
                } else {
                    crate::error::EtcdError::Stopped
                };
                return Err(status_of(&why));
            }
            if !response.events.is_empty() {
                return Ok(response);
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let engine = &self.calls.engine;
        engine.completions().remove_waiter(self.token);
        engine.submit_method(Method::WatchClose, Bytes::new(), self.token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_as_clientv3_computes_them() {
        assert_eq!(&prefix_end(b"lock/")[..], b"lock0");
        assert_eq!(&prefix_end(b"a\xff")[..], b"b");
        assert_eq!(&prefix_end(b"\xff\xff")[..], b"\0");
    }

    #[test]
    fn contender_keys_are_the_lease_in_hex() {
        let (prefix, key) = contender_key(b"job", 0x694d_77a0_b6d1_f10a);
        assert_eq!(prefix, b"job/");
        assert_eq!(&key[..], b"job/694d77a0b6d1f10a");
    }
}
