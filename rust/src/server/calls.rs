//! One engine call per client request, answered through its own waiter.
//!
//! A call registers a oneshot under a fresh token (with
//! [`WAITER_BIT`](crate::completion::WAITER_BIT)), submits the request bytes
//! to the engine and awaits the oneshot; the engine thread that answers it
//! (node, reader or watch) completes it directly. Nothing is polled and no
//! other call is woken.
//!
//! Leader-only calls (LeaseKeepAlive, LeaseTimeToLive, MemberPromote) that
//! the engine answers with NotLeader are checked here against this
//! member's caller (token or client-certificate CN), then sent to the
//! leader's peer URL ([`Leader`], `transport`'s Forward), which serves them
//! unchecked: etcd's followers do the same (leasehttp and /members/promote on
//! the peer URLs, through the peer transport's TLS, with no user). So a user
//! known only by its certificate is that user on the follower, and neither
//! the client port's TLS (--auto-tls included) nor its certificates matter.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tonic::transport::Channel;
use tonic::Status;

use crate::auth::Caller;
use crate::completion::{Answer, Waiter};
use crate::engine::{Engine, Method};
use crate::error::EtcdError;
use crate::server::status::status_of;
use crate::server::transport::{self, PeerDialTls};

/// How long a follower keeps looking for a leader to take a forwarded call
/// (etcd's follower retries its leader until the request's deadline).
const FORWARD_DEADLINE: Duration = Duration::from_secs(5);
const FORWARD_RETRY: Duration = Duration::from_millis(50);
/// etcd's applyTimeout: how long the leader waits to have applied what it committed.
const APPLY_TIMEOUT: Duration = Duration::from_secs(1);

pub struct Calls {
    pub engine: Arc<Engine>,
    leader: Leader,
}

impl Calls {
    pub fn new(engine: Arc<Engine>, forward_tls: Option<ForwardTls>) -> Calls {
        Calls { engine, leader: Leader::new(forward_tls) }
    }

    /// A fresh waiter token (unique across every front of this engine).
    pub fn token(&self) -> u64 {
        self.engine.completions().waiter_token()
    }

    /// Runs one request on this member's engine, with no user.
    pub async fn call(&self, method: Method, request: Bytes) -> Answer {
        self.call_as(method, request, &Caller::default()).await
    }

    /// Runs one request on this member's engine on behalf of `caller`.
    pub async fn call_as(&self, method: Method, request: Bytes, caller: &Caller) -> Answer {
        let token = self.token();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.engine.completions().add_waiter(token, Waiter::Once(tx));
        self.engine.submit_as(method, request, token, caller);
        // The engine answers every request it took; a dropped sender means it stopped.
        rx.await.unwrap_or(Err(EtcdError::Stopped))
    }

    fn is_leader(&self) -> bool {
        let shared = self.engine.shared();
        shared.raft.leader.load(Ordering::Acquire) == shared.identity.member_id
    }

    /// A leader-only call: here if this member leads, otherwise on the leader.
    /// A status error is the leader's answer (or etcd's "no leader").
    /// The caller's token goes along, and is checked here first as well.
    pub async fn call_on_leader(
        &self,
        method: Method,
        path: &'static str,
        request: Bytes,
        caller: &Caller,
    ) -> Result<Bytes, Status> {
        let deadline = tokio::time::Instant::now() + FORWARD_DEADLINE;
        loop {
            if self.is_leader() {
                self.wait_applied().await?;
                match self.call_as(method, request.clone(), caller).await {
                    Ok(answer) => return Ok(answer.into()),
                    Err(EtcdError::NotLeader) => {}
                    Err(e) => return Err(status_of(&e)),
                }
            } else if let Some(channel) = self.leader.channel(&self.engine) {
                self.engine.authorize(method, &request, caller).map_err(|e| status_of(&e))?;
                let cluster_id = format!("{:x}", self.engine.identity().cluster_id);
                match transport::forward(channel, &cluster_id, path, request.clone()).await {
                    Ok(answer) => return Ok(answer),
                    // The leader moved on, or could not be reached: look again.
                    Err(s) if is_not_leader(&s) || s.code() == tonic::Code::Unavailable => {}
                    Err(s) => return Err(s),
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(status_of(&EtcdError::NoLeader));
            }
            tokio::time::sleep(FORWARD_RETRY).await;
        }
    }
}

impl Calls {
    /// A leader-only call a follower forwarded to this member's peer port,
    /// already checked there: NotLeader if this member no longer leads (the
    /// follower looks for the leader again).
    pub async fn serve_forwarded(&self, method: Method, request: Bytes) -> Result<Bytes, Status> {
        if !self.is_leader() {
            return Err(status_of(&EtcdError::NotLeader));
        }
        self.wait_applied().await?;
        let caller = Caller { checked_by_member: true, ..Caller::default() };
        self.call_as(method, request, &caller).await.map(Into::into).map_err(|e| status_of(&e))
    }

    /// Until this member has applied everything it had committed when asked
    /// (etcd's waitAppliedIndex before a leader's lease renew or TTL): a
    /// lease just granted through a follower is committed here first, but
    /// the follower may apply it, answer its client, and forward that
    /// client's keep-alive before this member has applied the grant.
    async fn wait_applied(&self) -> Result<(), Status> {
        let raft = &self.engine.shared().raft;
        let committed = raft.commit_index.load(Ordering::Acquire);
        if raft.applied_index.load(Ordering::Acquire) >= committed {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + APPLY_TIMEOUT;
        while raft.applied_index.load(Ordering::Acquire) < committed {
            if tokio::time::Instant::now() >= deadline {
                return Err(status_of(&EtcdError::TimeoutWaitAppliedIndex));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }
}

fn is_not_leader(s: &Status) -> bool {
    s.code() == tonic::Code::FailedPrecondition && s.message() == EtcdError::NotLeader.to_string()
}

/// The leader-only calls a follower forwards, by their gRPC path.
pub fn forwarded_method(path: &str) -> Option<Method> {
    match path {
        "/etcdserverpb.Lease/LeaseKeepAlive" => Some(Method::LeaseKeepAlive),
        "/etcdserverpb.Lease/LeaseTimeToLive" => Some(Method::LeaseTimeToLive),
        "/etcdserverpb.Cluster/MemberPromote" => Some(Method::ClusterMemberPromote),
        _ => None,
    }
}

/// What a member presents when it dials the leader's https peer URL: its
/// peer transport's (see `transport::PeerDialTls`).
#[derive(Clone)]
pub struct ForwardTls {
    pub ca_pem: Option<Vec<u8>>,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// --peer-auto-tls: the leader's certificate is taken unverified.
    pub skip_verify: bool,
}

/// Channels to the current leader's peer URL, one per leader, made lazily.
struct Leader {
    tls: PeerDialTls,
    channels: Mutex<HashMap<u64, Channel>>,
}

impl Leader {
    fn new(tls: Option<ForwardTls>) -> Leader {
        let tls = tls.map_or_else(PeerDialTls::default, |t| PeerDialTls {
            ca_pem: t.ca_pem,
            cert_pem: t.cert_pem,
            key_pem: t.key_pem,
            skip_verify: t.skip_verify,
        });
        Leader { tls, channels: Mutex::new(HashMap::new()) }
    }

    fn channel(&self, engine: &Engine) -> Option<Channel> {
        let leader = engine.shared().raft.leader.load(Ordering::Acquire);
        if leader == 0 {
            return None;
        }
        if let Some(ch) = self.channels.lock().get(&leader) {
            return Some(ch.clone());
        }
        let member = engine.members().into_iter().find(|m| m.id == leader)?;
        let url = member.peer_ur_ls.first()?;
        let channel = match transport::channel(&self.tls, url) {
            Ok(channel) => channel,
            Err(e) => {
                crate::log_warn!("forwarding to the leader: {e}");
                return None;
            }
        };
        let mut channels = self.channels.lock();
        // Channels to former leaders are dropped: leadership rarely moves back at once.
        channels.retain(|id, _| *id == leader);
        channels.insert(leader, channel.clone());
        Some(channel)
    }
}
