//! The peer transport: Raft traffic between members, on ketch's own gRPC
//! service `ketchpeer.Raft`, served and sent from the same tokio runtime
//! kind as the client port.
//!
//! Not etcd's rafthttp: members of a ketch cluster talk only to each other,
//! so the wire is ketch's. Every method carries raw bytes:
//!
//! - `Messages`  client streaming: each message is one batch from the
//!   engine's outbox (`crate::peer`: one Ready's messages for one peer),
//!   handed to the receiver's `Engine::step` as it is.
//! - `Snapshot`  client streaming: one snapshot batch in 1 MiB chunks,
//!   joined and stepped whole; a call of its own, so heartbeats never queue
//!   behind it.
//! - `Forward`   unary: a leader-only call (LeaseKeepAlive, LeaseTimeToLive,
//!   MemberPromote) a follower checked and passes on (`calls`); the client
//!   request's gRPC path in `ketch-forwarded-method`, its bytes as the body.
//! - `HashKV`    unary: this member's HashKV at a revision, for the
//!   corruption checks (`server/peer_hash.rs`, etcd's `/members/hashkv`).
//! - `Members`   unary: the engine's MemberListResponse (a joining member
//!   learns its ID and the cluster's from it before it has an engine; it
//!   asks with Python's grpcio, ketch.peer.fetch_members).
//! - `Probe`     unary: answers the responder's wall clock, 8 bytes of Unix
//!   nanoseconds, big-endian. Every member probes every peer with it, as
//!   etcd's rafthttp prober GETs /raft/probing (see [`probe_peer`]).
//!
//! Every call carries the sender's cluster ID (`ketch-cluster-id`, hex); a
//! member of another cluster is refused with FAILED_PRECONDITION, as etcd
//! refuses a peer whose X-Etcd-Cluster-ID differs. Members alone may come
//! without it: the joiner does not know the ID yet.
//!
//! Sending is one task per peer writing batches from a bounded queue onto
//! one long-lived Messages call. When the call fails, or the queue is full,
//! batches are dropped and the engine told `report_unreachable`: Raft
//! retransmits what matters, as etcd's streamWriter relies on too. While a
//! peer is down its batches are dropped at once rather than queued to go
//! out stale when it is back.

use std::collections::HashMap;
use std::net::TcpListener as StdTcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::mpsc;
use tonic::body::Body;
use tonic::server::{ClientStreamingService, Grpc, UnaryService};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Status, Streaming};

use crate::engine::{Engine, Method};
use crate::server::calls::Calls;
use crate::server::codec::RawCodec;
use crate::server::tls::{ReloadingTls, TlsFiles};
use crate::server::{accept_loop, Router};

const MESSAGES: &str = "/ketchpeer.Raft/Messages";
const SNAPSHOT: &str = "/ketchpeer.Raft/Snapshot";
const MEMBERS: &str = "/ketchpeer.Raft/Members";
const PROBE: &str = "/ketchpeer.Raft/Probe";
const FORWARD: &str = "/ketchpeer.Raft/Forward";
const CLUSTER_ID_KEY: &str = "ketch-cluster-id";
const FORWARDED_METHOD_KEY: &str = "ketch-forwarded-method";

const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;
/// Batches waiting for one peer. A follower this far behind is beyond what a
/// queue helps with; Raft's probing and retransmission take over.
const SEND_QUEUE_BATCHES: usize = 4096;
const RECONNECT_MIN: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_secs(1);
/// A peer that vanished without a FIN (power loss, partition) shows up
/// within seconds instead of after TCP's retransmission timeout.
const KEEPALIVE: Duration = Duration::from_secs(5);
/// How often the member list is looked at again for peers added, removed or
/// moved (the engine bumps its membership version on every change).
const MEMBERSHIP_POLL: Duration = Duration::from_millis(200);

/// What a member presents to the peers it dials (https peer URLs): the
/// CA that verifies them and its own peer certificate, as etcd's transport.
#[derive(Clone, Default)]
pub struct PeerDialTls {
    pub ca_pem: Option<Vec<u8>>,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// --peer-auto-tls: the certificates are self-signed, so the other
    /// member's is taken without verification, as etcd's dialer does.
    pub skip_verify: bool,
}

pub struct TransportConfig {
    /// Bound and listening; `true` for an https URL.
    pub listeners: Vec<(StdTcpListener, bool)>,
    pub server_tls: Option<TlsFiles>,
    pub dial_tls: PeerDialTls,
    /// Peer URLs by member ID until the engine's member list names another
    /// member: a member joining a running cluster starts with an empty log,
    /// so it knows the others only from the member list it fetched (etcd's
    /// "remotes"), and must answer the leader before it learns them.
    pub known_peers: HashMap<u64, Vec<String>>,
    /// etcd's --experimental-corrupt-check-time: how often the leader
    /// compares its HashKV with the others' (None: never).
    pub corrupt_check_time: Option<Duration>,
    /// etcd's --experimental-compact-hash-check-time, when
    /// --experimental-compact-hash-check-enabled: how often the leader
    /// compares the recent compactions' hashes (None: never).
    pub compact_hash_check_time: Option<Duration>,
}

/// A running peer transport; [`PeerTransport::stop`] ends it.
pub struct PeerTransport {
    runtime: Option<tokio::runtime::Runtime>,
    stopping: tokio::sync::watch::Sender<bool>,
}

impl PeerTransport {
    pub fn start(engine: Arc<Engine>, config: TransportConfig) -> Result<PeerTransport, String> {
        let tls = match &config.server_tls {
            Some(files) => Some(Arc::new(ReloadingTls::new(files.clone())?)),
            None => None,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(std::thread::available_parallelism().map_or(2, std::num::NonZero::get).min(2))
            .thread_name("ketch-peer")
            .enable_all()
            .build()
            .map_err(|e| format!("starting the peer runtime: {e}"))?;
        let (stopping, stop_rx) = tokio::sync::watch::channel(false);
        let calls = Arc::new(Calls::new(engine.clone(), None));
        let cluster_id = format!("{:x}", engine.identity().cluster_id);
        let mut http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        http.http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(u32::MAX)
            .adaptive_window(true)
            .keep_alive_interval(Some(KEEPALIVE))
            .keep_alive_timeout(KEEPALIVE);
        // Nobody waits for the peer port's connections at stop: other
        // members' Messages calls never end by themselves.
        let (conn_tx, _) = mpsc::channel::<()>(1);
        for (listener, is_tls) in config.listeners {
            listener.set_nonblocking(true).map_err(|e| format!("peer listener: {e}"))?;
            let listener = {
                let _guard = runtime.enter();
                tokio::net::TcpListener::from_std(listener).map_err(|e| format!("peer listener: {e}"))?
            };
            let tls = if is_tls {
                Some(tls.clone().ok_or("an https peer listener needs --peer-cert-file and --peer-key-file")?)
            } else {
                None
            };
            let (calls, cluster_id) = (calls.clone(), cluster_id.clone());
            let router: Router = Arc::new(move |req| Box::pin(route(calls.clone(), cluster_id.clone(), req)));
            runtime.spawn(accept_loop(listener, tls, router, http.clone(), stop_rx.clone(), conn_tx.clone()));
        }
        let dial_tls = Arc::new(config.dial_tls);
        if let Some(interval) = config.corrupt_check_time.filter(|t| !t.is_zero()) {
            runtime.spawn(super::peer_hash::monitor(engine.clone(), dial_tls.clone(), interval, stop_rx.clone()));
        }
        if let Some(interval) = config.compact_hash_check_time.filter(|t| !t.is_zero()) {
            runtime.spawn(super::peer_hash::monitor_compact(
                engine.clone(),
                dial_tls.clone(),
                interval,
                stop_rx.clone(),
            ));
        }
        let sending = Sending {
            engine,
            tls: dial_tls,
            cluster_id,
            known_peers: config.known_peers,
            urls: HashMap::new(),
            senders: HashMap::new(),
            membership_version: u64::MAX,
        };
        runtime.spawn(sending.run(stop_rx));
        Ok(PeerTransport { runtime: Some(runtime), stopping })
    }

    /// Stops serving and sending at once: calls in flight are dropped (Raft
    /// retransmits), and other members reconnect to whoever serves next.
    pub fn stop(&mut self) {
        let Some(runtime) = self.runtime.take() else { return };
        let _ = self.stopping.send(true);
        runtime.shutdown_timeout(Duration::from_millis(200));
    }
}

impl Drop for PeerTransport {
    fn drop(&mut self) {
        self.stop();
    }
}

// --- receiving ----------------------------------------------------------------

async fn route(calls: Arc<Calls>, cluster_id: String, req: http::Request<Incoming>) -> http::Response<Body> {
    let theirs = req.headers().get(CLUSTER_ID_KEY).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let path = req.uri().path().to_owned();
    let required = path != MEMBERS;
    if theirs.as_deref() != Some(cluster_id.as_str()) && (required || theirs.is_some()) {
        crate::log_warn!("request cluster ID mismatch (got {} want {cluster_id})", theirs.as_deref().unwrap_or("none"));
        return Status::failed_precondition("cluster ID mismatch").into_http();
    }
    let mut grpc = Grpc::new(RawCodec { max_receive: usize::MAX })
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    match path.as_str() {
        MESSAGES => grpc.client_streaming(Receive { calls, whole: false }, req).await,
        SNAPSHOT => grpc.client_streaming(Receive { calls, whole: true }, req).await,
        MEMBERS => grpc.unary(Members { calls }, req).await,
        PROBE => grpc.unary(ProbeAnswer, req).await,
        FORWARD => grpc.unary(Forwarded { calls }, req).await,
        super::peer_hash::HASHKV => {
            grpc.unary(super::peer_hash::ServeHashKv { engine: calls.engine.clone() }, req).await
        }
        _ => Status::unimplemented(format!("unknown method {path}")).into_http(),
    }
}

/// Messages (each message stepped as it comes) or Snapshot (the chunks
/// joined, then stepped whole).
struct Receive {
    calls: Arc<Calls>,
    whole: bool,
}

impl ClientStreamingService<Bytes> for Receive {
    type Response = Bytes;
    type Future = BoxFuture<'static, Result<tonic::Response<Bytes>, Status>>;

    fn call(&mut self, request: tonic::Request<Streaming<Bytes>>) -> Self::Future {
        let (engine, whole) = (self.calls.engine.clone(), self.whole);
        Box::pin(async move {
            let mut stream = request.into_inner();
            if !whole {
                while let Some(batch) = stream.message().await? {
                    if let Err(e) = engine.step(&batch) {
                        crate::log_warn!("dropping a peer stream: undecodable Raft batch: {e}");
                        return Err(Status::invalid_argument(format!("bad Raft batch: {e}")));
                    }
                }
                return Ok(tonic::Response::new(Bytes::new()));
            }
            let mut snapshot = Vec::new();
            while let Some(chunk) = stream.message().await? {
                snapshot.extend_from_slice(&chunk);
            }
            let size = snapshot.len();
            // Decoding a large snapshot takes a while: off the runtime's threads.
            let stepped = tokio::task::spawn_blocking(move || engine.step(&snapshot))
                .await
                .map_err(|e| Status::internal(format!("stepping a snapshot: {e}")))?;
            if let Err(e) = stepped {
                crate::log_warn!("refusing a snapshot from a peer: {e}");
                return Err(Status::invalid_argument(format!("bad snapshot: {e}")));
            }
            crate::log_info!("received a snapshot from a peer ({size} bytes)");
            Ok(tonic::Response::new(Bytes::new()))
        })
    }
}

struct Members {
    calls: Arc<Calls>,
}

impl UnaryService<Bytes> for Members {
    type Response = Bytes;
    type Future = BoxFuture<'static, Result<tonic::Response<Bytes>, Status>>;

    fn call(&mut self, _request: tonic::Request<Bytes>) -> Self::Future {
        let calls = self.calls.clone();
        Box::pin(async move {
            // Linearizable, as the client API's MemberList. A joining member
            // tries the next peer on any failure.
            match calls.call(Method::ClusterMemberList, Bytes::new()).await {
                Ok(answer) => Ok(tonic::Response::new(answer.into())),
                Err(e) => Err(Status::unavailable(e.to_string())),
            }
        })
    }
}

/// The answer to a Probe: this member's wall clock, for the prober's clock drift.
struct ProbeAnswer;

impl UnaryService<Bytes> for ProbeAnswer {
    type Response = Bytes;
    type Future = BoxFuture<'static, Result<tonic::Response<Bytes>, Status>>;

    fn call(&mut self, _request: tonic::Request<Bytes>) -> Self::Future {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let nanos = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
        Box::pin(async move { Ok(tonic::Response::new(Bytes::copy_from_slice(&nanos.to_be_bytes()))) })
    }
}

struct Forwarded {
    calls: Arc<Calls>,
}

impl UnaryService<Bytes> for Forwarded {
    type Response = Bytes;
    type Future = BoxFuture<'static, Result<tonic::Response<Bytes>, Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let calls = self.calls.clone();
        let path = request.metadata().get(FORWARDED_METHOD_KEY).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Box::pin(async move {
            let Some(method) = path.as_deref().and_then(crate::server::calls::forwarded_method) else {
                return Err(Status::unimplemented(format!("not a forwarded call: {path:?}")));
            };
            calls.serve_forwarded(method, request.into_inner()).await.map(tonic::Response::new)
        })
    }
}

/// A follower's leader-only call, sent to the leader's peer port.
pub(crate) async fn forward(channel: Channel, cluster_id: &str, path: &str, body: Bytes) -> Result<Bytes, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| Status::unavailable(format!("connecting to the leader: {e}")))?;
    let mut request = request_with_cluster_id(body, cluster_id);
    if let Ok(value) = path.parse() {
        request.metadata_mut().insert(FORWARDED_METHOD_KEY, value);
    }
    let codec = RawCodec { max_receive: usize::MAX };
    grpc.unary(request, http::uri::PathAndQuery::from_static(FORWARD), codec).await.map(tonic::Response::into_inner)
}

// --- sending ------------------------------------------------------------------

/// The engine's outbox doorbell, for tokio to wait on. The engine owns the
/// fd; holding the engine keeps it open.
struct Doorbell(Arc<Engine>);

impl AsRawFd for Doorbell {
    fn as_raw_fd(&self) -> RawFd {
        self.0.peer_fd()
    }
}

struct Sending {
    engine: Arc<Engine>,
    tls: Arc<PeerDialTls>,
    cluster_id: String,
    known_peers: HashMap<u64, Vec<String>>,
    urls: HashMap<u64, Vec<String>>,
    senders: HashMap<u64, Sender>,
    membership_version: u64,
}

/// One peer: its queue, whether its call is down, and its prober.
struct Sender {
    urls: Vec<String>,
    queue: mpsc::Sender<Bytes>,
    down: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    prober: tokio::task::JoinHandle<()>,
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.task.abort();
        self.prober.abort();
    }
}

impl Sending {
    async fn run(mut self, mut stopping: tokio::sync::watch::Receiver<bool>) {
        // SAFETY: the fd is the engine's eventfd, open for as long as the
        // engine lives, which the Doorbell's Arc guarantees; peer_fd() always
        // returns that same fd.
        let registered = unsafe { tokio::io::unix::AsyncFd::register(Doorbell(self.engine.clone())) };
        let doorbell = match registered.map_err(|e| e.to_string()) {
            Ok(fd) => fd,
            Err(e) => {
                crate::log_warn!("the peer transport cannot wait for the engine's outbox: {e}");
                return;
            }
        };
        let mut poll = tokio::time::interval(MEMBERSHIP_POLL);
        self.refresh_members();
        loop {
            tokio::select! {
                ready = doorbell.readable() => {
                    if let Ok(mut guard) = ready {
                        guard.clear_ready();
                    }
                    // take() clears the eventfd before it takes the queue: a
                    // batch queued meanwhile is taken now or rings again.
                    for batch in self.engine.take_peer_batches() {
                        self.dispatch(batch);
                    }
                }
                _ = poll.tick() => self.refresh_members(),
                _ = stopping.changed() => return,
            }
        }
    }

    /// A prober (and its sender) for every peer in the member list, whether
    /// or not Raft has sent it anything yet: a follower measures its round
    /// trip to the other followers too, as every etcd member does.
    fn start_probers(&mut self) {
        let ids: Vec<u64> = self.urls.keys().copied().collect();
        for id in ids {
            let _ = self.sender(id);
        }
    }

    fn dispatch(&mut self, batch: crate::peer::OutboundBatch) {
        let to = batch.to;
        if !self.senders.contains_key(&to) {
            self.refresh_members(); // a member added since we last looked
        }
        let (engine, tls, cluster_id) = (self.engine.clone(), self.tls.clone(), self.cluster_id.clone());
        let Some(sender) = self.sender(to) else {
            engine.report_unreachable(to);
            return;
        };
        if batch.is_snapshot {
            let channel = sender.urls.first().and_then(|url| channel(&tls, url).ok());
            tokio::spawn(send_snapshot(engine, to, channel, cluster_id, batch.bytes));
            return;
        }
        if sender.down.load(Ordering::Acquire) || sender.queue.try_send(Bytes::from(batch.bytes)).is_err() {
            // A leader's batches carry its heartbeats: etcd's heartbeat send failures.
            if engine.shared().raft.leader.load(Ordering::Acquire) == engine.identity().member_id {
                crate::metrics::HEARTBEAT_SEND_FAILURES.inc();
            }
            engine.report_unreachable(to);
        }
    }

    fn sender(&mut self, to: u64) -> Option<&Sender> {
        if !self.senders.contains_key(&to) {
            let urls = self.urls.get(&to)?.clone();
            let (queue, rx) = mpsc::channel(SEND_QUEUE_BATCHES);
            let down = Arc::new(AtomicBool::new(false));
            let task = tokio::spawn(send_messages(
                self.engine.clone(),
                to,
                urls.clone(),
                self.tls.clone(),
                self.cluster_id.clone(),
                rx,
                down.clone(),
            ));
            let prober = tokio::spawn(probe_peer(to, urls.clone(), self.tls.clone(), self.cluster_id.clone()));
            self.senders.insert(to, Sender { urls, queue, down, task, prober });
        }
        self.senders.get(&to)
    }

    /// Takes the peer URLs from the engine's member list again: a removed
    /// member's sender stops, a moved member's restarts on its new URLs.
    fn refresh_members(&mut self) {
        let version = self.engine.shared().raft.membership_version.load(Ordering::Acquire);
        if version == self.membership_version && !self.urls.is_empty() {
            return;
        }
        self.membership_version = version;
        let me = self.engine.identity().member_id;
        let members = self.engine.members();
        let mut by_id: HashMap<u64, Vec<String>> =
            members.iter().filter(|m| m.id != me).map(|m| (m.id, m.peer_ur_ls.clone())).collect();
        if !self.known_peers.is_empty() {
            if members.len() > 1 {
                self.known_peers.clear(); // the log has told the engine who is in the cluster
            } else {
                for (id, urls) in &self.known_peers {
                    by_id.entry(*id).or_insert_with(|| urls.clone());
                }
            }
        }
        by_id.remove(&me);
        self.senders.retain(|id, s| by_id.get(id).is_some_and(|urls| *urls == s.urls));
        self.urls = by_id;
        self.start_probers();
    }
}

pub(crate) fn channel(tls: &PeerDialTls, url: &str) -> Result<Channel, String> {
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| format!("peer URL {url}: {e}"))?
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE)
        .keep_alive_timeout(KEEPALIVE)
        .keep_alive_while_idle(true)
        .http2_adaptive_window(true);
    if tls.skip_verify {
        if let Some(address) = url.strip_prefix("https://") {
            // tonic's own TLS cannot skip verification: the connector does
            // the handshake, and tonic sees a plain URL over it.
            let config = super::tls::unverified_peer_client(&tls.cert_pem, &tls.key_pem)?;
            let endpoint = Endpoint::from_shared(format!("http://{address}"))
                .map_err(|e| format!("peer URL {url}: {e}"))?
                .http2_keep_alive_interval(KEEPALIVE)
                .keep_alive_timeout(KEEPALIVE)
                .keep_alive_while_idle(true)
                .http2_adaptive_window(true);
            return Ok(endpoint.connect_with_connector_lazy(UnverifiedTlsConnector(config)));
        }
    }
    if endpoint.uri().scheme_str() == Some("https") {
        let mut config = ClientTlsConfig::new();
        if let Some(ca) = &tls.ca_pem {
            config = config.ca_certificate(Certificate::from_pem(ca));
        }
        if !tls.cert_pem.is_empty() {
            config = config.identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem));
        }
        endpoint = endpoint.tls_config(config).map_err(|e| format!("peer TLS for {url}: {e}"))?;
    }
    Ok(endpoint.connect_lazy())
}

/// Dials a peer's https URL under --peer-auto-tls (`channel` gives it the URL
/// as http): TCP, then a TLS handshake that takes any peer certificate.
#[derive(Clone)]
struct UnverifiedTlsConnector(Arc<rustls::ClientConfig>);

type UnverifiedTlsStream = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

impl tower_service::Service<http::Uri> for UnverifiedTlsConnector {
    type Response = UnverifiedTlsStream;
    type Error = std::io::Error;
    type Future = BoxFuture<'static, std::io::Result<UnverifiedTlsStream>>;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let config = self.0.clone();
        Box::pin(async move {
            let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, what);
            let host = uri.host().ok_or_else(|| invalid(format!("peer URL {uri} has no host")))?;
            let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name =
                rustls::pki_types::ServerName::try_from(host).map_err(|e| invalid(format!("peer URL {uri}: {e}")))?;
            let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
            Ok(hyper_util::rt::TokioIo::new(tls))
        })
    }
}

pub(super) fn request_with_cluster_id<T>(message: T, cluster_id: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = cluster_id.parse() {
        request.metadata_mut().insert(CLUSTER_ID_KEY, value);
    }
    request
}

/// One peer's long-lived Messages call, opened again (with back-off, trying
/// the peer's next URL) whenever it fails.
async fn send_messages(
    engine: Arc<Engine>,
    to: u64,
    urls: Vec<String>,
    tls: Arc<PeerDialTls>,
    cluster_id: String,
    mut queue: mpsc::Receiver<Bytes>,
    down: Arc<AtomicBool>,
) {
    let mut delay = RECONNECT_MIN;
    let mut active = true; // for logging changes only
    let mut ever_active = false; // a batch went out: etcd_network_active_peers from then on
    let mut url_index = 0usize;
    loop {
        let url = &urls[url_index % urls.len()];
        let why = match channel(&tls, url) {
            Err(e) => e,
            Ok(ch) => {
                let (feed, stream) = mpsc::channel::<Bytes>(64);
                let mut grpc = tonic::client::Grpc::new(ch);
                let request = request_with_cluster_id(tokio_stream::wrappers::ReceiverStream::new(stream), &cluster_id);
                let mut call = Box::pin(async move {
                    grpc.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
                    let path = http::uri::PathAndQuery::from_static(MESSAGES);
                    grpc.client_streaming(request, path, RawCodec { max_receive: usize::MAX }).await
                });
                loop {
                    tokio::select! {
                        batch = queue.recv() => {
                            let Some(batch) = batch else { return }; // the transport stopped
                            if let Some(p) = crate::metrics::peer(to) { p.sent_bytes.add(batch.len() as u64); }
                            if feed.send(batch).await.is_err() {
                                break (&mut call).await.err().map_or_else(|| "the call ended".to_owned(), |s| s.message().to_owned());
                            }
                            if !active || !ever_active {
                                if !active {
                                    crate::log_info!("peer {to:x} became active");
                                }
                                active = true;
                                ever_active = true;
                                if let Some(p) = crate::metrics::peer(to) { p.activated(); }
                            }
                            delay = RECONNECT_MIN;
                        }
                        ended = &mut call => {
                            break ended.err().map_or_else(|| "the call ended".to_owned(), |s| s.message().to_owned());
                        }
                    }
                }
            }
        };
        if active {
            active = false;
            crate::log_warn!("peer {to:x} became inactive (message send to peer failed): {why}");
            if ever_active {
                if let Some(p) = crate::metrics::peer(to) {
                    p.deactivated();
                }
            }
        }
        // The batches in hand and everything queued are lost with the call.
        down.store(true, Ordering::Release);
        engine.report_unreachable(to);
        while queue.try_recv().is_ok() {}
        if urls.len() > 1 {
            url_index += 1;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RECONNECT_MAX);
        down.store(false, Ordering::Release);
    }
}

async fn send_snapshot(engine: Arc<Engine>, to: u64, channel: Option<Channel>, cluster_id: String, data: Vec<u8>) {
    let size = data.len();
    let sent = async {
        let channel = channel.ok_or_else(|| Status::unavailable("no peer URL"))?;
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
        let data = Bytes::from(data);
        let chunks: Vec<Bytes> = (0..data.len())
            .step_by(SNAPSHOT_CHUNK_BYTES)
            .map(|at| data.slice(at..(at + SNAPSHOT_CHUNK_BYTES).min(data.len())))
            .collect();
        let request = request_with_cluster_id(futures_util::stream::iter(chunks), &cluster_id);
        let path = http::uri::PathAndQuery::from_static(SNAPSHOT);
        grpc.client_streaming(request, path, RawCodec { max_receive: usize::MAX }).await
    };
    let ok = match sent.await {
        Ok(_) => {
            crate::log_info!("sent a snapshot to peer {to:x} ({size} bytes)");
            true
        }
        Err(s) => {
            crate::log_warn!("sending a snapshot to peer {to:x} failed: {}", s.message());
            false
        }
    };
    engine.report_snapshot(to, ok);
}

// --- probing --------------------------------------------------------------------

/// etcd's proberInterval (ConnReadTimeout - 1 s): a probe every 4 s.
const PROBE_INTERVAL: Duration = Duration::from_secs(4);
/// etcd's statusMonitoringInterval and statusErrorInterval: how often the
/// smoothed RTT is observed (and an unhealthy peer logged), 5 s at first.
const PROBE_MONITOR_HEALTHY: Duration = Duration::from_secs(30);
const PROBE_MONITOR_UNHEALTHY: Duration = Duration::from_secs(5);
/// A probe unanswered this long fails (etcd's pipeline dial and read timeouts).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// etcd's round tripper name for the stream prober, which ketch's one
/// prober per peer stands for.
const ROUND_TRIPPER: &str = "ROUND_TRIPPER_RAFT_MESSAGE";

/// xiang90/probing's status: a smoothed RTT (α = 1/8, from 0, as it
/// starts), the clock difference, and the last error.
#[derive(Default)]
struct ProbeStatus {
    srtt: Duration,
    clock_diff: Duration,
    healthy: bool,
    error: Option<String>,
}

impl ProbeStatus {
    fn record(&mut self, rtt: Duration, their_clock: Duration, now: Duration) {
        const ALPHA: f64 = 0.125;
        self.srtt = Duration::from_secs_f64((1.0 - ALPHA) * self.srtt.as_secs_f64() + ALPHA * rtt.as_secs_f64());
        self.clock_diff = now.saturating_sub(their_clock).saturating_sub(self.srtt / 2);
        self.healthy = true;
        self.error = None;
    }

    fn failed(&mut self, why: String) {
        self.healthy = false;
        self.error = Some(why);
    }
}

/// Probes peer `to` every [`PROBE_INTERVAL`] on a connection of its own and
/// observes the smoothed RTT in `etcd_network_peer_round_trip_time_seconds`
/// on etcd's monitoring schedule, logging an unhealthy peer or a clock
/// drift over a second in etcd's words.
async fn probe_peer(to: u64, urls: Vec<String>, tls: Arc<PeerDialTls>, cluster_id: String) {
    let wall = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let mut status = ProbeStatus::default();
    let mut url_index = 0usize;
    let mut channel: Option<Channel> = None;
    let start = tokio::time::Instant::now();
    let mut probe = tokio::time::interval_at(start + PROBE_INTERVAL, PROBE_INTERVAL);
    let monitor = tokio::time::sleep(PROBE_MONITOR_UNHEALTHY);
    tokio::pin!(monitor);
    loop {
        tokio::select! {
            _ = probe.tick() => {
                let url = &urls[url_index % urls.len()];
                if channel.is_none() {
                    channel = self::channel(&tls, url).ok();
                }
                let sent = tokio::time::Instant::now();
                let answer = match channel.clone() {
                    None => Err(format!("peer URL {url} cannot be dialed")),
                    Some(ch) => tokio::time::timeout(PROBE_TIMEOUT, probe_once(ch, &cluster_id))
                        .await
                        .unwrap_or_else(|_| Err("probe timed out".to_owned())),
                };
                match answer {
                    Ok(their_clock) => status.record(sent.elapsed(), their_clock, wall()),
                    Err(why) => {
                        status.failed(why);
                        channel = None; // dial again, on the next URL
                        url_index += 1;
                    }
                }
            }
            () = &mut monitor => {
                let id = crate::logging::Id(to);
                if status.healthy {
                    monitor.as_mut().reset(tokio::time::Instant::now() + PROBE_MONITOR_HEALTHY);
                } else {
                    crate::log_warn!(
                        "prober detected unhealthy status";
                        "round-tripper-name" => ROUND_TRIPPER,
                        "remote-peer-id" => id,
                        "rtt" => status.srtt,
                        "error" => status.error.clone().unwrap_or_else(|| "no probe answered yet".to_owned()),
                    );
                    monitor.as_mut().reset(tokio::time::Instant::now() + PROBE_MONITOR_UNHEALTHY);
                }
                if status.clock_diff > Duration::from_secs(1) {
                    crate::log_warn!(
                        "prober found high clock drift";
                        "round-tripper-name" => ROUND_TRIPPER,
                        "remote-peer-id" => crate::logging::Id(to),
                        "clock-drift" => status.clock_diff,
                        "rtt" => status.srtt,
                    );
                }
                if let Some(p) = crate::metrics::peer(to) {
                    p.round_trip.observe(status.srtt);
                }
            }
        }
    }
}

/// One Probe call: the peer's wall clock (since the Unix epoch).
async fn probe_once(channel: Channel, cluster_id: &str) -> Result<Duration, String> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| e.to_string())?;
    let path = http::uri::PathAndQuery::from_static(PROBE);
    let answer = grpc
        .unary(request_with_cluster_id(Bytes::new(), cluster_id), path, RawCodec { max_receive: 64 })
        .await
        .map_err(|s| s.message().to_owned())?;
    let bytes: [u8; 8] = answer.into_inner().as_ref().try_into().map_err(|_| "a probe answer is 8 bytes".to_owned())?;
    Ok(Duration::from_nanos(u64::from_be_bytes(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smoothed_rtt_starts_from_zero_as_probings_does() {
        let mut s = ProbeStatus::default();
        let now = Duration::from_secs(1_000);
        s.record(Duration::from_millis(8), now, now);
        assert_eq!(s.srtt, Duration::from_millis(1));
        s.record(Duration::from_millis(8), now, now);
        assert!((s.srtt.as_secs_f64() - 0.001_875).abs() < 1e-9);
        assert!(s.healthy);
        s.failed("refused".into());
        assert!(!s.healthy && s.error.as_deref() == Some("refused"));
        s.record(Duration::from_millis(8), now.saturating_sub(Duration::from_secs(3)), now);
        assert!(s.clock_diff > Duration::from_secs(2));
    }
}
