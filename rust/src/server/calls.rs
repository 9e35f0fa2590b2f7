//! One engine call per client request, answered through its own waiter.
//!
//! A call registers a oneshot under a fresh token (with
//! [`WAITER_BIT`](crate::completion::WAITER_BIT)), submits the request bytes
//! to the engine and awaits the oneshot; the engine thread that answers it
//! (node, reader or watch) completes it directly. Nothing is polled and no
//! other call is woken.
//!
//! Leader-only calls (LeaseKeepAlive, LeaseTimeToLive, MemberPromote) that
//! the engine answers with NotLeader are sent to the leader's client URL
//! ([`Leader`]), as etcd's followers pass them to their leader.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Status;

use crate::auth::Caller;
use crate::completion::{Answer, Waiter};
use crate::engine::{Engine, Method};
use crate::error::EtcdError;
use crate::server::codec::RawCodec;
use crate::server::status::status_of;

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
                match forward(channel, path, request.clone(), caller.token.as_deref()).await {
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

async fn forward(
    channel: Channel,
    path: &'static str,
    request: Bytes,
    auth_token: Option<&str>,
) -> Result<Bytes, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| Status::unavailable(format!("connecting to the leader: {e}")))?;
    let codec = RawCodec { max_receive: usize::MAX };
    let path = http::uri::PathAndQuery::from_static(path);
    let mut request = tonic::Request::new(request);
    if let Some(value) = auth_token.and_then(|t| t.parse().ok()) {
        request.metadata_mut().insert(crate::server::TOKEN_METADATA, value);
    }
    grpc.unary(request, path, codec).await.map(tonic::Response::into_inner)
}

/// What a member presents when it calls the leader's https client URL: the
/// CA that verifies the leader and, for a leader with --client-cert-auth,
/// this member's own client-port certificate (as etcd's grpc-gateway
/// loopback does; kubeadm's etcd server certificates allow client use).
#[derive(Clone)]
pub struct ForwardTls {
    pub ca_pem: Option<Vec<u8>>,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// Channels to the current leader's client URL, one per leader, made lazily.
struct Leader {
    tls: Option<ForwardTls>,
    channels: Mutex<HashMap<u64, Channel>>,
}

impl Leader {
    fn new(tls: Option<ForwardTls>) -> Leader {
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
        let url = member.client_ur_ls.first()?.clone();
        let mut endpoint = Endpoint::from_shared(url).ok()?.tcp_nodelay(true);
        if endpoint.uri().scheme_str() == Some("https") {
            let mut tls = ClientTlsConfig::new();
            if let Some(t) = &self.tls {
                if let Some(ca) = &t.ca_pem {
                    tls = tls.ca_certificate(Certificate::from_pem(ca));
                }
                if !t.cert_pem.is_empty() {
                    tls = tls.identity(Identity::from_pem(&t.cert_pem, &t.key_pem));
                }
            }
            endpoint = endpoint.tls_config(tls).ok()?;
        }
        let channel = endpoint.connect_lazy();
        let mut channels = self.channels.lock();
        // Channels to former leaders are dropped: leadership rarely moves back at once.
        channels.retain(|id, _| *id == leader);
        channels.insert(leader, channel.clone());
        Some(channel)
    }
}
