//! The client front door: etcd's gRPC API, and HTTP/1.1 beside it, on every
//! `--listen-client-urls` listener, served from a multi-threaded tokio
//! runtime (tonic's gRPC over hyper's HTTP/2, rustls for https).
//!
//! ```text
//!  socket ─► hyper (auto: h2 or HTTP/1.1) ─► route()
//!               content-type application/grpc ─► grpc(): tonic over RawCodec
//!                  unary      Calls::call ─► Engine::submit ─► (engine threads) ─► oneshot
//!                  Watch      streams::watch: requests in, the hub's responses out
//!                  KeepAlive  streams::keep_alive (on a follower: the leader's)
//!                  Snapshot   streams::snapshot
//!               /v3/... ─► gateway::serve: JSON to the same services
//!               anything else ─► http(): /health, /livez, /readyz, /version, /metrics
//!  --listen-metrics-urls socket ─► http_endpoints: /metrics and the health checks only
//! ```
//!
//! Every gRPC call is counted for `/metrics` (`crate::metrics::grpc`): its
//! method's slot is its index in [`METHODS`].
//!
//! Python binds the listening sockets (so that a port in use fails before
//! the data dir is touched, in Go's words) and hands them over; from then on
//! no Python runs for any client request.

mod calls;
mod codec;
mod gateway;
mod http_endpoints;
pub use http_endpoints::AccessRules;
mod peer_hash;
mod recipes;
pub mod status;
mod streams;
mod tls;
mod transport;

use std::convert::Infallible;
use std::future::Future;
use std::net::TcpListener as StdTcpListener;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::{ready, BoxFuture, Ready};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tonic::body::Body;
use tonic::server::{Grpc, ServerStreamingService, StreamingService, UnaryService};
use tonic::{Status, Streaming};

pub use calls::ForwardTls;
pub use peer_hash::initial_check as initial_corrupt_check;
pub use tls::{self_signed, TlsFiles};
pub use transport::{PeerDialTls, PeerTransport, TransportConfig};

use crate::auth::Caller;
use crate::engine::{Engine, Method};
use crate::error::EtcdError;
use crate::metrics::grpc::{Handled, MethodCounters};
use calls::Calls;
use codec::{CountedCodec, RawCodec};
use status::status_of;
use streams::ResponseStream;

/// etcd's grpcOverheadBytes: gRPC's receive limit is max-request-bytes plus this.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;
/// grpc-go's defaultKeepalivePolicyMinTime, in force when etcd sets no policy.
const GRPC_DEFAULT_PING_MIN_TIME: Duration = Duration::from_mins(5);

pub struct ServerConfig {
    /// Bound and listening; `true` for an https URL.
    pub listeners: Vec<(StdTcpListener, bool)>,
    pub tls: Option<TlsFiles>,
    pub forward_tls: Option<ForwardTls>,
    /// etcd's --max-request-bytes.
    pub max_request_bytes: usize,
    pub max_concurrent_streams: u32,
    /// Server pings on an idle connection (etcd's --grpc-keepalive-interval) and
    /// how long it waits for the answer (--grpc-keepalive-timeout).
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// etcd's --grpc-keepalive-min-time: a client pinging more often gets
    /// GOAWAY ENHANCE_YOUR_CALM "too_many_pings", as grpc-go's server sends.
    pub keepalive_min_time: Duration,
    pub version: String,
    /// Tokio worker threads; 0: one per CPU.
    pub threads: usize,
    /// etcd's --enable-grpc-gateway: serve the JSON gateway (`gateway`).
    pub grpc_gateway: bool,
    /// etcd's --listen-metrics-urls, bound and listening (`true`: https):
    /// they serve `/metrics` and the health checks only.
    pub metrics_listeners: Vec<(StdTcpListener, bool)>,
    /// etcd's --cors and --host-whitelist, for HTTP requests on `listeners`.
    pub access: http_endpoints::AccessRules,
}

/// What every connection's handlers share.
struct Front {
    calls: Arc<Calls>,
    codec: RawCodec,
    version: String,
    grpc_gateway: bool,
    access: http_endpoints::AccessRules,
}

/// A running front door; [`ClientServer::stop`] ends it.
pub struct ClientServer {
    runtime: Option<tokio::runtime::Runtime>,
    engine: Arc<Engine>,
    stopping: tokio::sync::watch::Sender<bool>,
    /// Every connection task holds a clone; `recv` answers None once all ended.
    connections_done: tokio::sync::mpsc::Receiver<()>,
}

impl ClientServer {
    pub fn start(engine: Arc<Engine>, config: ServerConfig) -> Result<ClientServer, String> {
        let tls = match &config.tls {
            Some(files) => Some(Arc::new(tls::ReloadingTls::new(files.clone())?)),
            None => None,
        };
        let threads = if config.threads == 0 {
            std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
        } else {
            config.threads
        };
        let ping_policy = h2::server::PingPolicy {
            // etcd passes no policy for 0s, and grpc-go then enforces its default, 5 minutes.
            min_time: Some(config.keepalive_min_time).filter(|d| !d.is_zero()).unwrap_or(GRPC_DEFAULT_PING_MIN_TIME),
            // etcd's PermitWithoutStream: false.
            permit_without_stream: false,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("ketch-grpc")
            // hyper makes each connection's h2 builder on these threads.
            .on_thread_start(move || h2::server::set_thread_ping_policy(Some(ping_policy)))
            .enable_all()
            .build()
            .map_err(|e| format!("starting the gRPC runtime: {e}"))?;
        let front = Arc::new(Front {
            calls: Arc::new(Calls::new(engine.clone(), config.forward_tls.clone())),
            codec: RawCodec { max_receive: config.max_request_bytes + GRPC_OVERHEAD_BYTES },
            version: config.version.clone(),
            grpc_gateway: config.grpc_gateway,
            access: config.access.clone(),
        });
        let mut http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        http.http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(config.max_concurrent_streams)
            // etcd's 0s means never ping, and never time a ping out.
            .keep_alive_interval(Some(config.keepalive_interval).filter(|d| !d.is_zero()))
            .keep_alive_timeout(if config.keepalive_timeout.is_zero() {
                Duration::from_secs(u64::from(u32::MAX))
            } else {
                config.keepalive_timeout
            })
            .adaptive_window(true)
            // etcd sends responses up to math.MaxInt32; hyper's default frame
            // buffer would otherwise cap what one write hands the socket.
            .max_send_buf_size(1024 * 1024);
        http.http1().timer(TokioTimer::new()).title_case_headers(true); // Go writes canonical header names
        let (stopping, stop_rx) = tokio::sync::watch::channel(false);
        let (conn_tx, connections_done) = tokio::sync::mpsc::channel::<()>(1);
        let listeners = config.listeners.into_iter().map(|(l, tls)| (l, tls, false));
        let metrics_listeners = config.metrics_listeners.into_iter().map(|(l, tls)| (l, tls, true));
        for (listener, is_tls, metrics_only) in listeners.chain(metrics_listeners) {
            listener.set_nonblocking(true).map_err(|e| format!("listener: {e}"))?;
            let listener = {
                let _guard = runtime.enter();
                tokio::net::TcpListener::from_std(listener).map_err(|e| format!("listener: {e}"))?
            };
            let tls = if is_tls {
                Some(tls.clone().ok_or("an https listener needs --cert-file and --key-file")?)
            } else {
                None
            };
            let front = front.clone();
            let router: Router = if metrics_only {
                Arc::new(move |req| {
                    let front = front.clone();
                    Box::pin(async move { http_endpoints::serve_metrics_and_health(&front.calls, &req).await })
                })
            } else {
                Arc::new(move |req| Box::pin(route(front.clone(), is_tls, req)))
            };
            runtime.spawn(accept_loop(listener, tls, router, http.clone(), stop_rx.clone(), conn_tx.clone()));
        }
        drop(conn_tx);
        Ok(ClientServer { runtime: Some(runtime), engine, stopping, connections_done })
    }

    /// Stops accepting, ends every watch stream (they never end by
    /// themselves; clients resume elsewhere), lets other calls finish for up
    /// to `grace`, then drops what is left.
    pub fn stop(&mut self, grace: Duration) {
        let Some(runtime) = self.runtime.take() else { return };
        let _ = self.stopping.send(true);
        self.engine.completions().end_streams(&EtcdError::Stopped);
        let done = &mut self.connections_done;
        runtime.block_on(async {
            let _ = tokio::time::timeout(grace, done.recv()).await;
        });
        runtime.shutdown_timeout(Duration::from_millis(100));
    }
}

impl Drop for ClientServer {
    fn drop(&mut self) {
        self.stop(Duration::ZERO);
    }
}

/// What answers every request of a listener: the client port's `route`, or
/// the peer port's (`transport`).
pub(crate) type Router = Arc<dyn Fn(http::Request<Incoming>) -> BoxFuture<'static, http::Response<Body>> + Send + Sync>;

/// Accepts connections until `stopping`, each served by `router` over
/// HTTP/1.1 or h2 (behind TLS when `tls` is given).
pub(crate) async fn accept_loop(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<tls::ReloadingTls>>,
    router: Router,
    http: hyper_util::server::conn::auto::Builder<TokioExecutor>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
    conn_done: tokio::sync::mpsc::Sender<()>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopping.changed() => return,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of fds, most likely: wait a moment rather than spin.
                crate::log_warn!("accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (router, http, stopping, done) = (router.clone(), http.clone(), stopping.clone(), conn_done.clone());
        let tls = tls.as_ref().map(|t| t.current());
        tokio::spawn(async move {
            let _done = done;
            match tls {
                None => serve_connection(tcp, router, &http, stopping, None).await,
                Some(config) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    // A client that never finishes its handshake does not hold a task forever.
                    // A failed handshake is dropped quietly (etcd logs it at debug
                    // level); the client sees why.
                    let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp));
                    if let Ok(Ok(stream)) = handshake.await {
                        let cn = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .and_then(|c| tls::common_name(c));
                        serve_connection(stream, router, &http, stopping, cn).await;
                    }
                }
            }
        });
    }
}

async fn serve_connection<S>(
    io: S,
    router: Router,
    http: &hyper_util::server::conn::auto::Builder<TokioExecutor>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
    common_name: Option<String>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
        if common_name.is_some() {
            req.extensions_mut().insert(PeerCommonName(common_name.clone()));
        }
        let answer = router(req);
        async move { Ok::<_, Infallible>(answer.await) }
    });
    let conn = http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stopping.changed() => {}
    }
    // GOAWAY: in-flight calls finish, new ones go elsewhere.
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// The client port: gRPC by content type, as etcd's grpcHandlerFunc; the
/// rest through etcd's accessController (host check on plain text, CORS,
/// OPTIONS), then the gateway or the HTTP endpoints.
async fn route(front: Arc<Front>, is_tls: bool, req: http::Request<Incoming>) -> http::Response<Body> {
    let is_grpc =
        req.headers().get(http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if is_grpc {
        return grpc(&front, req).await;
    }
    if !is_tls {
        // Go's req.Host: the Host header in HTTP/1.1, :authority in h2.
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.uri().authority().map(http::uri::Authority::as_str))
            .unwrap_or("");
        if let Some(refused) = front.access.refuse_host(host) {
            return refused;
        }
    }
    let origin = front.access.cors_origin(req.headers().get(http::header::ORIGIN));
    let response = if req.method() == http::Method::OPTIONS {
        http_endpoints::options()
    } else if front.grpc_gateway && gateway::serves(req.uri().path()) {
        gateway::serve(front, req).await
    } else {
        http_endpoints::serve(&front.calls, &front.version, &req).await
    };
    http_endpoints::with_cors(response, origin)
}

/// What kind of call a gRPC method is and what runs it.
#[derive(Clone, Copy)]
enum Kind {
    Unary(Method),
    /// Unary, answered by the leader (this member's engine says NotLeader otherwise).
    LeaderUnary(Method),
    Watch,
    KeepAlive,
    Snapshot,
    /// v3lockpb.Lock and v3electionpb.Election, run by the server on its own store.
    Recipe(recipes::Recipe),
    Observe,
}

/// etcd's v3 services, by gRPC path. A path missing here gets grpc-go's
/// UNIMPLEMENTED. LeaseLeases is answered locally, as etcd does.
const METHODS: [(&str, Kind); 47] = {
    use recipes::Recipe as R;
    use Kind::{KeepAlive, LeaderUnary, Observe, Recipe, Snapshot, Unary, Watch};
    [
        ("/etcdserverpb.KV/Range", Unary(Method::KvRange)),
        ("/etcdserverpb.KV/Put", Unary(Method::KvPut)),
        ("/etcdserverpb.KV/DeleteRange", Unary(Method::KvDeleteRange)),
        ("/etcdserverpb.KV/Txn", Unary(Method::KvTxn)),
        ("/etcdserverpb.KV/Compact", Unary(Method::KvCompact)),
        ("/etcdserverpb.Watch/Watch", Watch),
        ("/etcdserverpb.Lease/LeaseGrant", Unary(Method::LeaseGrant)),
        ("/etcdserverpb.Lease/LeaseRevoke", Unary(Method::LeaseRevoke)),
        ("/etcdserverpb.Lease/LeaseKeepAlive", KeepAlive),
        ("/etcdserverpb.Lease/LeaseTimeToLive", LeaderUnary(Method::LeaseTimeToLive)),
        ("/etcdserverpb.Lease/LeaseLeases", Unary(Method::LeaseLeases)),
        ("/etcdserverpb.Cluster/MemberAdd", Unary(Method::ClusterMemberAdd)),
        ("/etcdserverpb.Cluster/MemberRemove", Unary(Method::ClusterMemberRemove)),
        ("/etcdserverpb.Cluster/MemberUpdate", Unary(Method::ClusterMemberUpdate)),
        ("/etcdserverpb.Cluster/MemberList", Unary(Method::ClusterMemberList)),
        ("/etcdserverpb.Cluster/MemberPromote", LeaderUnary(Method::ClusterMemberPromote)),
        ("/etcdserverpb.Maintenance/Alarm", Unary(Method::MaintenanceAlarm)),
        ("/etcdserverpb.Maintenance/Status", Unary(Method::MaintenanceStatus)),
        ("/etcdserverpb.Maintenance/Defragment", Unary(Method::MaintenanceDefragment)),
        ("/etcdserverpb.Maintenance/Hash", Unary(Method::MaintenanceHash)),
        ("/etcdserverpb.Maintenance/HashKV", Unary(Method::MaintenanceHashKv)),
        ("/etcdserverpb.Maintenance/Snapshot", Snapshot),
        ("/etcdserverpb.Maintenance/MoveLeader", Unary(Method::MaintenanceMoveLeader)),
        ("/etcdserverpb.Auth/Authenticate", Unary(Method::AuthAuthenticate)),
        ("/etcdserverpb.Auth/AuthEnable", Unary(Method::AuthEnable)),
        ("/etcdserverpb.Auth/AuthDisable", Unary(Method::AuthDisable)),
        ("/etcdserverpb.Auth/AuthStatus", Unary(Method::AuthStatus)),
        ("/etcdserverpb.Auth/UserAdd", Unary(Method::AuthUserAdd)),
        ("/etcdserverpb.Auth/UserGet", Unary(Method::AuthUserGet)),
        ("/etcdserverpb.Auth/UserList", Unary(Method::AuthUserList)),
        ("/etcdserverpb.Auth/UserDelete", Unary(Method::AuthUserDelete)),
        ("/etcdserverpb.Auth/UserChangePassword", Unary(Method::AuthUserChangePassword)),
        ("/etcdserverpb.Auth/UserGrantRole", Unary(Method::AuthUserGrantRole)),
        ("/etcdserverpb.Auth/UserRevokeRole", Unary(Method::AuthUserRevokeRole)),
        ("/etcdserverpb.Auth/RoleAdd", Unary(Method::AuthRoleAdd)),
        ("/etcdserverpb.Auth/RoleGet", Unary(Method::AuthRoleGet)),
        ("/etcdserverpb.Auth/RoleList", Unary(Method::AuthRoleList)),
        ("/etcdserverpb.Auth/RoleDelete", Unary(Method::AuthRoleDelete)),
        ("/etcdserverpb.Auth/RoleGrantPermission", Unary(Method::AuthRoleGrantPermission)),
        ("/etcdserverpb.Auth/RoleRevokePermission", Unary(Method::AuthRoleRevokePermission)),
        ("/v3lockpb.Lock/Lock", Recipe(R::Lock)),
        ("/v3lockpb.Lock/Unlock", Recipe(R::Unlock)),
        ("/v3electionpb.Election/Campaign", Recipe(R::Campaign)),
        ("/v3electionpb.Election/Proclaim", Recipe(R::Proclaim)),
        ("/v3electionpb.Election/Leader", Recipe(R::Leader)),
        ("/v3electionpb.Election/Observe", Observe),
        ("/v3electionpb.Election/Resign", Recipe(R::Resign)),
    ]
};

const _: () = assert!(METHODS.len() <= crate::metrics::grpc::SLOTS, "a gRPC method without a metrics slot");

fn kind_of(path: &str) -> Option<(&'static str, Kind)> {
    METHODS.iter().find(|(p, _)| *p == path).copied()
}

/// The metrics slot of a routed path: its index in [`METHODS`].
fn slot_of(path: &str) -> usize {
    METHODS.iter().position(|(p, _)| *p == path).expect("a routed path")
}

/// go-grpc-prometheus' labels of every slot, for the scrape.
pub(crate) fn method_names() -> Vec<crate::metrics::grpc::MethodName> {
    METHODS
        .iter()
        .map(|&(path, kind)| {
            let kind = match kind {
                Kind::Unary(_) | Kind::LeaderUnary(_) | Kind::Recipe(_) => "unary",
                Kind::Watch | Kind::KeepAlive => "bidi_stream",
                Kind::Snapshot | Kind::Observe => "server_stream",
            };
            crate::metrics::grpc::MethodName::of(path, kind)
        })
        .collect()
}

/// grpc-go's answer for a method it does not serve.
fn unimplemented(path: &str) -> Status {
    let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or((path, ""));
    if METHODS.iter().any(|(p, _)| p[1..].starts_with(service) && p[1 + service.len()..].starts_with('/')) {
        Status::unimplemented(format!("unknown method {method} for service {service}"))
    } else {
        Status::unimplemented(format!("unknown service {service}"))
    }
}

async fn grpc(front: &Arc<Front>, req: http::Request<Incoming>) -> http::Response<Body> {
    let Some((path, kind)) = kind_of(req.uri().path()) else {
        return unimplemented(req.uri().path()).into_http();
    };
    let counters = &crate::metrics::grpc::METHODS[slot_of(path)];
    counters.started.inc();
    let started = crate::metrics::extensive().then(Instant::now);
    let codec = CountedCodec { max_receive: front.codec.max_receive, counters };
    let mut grpc = Grpc::new(codec)
        // The codec refuses oversized requests in grpc-go's words; tonic's own
        // limit only stops one so large it is not worth reading.
        .max_decoding_message_size(front.codec.max_receive.saturating_add(4 * 1024 * 1024))
        .max_encoding_message_size(usize::MAX);
    let calls = front.calls.clone();
    let response = match kind {
        Kind::Unary(method) => grpc.unary(UnaryCall { calls, method, leader_path: None }, req).await,
        Kind::LeaderUnary(method) => grpc.unary(UnaryCall { calls, method, leader_path: Some(path) }, req).await,
        Kind::Watch => grpc.streaming(StreamCall { calls, open: streams::watch, counters, started }, req).await,
        Kind::KeepAlive => {
            grpc.streaming(StreamCall { calls, open: streams::keep_alive, counters, started }, req).await
        }
        Kind::Snapshot => grpc.server_streaming(SnapshotCall { calls, observe: false, counters, started }, req).await,
        Kind::Observe => grpc.server_streaming(SnapshotCall { calls, observe: true, counters, started }, req).await,
        Kind::Recipe(recipe) => grpc.unary(RecipeCall { calls, recipe }, req).await,
    };
    // An error before any message is a trailers-only answer: its status is
    // in the headers. Otherwise a unary call is done (OK), and a stream
    // counts itself when it ends (`metrics::grpc::Handled`).
    let code = response.headers().get("grpc-status").and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    match (code, matches!(kind, Kind::Unary(_) | Kind::LeaderUnary(_) | Kind::Recipe(_))) {
        (Some(code), _) => counters.handled(code, started),
        (None, true) => counters.handled(0, started),
        (None, false) => {}
    }
    response
}

/// The gRPC metadata entry clients send their token in (etcd's TokenFieldNameGRPC).
pub(crate) const TOKEN_METADATA: &str = "token";

/// The verified client certificate's common name, put on every request of
/// a connection that presented one (--client-cert-auth).
#[derive(Clone, Debug)]
struct PeerCommonName(Option<String>);

/// Who sent a request: the token in its metadata, the certificate's CN.
fn caller_of<T>(request: &tonic::Request<T>) -> Caller {
    caller_from(request.metadata(), request.extensions().get::<PeerCommonName>().and_then(|cn| cn.0.clone()))
}

/// The caller a request's metadata names: its `token`, or (etcd 3.5, for
/// the JSON gateway's Authorization header) its `authorization`.
fn caller_from(metadata: &tonic::metadata::MetadataMap, common_name: Option<String>) -> Caller {
    let token = [TOKEN_METADATA, "authorization"]
        .iter()
        .find_map(|key| metadata.get(*key).and_then(|v| v.to_str().ok()).map(str::to_owned));
    Caller { token, common_name, checked_by_member: false }
}

struct UnaryCall {
    calls: Arc<Calls>,
    method: Method,
    leader_path: Option<&'static str>,
}

impl UnaryService<Bytes> for UnaryCall {
    type Response = Bytes;
    type Future = BoxFuture<'static, Result<tonic::Response<Bytes>, Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let (calls, method, leader_path) = (self.calls.clone(), self.method, self.leader_path);
        Box::pin(async move {
            let caller = caller_of(&request);
            let request = request.into_inner();
            let answer = match leader_path {
                Some(path) => calls.call_on_leader(method, path, request, &caller).await?,
                None => calls.call_as(method, request, &caller).await.map_err(|e| status_of(&e))?.into(),
            };
            Ok(tonic::Response::new(answer))
        })
    }
}

struct StreamCall {
    calls: Arc<Calls>,
    open: fn(&Arc<Calls>, streams::RequestStream, Caller) -> ResponseStream,
    counters: &'static MethodCounters,
    started: Option<Instant>,
}

impl StreamingService<Bytes> for StreamCall {
    type Response = Bytes;
    type ResponseStream = ResponseStream;
    type Future = Ready<Result<tonic::Response<ResponseStream>, Status>>;

    fn call(&mut self, request: tonic::Request<Streaming<Bytes>>) -> Self::Future {
        let caller = caller_of(&request);
        let responses = (self.open)(&self.calls, Box::pin(request.into_inner()), caller);
        ready(Ok(tonic::Response::new(Box::pin(Handled::new(responses, self.counters, self.started)))))
    }
}

/// The server-streaming calls: Maintenance.Snapshot and Election.Observe.
struct SnapshotCall {
    calls: Arc<Calls>,
    observe: bool,
    counters: &'static MethodCounters,
    started: Option<Instant>,
}

impl ServerStreamingService<Bytes> for SnapshotCall {
    type Response = Bytes;
    type ResponseStream = ResponseStream;
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<ResponseStream>, Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let (calls, observe, counters, started) = (self.calls.clone(), self.observe, self.counters, self.started);
        Box::pin(async move {
            let caller = caller_of(&request);
            let request = request.into_inner();
            let stream = if observe {
                recipes::observe(&calls, request, caller)
            } else {
                streams::snapshot(&calls, request, caller).await
            };
            stream.map(|s| -> ResponseStream { Box::pin(Handled::new(s, counters, started)) }).map(tonic::Response::new)
        })
    }
}

struct RecipeCall {
    calls: Arc<Calls>,
    recipe: recipes::Recipe,
}

impl UnaryService<Bytes> for RecipeCall {
    type Response = Bytes;
    type Future = BoxFuture<'static, Result<tonic::Response<Bytes>, Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let (calls, recipe) = (self.calls.clone(), self.recipe);
        Box::pin(async move {
            let caller = caller_of(&request);
            recipes::serve(&calls, recipe, request.into_inner(), caller).await.map(tonic::Response::new)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_is_routed_once() {
        let mut paths: Vec<&str> = METHODS.iter().map(|(p, _)| *p).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), METHODS.len());
        assert!(matches!(kind_of("/etcdserverpb.KV/Put"), Some((_, Kind::Unary(Method::KvPut)))));
        assert!(matches!(kind_of("/etcdserverpb.Lease/LeaseKeepAlive"), Some((_, Kind::KeepAlive))));
        assert!(kind_of("/etcdserverpb.KV/Nope").is_none());
    }

    #[test]
    fn unknown_methods_are_named_as_grpc_go_names_them() {
        assert_eq!(unimplemented("/etcdserverpb.KV/Nope").message(), "unknown method Nope for service etcdserverpb.KV");
        assert_eq!(
            unimplemented("/etcdserverpb.Auth/Nope").message(),
            "unknown method Nope for service etcdserverpb.Auth"
        );
        assert_eq!(unimplemented("/no.Such/Thing").message(), "unknown service no.Such");
        // A prefix of a served service is another service.
        assert_eq!(unimplemented("/etcdserverpb.K/Put").message(), "unknown service etcdserverpb.K");
    }
}
