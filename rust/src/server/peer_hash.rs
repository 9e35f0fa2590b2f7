//! Members' HashKV over the peer port, for the corruption checks
//! (`crate::corruption` judges the answers).
//!
//! etcd serves `GET /members/hashkv` with a JSON HashKVRequest on its peer
//! URLs; ketch's peer port speaks only `ketchpeer.Raft`, so the same
//! question is the unary `/ketchpeer.Raft/HashKV`: an encoded
//! HashKVRequest in, an encoded HashKVResponse out (header: the answering
//! member's ID and revision), the cluster ID checked like every other peer
//! call. A revision compacted or not reached yet is refused with etcd's
//! error text, which the asking side turns back into
//! [`PeerHashError::Compacted`] / [`PeerHashError::FutureRev`].
//!
//! Not through the engine's Maintenance.HashKV: that one needs the root
//! user when auth is on, and a peer call has no user.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use prost::Message;
use tonic::server::UnaryService;
use tonic::Status;

use super::codec::RawCodec;
use super::transport::{channel, request_with_cluster_id, PeerDialTls};
use crate::corruption::{judge_initial, judge_periodic, LocalHash, PeerHash, PeerHashError};
use crate::engine::Engine;
use crate::error::EtcdError;
use crate::pb::etcdserverpb::{HashKvRequest, HashKvResponse, ResponseHeader};

pub(super) const HASHKV: &str = "/ketchpeer.Raft/HashKV";

/// Serves `/ketchpeer.Raft/HashKV` (etcd's hashKVHandler).
pub(super) struct ServeHashKv {
    pub engine: Arc<Engine>,
}

impl UnaryService<Bytes> for ServeHashKv {
    type Response = Bytes;
    type Future = BoxFuture<'static, Result<tonic::Response<Bytes>, Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let engine = self.engine.clone();
        Box::pin(async move {
            let req = HashKvRequest::decode(request.into_inner())
                .map_err(|e| Status::invalid_argument(format!("error unmarshalling request: {e}")))?;
            // A walk over the key table: off the runtime's threads.
            let shared = engine.shared().clone();
            let hashed = tokio::task::spawn_blocking(move || shared.store.peer_hash_kv(req.revision))
                .await
                .map_err(|e| Status::internal(format!("hashing: {e}")))?;
            let (hash, revision, compact_revision) = hashed.map_err(|e| {
                crate::log_warn!("failed to get hashKV (requested revision {}): {e}", req.revision);
                crate::server::status::status_of(&e)
            })?;
            let identity = engine.identity();
            let header = ResponseHeader {
                cluster_id: identity.cluster_id,
                member_id: identity.member_id,
                revision,
                ..ResponseHeader::default()
            };
            let resp = HashKvResponse { header: Some(header), hash, compact_revision };
            Ok(tonic::Response::new(Bytes::from(resp.encode_to_vec())))
        })
    }
}

/// etcd's ReqTimeout: 5 s plus two election timeouts.
fn request_timeout(engine: &Engine) -> Duration {
    let c = &engine.shared().config;
    Duration::from_secs(5) + c.tick * u32::try_from(2 * c.election_ticks).unwrap_or(u32::MAX)
}

/// One HashKV call to one peer URL.
async fn ask(
    tls: &PeerDialTls,
    cluster_id: &str,
    url: &str,
    rev: i64,
    timeout: Duration,
) -> Result<HashKvResponse, PeerHashError> {
    let ch = channel(tls, url).map_err(PeerHashError::Other)?;
    let mut grpc = tonic::client::Grpc::new(ch);
    let request = request_with_cluster_id(Bytes::from(HashKvRequest { revision: rev }.encode_to_vec()), cluster_id);
    let call = async {
        grpc.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
        let path = http::uri::PathAndQuery::from_static(HASHKV);
        grpc.unary(request, path, RawCodec { max_receive: usize::MAX }).await
    };
    let Ok(answer) = tokio::time::timeout(timeout, call).await else {
        return Err(PeerHashError::Other("context deadline exceeded".into()));
    };
    match answer {
        Ok(resp) => HashKvResponse::decode(resp.into_inner()).map_err(|e| PeerHashError::Other(e.to_string())),
        Err(s) if s.message() == EtcdError::Compacted.to_string() => Err(PeerHashError::Compacted),
        Err(s) if s.message() == EtcdError::FutureRev.to_string() => Err(PeerHashError::FutureRev),
        Err(s) if s.code() == tonic::Code::FailedPrecondition => Err(PeerHashError::ClusterIdMismatch),
        Err(s) => Err(PeerHashError::Other(s.message().to_owned())),
    }
}

/// etcd's getPeerHashKVs: every other member's hash at `rev`, trying each
/// of a member's peer URLs until one answers.
pub async fn peer_hashes(engine: &Engine, tls: &PeerDialTls, rev: i64) -> Vec<PeerHash> {
    let me = engine.identity().member_id;
    let cluster_id = format!("{:x}", engine.identity().cluster_id);
    let timeout = request_timeout(engine);
    let members: Vec<_> = engine.members().into_iter().filter(|m| m.id != me && !m.peer_ur_ls.is_empty()).collect();
    let asks = members.into_iter().map(|m| {
        let cluster_id = cluster_id.clone();
        async move {
            let mut last = PeerHashError::Other("no peer URL".into());
            for url in &m.peer_ur_ls {
                match ask(tls, &cluster_id, url, rev, timeout).await {
                    Ok(resp) => return PeerHash { id: m.id, urls: m.peer_ur_ls.clone(), answer: Ok(resp) },
                    Err(e) => {
                        crate::log_warn!(
                            "failed hash kv request (local member {me:x}, requested revision {rev}, remote peer endpoint {url}): {e:?}"
                        );
                        last = e;
                    }
                }
            }
            PeerHash { id: m.id, urls: m.peer_ur_ls, answer: Err(last) }
        }
    });
    futures_util::future::join_all(asks).await
}

fn local_hash(engine: &Engine) -> Result<LocalHash, EtcdError> {
    engine.shared().store.hash_kv(0).map(LocalHash::from)
}

/// etcd's InitialCheck (`--experimental-initial-corrupt-check`), before
/// this member serves: Err with the line the member stops with.
pub fn initial_check(engine: &Engine, tls: &PeerDialTls) -> Result<(), String> {
    let me = engine.identity().member_id;
    crate::log_info!("starting initial corruption check (local member {me:x}, timeout {:?})", request_timeout(engine));
    let local = local_hash(engine).map_err(|e| format!("{me:x} failed to fetch hash ({e})"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the corruption check: {e}"))?;
    let peers = runtime.block_on(peer_hashes(engine, tls, local.revision));
    judge_initial(me, local, &peers)
}

/// etcd's monitorKVHash: every `interval`, while this member leads, the
/// periodic check; a mismatch raises CORRUPT (member 0) through Raft.
pub(super) async fn monitor(
    engine: Arc<Engine>,
    tls: Arc<PeerDialTls>,
    interval: Duration,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let me = engine.identity().member_id;
    crate::log_info!("enabled corruption checking (local member {me:x}, interval {interval:?})");
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = stopping.changed() => return,
        }
        if engine.shared().raft.leader.load(Ordering::Acquire) != me {
            continue;
        }
        if let Err(e) = periodic_check(&engine, &tls).await {
            crate::log_warn!("failed to check hash KV: {e}");
        }
    }
}

/// etcd's PeriodicCheck.
async fn periodic_check(engine: &Arc<Engine>, tls: &PeerDialTls) -> Result<(), String> {
    let hash = |engine: Arc<Engine>| async move {
        tokio::task::spawn_blocking(move || local_hash(&engine))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    };
    let h1 = hash(engine.clone()).await?;
    let peers = peer_hashes(engine, tls, h1.revision).await;
    applied_up_to_commit(engine, request_timeout(engine)).await?;
    let h2 = hash(engine.clone()).await?;
    let differ = judge_periodic(engine.identity().member_id, h1, h2, &peers);
    if let Some(first) = differ.first() {
        crate::log_warn!("raising the CORRUPT alarm: member {first:x} differs");
        // etcd 3.5: which member is wrong is not known, so the alarm names none.
        engine.raise_corrupt_alarm(0);
    }
    Ok(())
}

/// What etcd's linearizable read notify gives the periodic check: this
/// member (the leader, whose commit index no follower is ahead of) has
/// applied everything committed when it was asked.
async fn applied_up_to_commit(engine: &Engine, timeout: Duration) -> Result<(), String> {
    let raft = &engine.shared().raft;
    let commit = raft.commit_index.load(Ordering::Acquire);
    let since = Instant::now();
    while raft.applied_index.load(Ordering::Acquire) < commit {
        if since.elapsed() > timeout {
            return Err("etcdserver: request timed out".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// etcd's monitorCompactHash (`--experimental-compact-hash-check-enabled`):
/// every `interval`, while this member leads, the compaction hash check.
pub(super) async fn monitor_compact(
    engine: Arc<Engine>,
    tls: Arc<PeerDialTls>,
    interval: Duration,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let me = engine.identity().member_id;
    let mut latest_checked = 0;
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = stopping.changed() => return,
        }
        if engine.shared().raft.leader.load(Ordering::Acquire) != me {
            continue;
        }
        compact_hash_check(&engine, &tls, &mut latest_checked).await;
    }
}

/// etcd's CompactHashCheck: the recorded compaction hashes newer than the
/// last one the whole cluster agreed on, newest first; each follower's hash
/// at that revision, compared when it has the same compact revision before
/// it. A mismatch raises CORRUPT (member 0); one revision every member
/// agrees on ends the check.
async fn compact_hash_check(engine: &Arc<Engine>, tls: &PeerDialTls, latest_checked: &mut i64) {
    use crate::logging::Level::{Error, Info, Warn};
    let me = engine.identity().member_id;
    log(
        Info,
        "starting compact hash check",
        &[("local-member-id", id(me)), ("timeout", format!("\"{:?}\"", request_timeout(engine)))],
    );
    let mut hashes = engine.shared().store.compaction_hashes();
    hashes.retain(|h| h.revision > *latest_checked);
    hashes.sort_by_key(|h| std::cmp::Reverse(h.revision));
    for (i, hash) in hashes.iter().enumerate() {
        let peers = peer_hashes(engine, tls, hash.revision).await;
        if peers.is_empty() {
            continue;
        }
        let mut checked = 0;
        for p in &peers {
            let Ok(resp) = &p.answer else { continue };
            if resp.compact_revision != hash.compact_revision {
                continue;
            }
            if resp.hash != hash.hash {
                // etcd 3.5: which member is wrong is not known, so the alarm names none.
                engine.raise_corrupt_alarm(0);
                log(
                    Error,
                    "failed compaction hash check",
                    &[
                        ("revision", hash.revision.to_string()),
                        ("leader-compact-revision", hash.compact_revision.to_string()),
                        ("leader-hash", hash.hash.to_string()),
                        ("follower-compact-revision", resp.compact_revision.to_string()),
                        ("follower-hash", resp.hash.to_string()),
                        ("follower-peer-id", id(p.id)),
                    ],
                );
                return;
            }
            checked += 1;
            log(
                Info,
                "successfully checked hash on follower",
                &[("revision", hash.revision.to_string()), ("peer-id", id(p.id))],
            );
        }
        if checked == peers.len() {
            log(
                Info,
                "successfully checked hash on whole cluster",
                &[("number-of-peers-checked", checked.to_string()), ("revision", hash.revision.to_string())],
            );
            *latest_checked = (*latest_checked).max(hash.revision);
            log(Info, "finished compaction hash check", &[("number-of-hashes-checked", (i + 1).to_string())]);
            return;
        }
        log(
            Warn,
            "skipped revision in compaction hash check; was not able to check all peers",
            &[
                ("number-of-peers-checked", checked.to_string()),
                ("number-of-peers", peers.len().to_string()),
                ("revision", hash.revision.to_string()),
            ],
        );
    }
    log(Info, "finished compaction hash check", &[("number-of-hashes-checked", hashes.len().to_string())]);
}

fn log(level: crate::logging::Level, msg: &str, fields: &[(&str, String)]) {
    crate::logging::write(level, "peer_hash.rs", msg, fields);
}

fn id(v: u64) -> String {
    crate::logging::json_str(&format!("{v:x}"))
}
