//! etcd's JSON gateway on the client port: `POST /v3/...` with a JSON body,
//! answered in JSON, as etcd 3.5 serves it through grpc-gateway v1.16.
//!
//! ```text
//!  POST /v3/kv/put {"key":"Zm9v","value":"YmFy"}
//!    ─► ROUTES: /etcdserverpb.KV/Put, PutRequest/PutResponse
//!    ─► JSON ─► PutRequest ─► protobuf bytes
//!    ─► the gRPC method's own service (mod.rs METHODS: UnaryCall, streams::watch, ...)
//!    ─► protobuf bytes ─► PutResponse ─► JSON
//! ```
//!
//! etcd's gateway is a gRPC client of its own server, so every answer is
//! the gRPC method's answer; here the request goes to the very service the
//! gRPC path runs, without the loopback connection. What the gateway adds
//! is only its JSON, in grpc-gateway's words:
//! - bodies: proto field names, 64-bit integers as strings, bytes in
//!   base64, enums by name, fields at their default left out (golang
//!   protobuf's jsonpb with OrigName); unknown request fields are ignored,
//!   an empty body is an empty request;
//! - strings escaped as Go's encoding/json escapes them (`<`, `>`, `&`);
//! - an error: `{"error":msg,"code":grpc code,"message":msg}` under the
//!   HTTP status of grpc-gateway's HTTPStatusFromCode; a request that is not
//!   JSON gets Go's encoding/json message with InvalidArgument;
//! - streams (Watch, LeaseKeepAlive, Snapshot, Observe): one
//!   `{"result":{...}}` per response, each followed by a newline, flushed
//!   as it comes; an error ends the stream with
//!   `{"error":{"grpc_code":..,"http_code":..,"message":..,"http_status":..}}`
//!   (and becomes the HTTP status when nothing was sent yet). A bidi
//!   stream's requests are JSON values one after another in the body.
//! - the `Authorization` header (and `Grpc-Metadata-*` headers) as gRPC
//!   metadata of the call.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use prost::Message;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::body::Body;
use tonic::server::{ServerStreamingService, UnaryService};
use tonic::{Code, Status};

use super::{Front, Kind, RecipeCall, SnapshotCall, UnaryCall};
use crate::pb::{etcdserverpb as pb, v3electionpb as election, v3lockpb as lock};
use crate::server::streams::{self, RequestStream, ResponseStream};

/// How a route's messages go between JSON and protobuf.
#[derive(Clone, Copy)]
struct JsonCodec {
    request: fn(&[u8]) -> Result<Bytes, Status>,
    response: fn(&[u8]) -> Result<Vec<u8>, Status>,
}

const fn codec<Req, Resp>() -> Option<JsonCodec>
where
    Req: Message + Default + DeserializeOwned,
    Resp: Message + Default + Serialize,
{
    Some(JsonCodec { request: request_from_json::<Req>, response: response_to_json::<Resp> })
}

/// etcd 3.5's gateway routes (api/etcdserverpb/gw, v3lock/v3election gw):
/// the HTTP path, the gRPC method it calls, and its message types. `None`:
/// a method whose messages ketch does not define yet; it answers what the
/// gRPC method answers (unimplemented) without reading the body.
const ROUTES: [(&str, &str, Option<JsonCodec>); 48] = [
    ("/v3/kv/range", "/etcdserverpb.KV/Range", codec::<pb::RangeRequest, pb::RangeResponse>()),
    ("/v3/kv/put", "/etcdserverpb.KV/Put", codec::<pb::PutRequest, pb::PutResponse>()),
    ("/v3/kv/deleterange", "/etcdserverpb.KV/DeleteRange", codec::<pb::DeleteRangeRequest, pb::DeleteRangeResponse>()),
    ("/v3/kv/txn", "/etcdserverpb.KV/Txn", codec::<pb::TxnRequest, pb::TxnResponse>()),
    ("/v3/kv/compaction", "/etcdserverpb.KV/Compact", codec::<pb::CompactionRequest, pb::CompactionResponse>()),
    ("/v3/watch", "/etcdserverpb.Watch/Watch", codec::<pb::WatchRequest, pb::WatchResponse>()),
    ("/v3/lease/grant", "/etcdserverpb.Lease/LeaseGrant", codec::<pb::LeaseGrantRequest, pb::LeaseGrantResponse>()),
    ("/v3/lease/revoke", "/etcdserverpb.Lease/LeaseRevoke", codec::<pb::LeaseRevokeRequest, pb::LeaseRevokeResponse>()),
    (
        "/v3/lease/keepalive",
        "/etcdserverpb.Lease/LeaseKeepAlive",
        codec::<pb::LeaseKeepAliveRequest, pb::LeaseKeepAliveResponse>(),
    ),
    (
        "/v3/lease/timetolive",
        "/etcdserverpb.Lease/LeaseTimeToLive",
        codec::<pb::LeaseTimeToLiveRequest, pb::LeaseTimeToLiveResponse>(),
    ),
    ("/v3/lease/leases", "/etcdserverpb.Lease/LeaseLeases", codec::<pb::LeaseLeasesRequest, pb::LeaseLeasesResponse>()),
    (
        "/v3/cluster/member/add",
        "/etcdserverpb.Cluster/MemberAdd",
        codec::<pb::MemberAddRequest, pb::MemberAddResponse>(),
    ),
    (
        "/v3/cluster/member/remove",
        "/etcdserverpb.Cluster/MemberRemove",
        codec::<pb::MemberRemoveRequest, pb::MemberRemoveResponse>(),
    ),
    (
        "/v3/cluster/member/update",
        "/etcdserverpb.Cluster/MemberUpdate",
        codec::<pb::MemberUpdateRequest, pb::MemberUpdateResponse>(),
    ),
    (
        "/v3/cluster/member/list",
        "/etcdserverpb.Cluster/MemberList",
        codec::<pb::MemberListRequest, pb::MemberListResponse>(),
    ),
    (
        "/v3/cluster/member/promote",
        "/etcdserverpb.Cluster/MemberPromote",
        codec::<pb::MemberPromoteRequest, pb::MemberPromoteResponse>(),
    ),
    ("/v3/maintenance/alarm", "/etcdserverpb.Maintenance/Alarm", codec::<pb::AlarmRequest, pb::AlarmResponse>()),
    ("/v3/maintenance/status", "/etcdserverpb.Maintenance/Status", codec::<pb::StatusRequest, pb::StatusResponse>()),
    (
        "/v3/maintenance/defragment",
        "/etcdserverpb.Maintenance/Defragment",
        codec::<pb::DefragmentRequest, pb::DefragmentResponse>(),
    ),
    ("/v3/maintenance/hash", "/etcdserverpb.Maintenance/Hash", codec::<pb::HashRequest, pb::HashResponse>()),
    ("/v3/maintenance/hashkv", "/etcdserverpb.Maintenance/HashKV", codec::<pb::HashKvRequest, pb::HashKvResponse>()),
    (
        "/v3/maintenance/snapshot",
        "/etcdserverpb.Maintenance/Snapshot",
        codec::<pb::SnapshotRequest, pb::SnapshotResponse>(),
    ),
    (
        "/v3/maintenance/transfer-leadership",
        "/etcdserverpb.Maintenance/MoveLeader",
        codec::<pb::MoveLeaderRequest, pb::MoveLeaderResponse>(),
    ),
    ("/v3/maintenance/downgrade", "/etcdserverpb.Maintenance/Downgrade", None),
    ("/v3/auth/enable", "/etcdserverpb.Auth/AuthEnable", codec::<pb::AuthEnableRequest, pb::AuthEnableResponse>()),
    ("/v3/auth/disable", "/etcdserverpb.Auth/AuthDisable", codec::<pb::AuthDisableRequest, pb::AuthDisableResponse>()),
    ("/v3/auth/status", "/etcdserverpb.Auth/AuthStatus", codec::<pb::AuthStatusRequest, pb::AuthStatusResponse>()),
    (
        "/v3/auth/authenticate",
        "/etcdserverpb.Auth/Authenticate",
        codec::<pb::AuthenticateRequest, pb::AuthenticateResponse>(),
    ),
    ("/v3/auth/user/add", "/etcdserverpb.Auth/UserAdd", codec::<pb::AuthUserAddRequest, pb::AuthUserAddResponse>()),
    ("/v3/auth/user/get", "/etcdserverpb.Auth/UserGet", codec::<pb::AuthUserGetRequest, pb::AuthUserGetResponse>()),
    ("/v3/auth/user/list", "/etcdserverpb.Auth/UserList", codec::<pb::AuthUserListRequest, pb::AuthUserListResponse>()),
    (
        "/v3/auth/user/delete",
        "/etcdserverpb.Auth/UserDelete",
        codec::<pb::AuthUserDeleteRequest, pb::AuthUserDeleteResponse>(),
    ),
    (
        "/v3/auth/user/changepw",
        "/etcdserverpb.Auth/UserChangePassword",
        codec::<pb::AuthUserChangePasswordRequest, pb::AuthUserChangePasswordResponse>(),
    ),
    (
        "/v3/auth/user/grant",
        "/etcdserverpb.Auth/UserGrantRole",
        codec::<pb::AuthUserGrantRoleRequest, pb::AuthUserGrantRoleResponse>(),
    ),
    (
        "/v3/auth/user/revoke",
        "/etcdserverpb.Auth/UserRevokeRole",
        codec::<pb::AuthUserRevokeRoleRequest, pb::AuthUserRevokeRoleResponse>(),
    ),
    ("/v3/auth/role/add", "/etcdserverpb.Auth/RoleAdd", codec::<pb::AuthRoleAddRequest, pb::AuthRoleAddResponse>()),
    ("/v3/auth/role/get", "/etcdserverpb.Auth/RoleGet", codec::<pb::AuthRoleGetRequest, pb::AuthRoleGetResponse>()),
    ("/v3/auth/role/list", "/etcdserverpb.Auth/RoleList", codec::<pb::AuthRoleListRequest, pb::AuthRoleListResponse>()),
    (
        "/v3/auth/role/delete",
        "/etcdserverpb.Auth/RoleDelete",
        codec::<pb::AuthRoleDeleteRequest, pb::AuthRoleDeleteResponse>(),
    ),
    (
        "/v3/auth/role/grant",
        "/etcdserverpb.Auth/RoleGrantPermission",
        codec::<pb::AuthRoleGrantPermissionRequest, pb::AuthRoleGrantPermissionResponse>(),
    ),
    (
        "/v3/auth/role/revoke",
        "/etcdserverpb.Auth/RoleRevokePermission",
        codec::<pb::AuthRoleRevokePermissionRequest, pb::AuthRoleRevokePermissionResponse>(),
    ),
    ("/v3/lock/lock", "/v3lockpb.Lock/Lock", codec::<lock::LockRequest, lock::LockResponse>()),
    ("/v3/lock/unlock", "/v3lockpb.Lock/Unlock", codec::<lock::UnlockRequest, lock::UnlockResponse>()),
    (
        "/v3/election/campaign",
        "/v3electionpb.Election/Campaign",
        codec::<election::CampaignRequest, election::CampaignResponse>(),
    ),
    (
        "/v3/election/proclaim",
        "/v3electionpb.Election/Proclaim",
        codec::<election::ProclaimRequest, election::ProclaimResponse>(),
    ),
    (
        "/v3/election/leader",
        "/v3electionpb.Election/Leader",
        codec::<election::LeaderRequest, election::LeaderResponse>(),
    ),
    (
        "/v3/election/observe",
        "/v3electionpb.Election/Observe",
        codec::<election::LeaderRequest, election::LeaderResponse>(),
    ),
    (
        "/v3/election/resign",
        "/v3electionpb.Election/Resign",
        codec::<election::ResignRequest, election::ResignResponse>(),
    ),
];

/// Whether the HTTP side hands this path to the gateway: etcd mounts it on
/// `/v3/`, and takes `/v3beta/` (3.4's name) as `/v3/`.
pub fn serves(path: &str) -> bool {
    path.starts_with("/v3/") || path.starts_with("/v3beta/")
}

pub async fn serve(front: Arc<Front>, req: http::Request<Incoming>) -> http::Response<Body> {
    // The CORS headers are added by the caller (`route`), as etcd's
    // accessController adds them around the gateway's mux.
    answer(front, req).await
}

async fn answer(front: Arc<Front>, req: http::Request<Incoming>) -> http::Response<Body> {
    if req.method() == http::Method::OPTIONS {
        return respond(http::StatusCode::OK, None, Vec::new());
    }
    let path = req.uri().path();
    let path = path.strip_prefix("/v3beta/").map_or_else(|| path.to_owned(), |rest| format!("/v3/{rest}"));
    let Some(&(_, grpc_path, json)) = ROUTES.iter().find(|(p, _, _)| *p == path) else {
        return plain(http::StatusCode::NOT_FOUND, "Not Found\n");
    };
    if req.method() != http::Method::POST {
        return plain(http::StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    }
    let (Some(kind), Some(json)) = (super::kind_of(grpc_path).map(|(_, k)| k), json) else {
        return error_response(&super::unimplemented(grpc_path));
    };
    let metadata = call_metadata(req.headers());
    let common_name = req.extensions().get::<super::PeerCommonName>().and_then(|cn| cn.0.clone());
    let body = req.into_body();
    let calls = front.calls.clone();
    match kind {
        Kind::Watch | Kind::KeepAlive => {
            let open = if matches!(kind, Kind::Watch) { streams::watch } else { streams::keep_alive };
            let mut requests = JsonRequests::new(body, json.request, front.codec.max_receive);
            // grpc-gateway decodes the first request before it opens the
            // stream: one that is not JSON is answered as a unary error,
            // Unknown (it passes the decoder's error on as it is).
            let first = match requests.next_request().await {
                Ok(first) => first,
                Err(status) if status.code() == Code::InvalidArgument => {
                    return error_response(&Status::unknown(status.message().to_owned()))
                }
                Err(status) => return error_response(&status),
            };
            let rest = futures_util::stream::unfold(requests, |mut requests| async move {
                // A request that does not decode ends the requests, not the stream.
                requests.next_request().await.ok().flatten().map(|r| (Ok(r), requests))
            });
            let stream: RequestStream = Box::pin(futures_util::stream::iter(first.map(Ok)).chain(rest));
            let caller = super::caller_from(&metadata, common_name);
            stream_response(open(&calls, stream, caller), json.response).await
        }
        Kind::Snapshot | Kind::Observe => {
            let request = match read_request(body, json.request, front.codec.max_receive).await {
                Ok(r) => r,
                Err(status) => return error_response(&status),
            };
            // Counted as the gRPC call it is (etcd's gateway dials its own gRPC port).
            let counters = &crate::metrics::grpc::METHODS[super::slot_of(grpc_path)];
            let mut call = SnapshotCall { calls, observe: matches!(kind, Kind::Observe), counters, started: None };
            match call.call(with_metadata(request, metadata, common_name)).await {
                Ok(responses) => stream_response(responses.into_inner(), json.response).await,
                Err(status) => error_response(&status),
            }
        }
        Kind::Unary(method) => {
            unary(UnaryCall { calls, method, leader_path: None }, body, json, &front, (metadata, common_name)).await
        }
        Kind::LeaderUnary(method) => {
            unary(
                UnaryCall { calls, method, leader_path: Some(grpc_path) },
                body,
                json,
                &front,
                (metadata, common_name),
            )
            .await
        }
        Kind::Recipe(recipe) => unary(RecipeCall { calls, recipe }, body, json, &front, (metadata, common_name)).await,
    }
}

/// A unary call through the service gRPC runs for it.
async fn unary<S: UnaryService<Bytes, Response = Bytes>>(
    mut service: S,
    body: Incoming,
    json: JsonCodec,
    front: &Front,
    (metadata, common_name): (tonic::metadata::MetadataMap, Option<String>),
) -> http::Response<Body> {
    let request = match read_request(body, json.request, front.codec.max_receive).await {
        Ok(r) => r,
        Err(status) => return error_response(&status),
    };
    match service
        .call(with_metadata(request, metadata, common_name))
        .await
        .and_then(|response| (json.response)(response.get_ref()))
    {
        Ok(body) => grpc_answered(respond(http::StatusCode::OK, Some("application/json"), body)),
        Err(status) => error_response(&status),
    }
}

/// The metadata grpc-gateway gives the call: `Authorization` as
/// `authorization` (etcd takes its token from there) and each
/// `Grpc-Metadata-Name` header as `name`.
fn call_metadata(headers: &http::HeaderMap) -> tonic::metadata::MetadataMap {
    let mut metadata = tonic::metadata::MetadataMap::new();
    for (name, value) in headers {
        let key = if name == http::header::AUTHORIZATION {
            Some(name.as_str())
        } else {
            name.as_str().strip_prefix("grpc-metadata-")
        };
        let Some(key) = key else { continue };
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::AsciiMetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::AsciiMetadataValue::try_from(value.as_bytes()),
        ) {
            metadata.append(key, value);
        }
    }
    metadata
}

fn with_metadata(
    request: Bytes,
    metadata: tonic::metadata::MetadataMap,
    common_name: Option<String>,
) -> tonic::Request<Bytes> {
    let mut request = tonic::Request::new(request);
    *request.metadata_mut() = metadata;
    request.extensions_mut().insert(super::PeerCommonName(common_name));
    request
}

/// A unary request: the whole body, one JSON value (what follows it is not read, as Go's decoder).
async fn read_request(
    body: Incoming,
    decode: fn(&[u8]) -> Result<Bytes, Status>,
    max_receive: usize,
) -> Result<Bytes, Status> {
    let body = body.collect().await.map_err(|e| Status::invalid_argument(e.to_string()))?.to_bytes();
    let request = match scan_json(&body, true) {
        Scan::Value(end) => decode(&body[..end])?,
        Scan::Empty => Bytes::new(),
        Scan::Error(message) => return Err(Status::invalid_argument(message)),
        // Not at the end of the body (scan_json decides there); said as Go would.
        Scan::More => return Err(Status::invalid_argument("unexpected EOF")),
    };
    check_size(&request, max_receive)?;
    Ok(request)
}

/// The gRPC server's receive limit (etcd's --max-request-bytes plus gRPC's
/// overhead), which etcd's gateway meets as any client does.
fn check_size(request: &Bytes, max_receive: usize) -> Result<(), Status> {
    super::codec::RawCodec { max_receive }.check_size(request.len())
}

/// A bidi stream's requests: JSON values one after another in the body.
struct JsonRequests {
    body: Incoming,
    buf: BytesMut,
    eof: bool,
    decode: fn(&[u8]) -> Result<Bytes, Status>,
    max_receive: usize,
}

impl JsonRequests {
    fn new(body: Incoming, decode: fn(&[u8]) -> Result<Bytes, Status>, max_receive: usize) -> JsonRequests {
        JsonRequests { body, buf: BytesMut::new(), eof: false, decode, max_receive }
    }

    /// The next request; None at the end of the body.
    async fn next_request(&mut self) -> Result<Option<Bytes>, Status> {
        loop {
            match scan_json(&self.buf, self.eof) {
                Scan::Value(end) => {
                    let value = self.buf.split_to(end);
                    let request = (self.decode)(&value)?;
                    check_size(&request, self.max_receive)?;
                    return Ok(Some(request));
                }
                Scan::Empty => return Ok(None),
                Scan::Error(message) => return Err(Status::invalid_argument(message)),
                Scan::More => {}
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Err(Status::invalid_argument(e.to_string())),
                None => self.eof = true,
            }
        }
    }
}

/// A streaming answer, as grpc-gateway's ForwardResponseStream writes it.
/// The HTTP status waits for the first response: an error that comes first
/// is the status too.
async fn stream_response(
    mut responses: ResponseStream,
    encode: fn(&[u8]) -> Result<Vec<u8>, Status>,
) -> http::Response<Body> {
    let first = responses.next().await;
    let status = match &first {
        Some(Err(s)) => http_status(s.code()),
        _ => http::StatusCode::OK,
    };
    let chunks = futures_util::stream::iter(first).chain(responses);
    let frames = futures_util::stream::unfold((chunks, false), move |(mut chunks, ended)| async move {
        if ended {
            return None;
        }
        let chunk = match chunks.next().await? {
            Ok(response) => match encode(&response) {
                Ok(json) => result_chunk(&json),
                Err(status) => return Some((stream_error_chunk(&status), (chunks, true))),
            },
            Err(status) => return Some((stream_error_chunk(&status), (chunks, true))),
        };
        Some((chunk, (chunks, false)))
    });
    let body = StreamBody::new(frames.map(|chunk| Ok::<_, Infallible>(Frame::data(Bytes::from(chunk)))));
    let response = http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::new(body))
        .expect("a well-formed response");
    if status == http::StatusCode::OK {
        grpc_answered(response)
    } else {
        response
    }
}

/// The gRPC response headers grpc-gateway passes on (`Grpc-Metadata-` and
/// the name): the server's content type, on an answer that had headers.
fn grpc_answered(mut response: http::Response<Body>) -> http::Response<Body> {
    response.headers_mut().insert("grpc-metadata-content-type", http::HeaderValue::from_static("application/grpc"));
    response
}

fn result_chunk(json: &[u8]) -> Vec<u8> {
    let mut chunk = Vec::with_capacity(json.len() + 12);
    chunk.extend_from_slice(b"{\"result\":");
    chunk.extend_from_slice(json);
    chunk.extend_from_slice(b"}\n");
    chunk
}

/// grpc-gateway's StreamError, without the newline that follows a result.
fn stream_error_chunk(status: &Status) -> Vec<u8> {
    let http = http_status(status.code());
    format!(
        r#"{{"error":{{"grpc_code":{},"http_code":{},"message":{},"http_status":{}}}}}"#,
        i32::from(status.code()),
        http.as_u16(),
        go_json_string(status.message()),
        go_json_string(http.canonical_reason().unwrap_or("")),
    )
    .into_bytes()
}

/// grpc-gateway's DefaultHTTPError body and status.
fn error_response(status: &Status) -> http::Response<Body> {
    let message = go_json_string(status.message());
    let body = format!(r#"{{"error":{message},"code":{},"message":{message}}}"#, i32::from(status.code()));
    respond(http_status(status.code()), Some("application/json"), body.into_bytes())
}

/// Go's http.Error, which grpc-gateway's mux answers an unknown path or method with.
fn plain(status: http::StatusCode, text: &'static str) -> http::Response<Body> {
    let mut response = respond(status, Some("text/plain; charset=utf-8"), text.as_bytes().to_vec());
    response.headers_mut().insert("x-content-type-options", http::HeaderValue::from_static("nosniff"));
    response
}

fn respond(status: http::StatusCode, content_type: Option<&'static str>, body: Vec<u8>) -> http::Response<Body> {
    let mut response = http::Response::builder().status(status);
    if let Some(content_type) = content_type {
        response = response.header(http::header::CONTENT_TYPE, content_type);
    }
    response.body(Body::new(Full::new(Bytes::from(body)))).expect("a well-formed response")
}

/// grpc-gateway 1.16's HTTPStatusFromCode (etcd 3.4's gateway answered
/// FailedPrecondition with 412; 1.16 chose 400 on purpose).
fn http_status(code: Code) -> http::StatusCode {
    use http::StatusCode as H;
    match code {
        Code::Ok => H::OK,
        Code::Cancelled => H::REQUEST_TIMEOUT,
        Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => H::BAD_REQUEST,
        Code::DeadlineExceeded => H::GATEWAY_TIMEOUT,
        Code::NotFound => H::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => H::CONFLICT,
        Code::PermissionDenied => H::FORBIDDEN,
        Code::Unauthenticated => H::UNAUTHORIZED,
        Code::ResourceExhausted => H::TOO_MANY_REQUESTS,
        Code::Unimplemented => H::NOT_IMPLEMENTED,
        Code::Unavailable => H::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => H::INTERNAL_SERVER_ERROR,
    }
}

/// One JSON value, checked and decoded as jsonpb decodes it, re-encoded as protobuf.
fn request_from_json<T: Message + Default + DeserializeOwned>(json: &[u8]) -> Result<Bytes, Status> {
    let json = json.trim_ascii_start();
    // jsonpb takes a top-level null as an empty message.
    if json == b"null" {
        return Ok(Bytes::new());
    }
    if json.first() != Some(&b'{') {
        let what = match json.first() {
            Some(b'"') => "string",
            Some(b'[') => "array",
            Some(b't' | b'f') => "bool",
            _ => "number",
        };
        return Err(Status::invalid_argument(format!(
            "json: cannot unmarshal {what} into Go value of type map[string]json.RawMessage"
        )));
    }
    let mut value: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| Status::invalid_argument(e.to_string()))?;
    drop_nulls(&mut value);
    let message: T = serde_json::from_value(value).map_err(|e| Status::invalid_argument(e.to_string()))?;
    Ok(message.encode_to_vec().into())
}

/// jsonpb takes a field set to null as a field not given (pbjson refuses
/// null for a scalar): the nulls go before the message is read.
fn drop_nulls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(fields) => {
            fields.retain(|_, v| !v.is_null());
            fields.values_mut().for_each(drop_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

fn response_to_json<T: Message + Default + Serialize>(pb: &[u8]) -> Result<Vec<u8>, Status> {
    let message = T::decode(pb).map_err(|e| Status::internal(format!("decoding the response: {e}")))?;
    let mut out = Vec::with_capacity(pb.len() * 2 + 16);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, GoEscapes);
    message.serialize(&mut serializer).map_err(|e| Status::internal(format!("encoding the response as JSON: {e}")))?;
    Ok(out)
}

/// serde_json's compact output with Go's encoding/json string escapes:
/// `<`, `>`, `&`, U+2028 and U+2029 as `\uXXXX` (jsonpb writes strings with it).
struct GoEscapes;

impl serde_json::ser::Formatter for GoEscapes {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let escape = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..i])?;
            writer.write_all(escape.as_bytes())?;
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// A string as Go's encoding/json writes it.
fn go_json_string(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + 2);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, GoEscapes);
    s.serialize(&mut serializer).expect("a string always serializes");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// Where the first JSON value of a buffer ends, by Go's encoding/json grammar.
#[derive(Debug, PartialEq)]
enum Scan {
    /// The value is `buf[..end]` (leading whitespace included).
    Value(usize),
    /// Only whitespace, and the body has ended (Go's io.EOF).
    Empty,
    /// The value goes on past what has arrived.
    More,
    /// Go's words for the first byte that cannot be JSON here.
    Error(String),
}

/// Scans one value from the start of `buf`, as Go's json.Decoder does:
/// syntax errors in its scanner's words; a value cut off by the end of the
/// body is "unexpected EOF"; whatever follows the value is left unread.
fn scan_json(buf: &[u8], eof: bool) -> Scan {
    let mut scanner = Scanner { buf, at: 0 };
    scanner.skip_space();
    if scanner.at == buf.len() {
        return if eof { Scan::Empty } else { Scan::More };
    }
    match scanner.value() {
        Ok(()) => Scan::Value(scanner.at),
        // At the end of the body Go's decoder ends the value with a space: a
        // top-level number is whole then; anything else was cut off.
        Err(Stop::End) if eof => {
            let mut ended = buf.to_vec();
            ended.push(b' ');
            match scan_json(&ended, false) {
                Scan::Value(end) => Scan::Value(end.min(buf.len())),
                _ => Scan::Error("unexpected EOF".to_owned()),
            }
        }
        Err(Stop::End) => Scan::More,
        Err(Stop::Invalid(c, context)) => Scan::Error(format!("invalid character {} {context}", go_quote_char(c))),
    }
}

enum Stop {
    /// The buffer ended inside the value.
    End,
    Invalid(u8, &'static str),
}

struct Scanner<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Result<u8, Stop> {
        self.buf.get(self.at).copied().ok_or(Stop::End)
    }

    fn skip_space(&mut self) {
        while matches!(self.buf.get(self.at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn value(&mut self) -> Result<(), Stop> {
        match self.peek()? {
            b'{' => self.object(),
            b'[' => self.array(),
            b'"' => self.string("in string literal"),
            b'-' | b'0'..=b'9' => self.number(),
            b't' => self.literal(b"true", "in literal true"),
            b'f' => self.literal(b"false", "in literal false"),
            b'n' => self.literal(b"null", "in literal null"),
            c => Err(Stop::Invalid(c, "looking for beginning of value")),
        }
    }

    fn object(&mut self) -> Result<(), Stop> {
        self.at += 1;
        self.skip_space();
        if self.peek()? == b'}' {
            self.at += 1;
            return Ok(());
        }
        loop {
            match self.peek()? {
                b'"' => self.string("in string literal")?,
                c => return Err(Stop::Invalid(c, "looking for beginning of object key string")),
            }
            self.skip_space();
            match self.peek()? {
                b':' => self.at += 1,
                c => return Err(Stop::Invalid(c, "after object key")),
            }
            self.skip_space();
            self.value()?;
            self.skip_space();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Ok(());
                }
                c => return Err(Stop::Invalid(c, "after object key:value pair")),
            }
            self.skip_space();
        }
    }

    fn array(&mut self) -> Result<(), Stop> {
        self.at += 1;
        self.skip_space();
        if self.peek()? == b']' {
            self.at += 1;
            return Ok(());
        }
        loop {
            self.value()?;
            self.skip_space();
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Ok(());
                }
                c => return Err(Stop::Invalid(c, "after array element")),
            }
            self.skip_space();
        }
    }

    fn string(&mut self, context: &'static str) -> Result<(), Stop> {
        self.at += 1;
        loop {
            let c = self.peek()?;
            self.at += 1;
            match c {
                b'"' => return Ok(()),
                b'\\' => match self.peek()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 1,
                    b'u' => {
                        self.at += 1;
                        for _ in 0..4 {
                            match self.peek()? {
                                c if c.is_ascii_hexdigit() => self.at += 1,
                                c => return Err(Stop::Invalid(c, "in \\u hexadecimal character escape")),
                            }
                        }
                    }
                    c => return Err(Stop::Invalid(c, "in string escape code")),
                },
                c if c < 0x20 => return Err(Stop::Invalid(c, context)),
                _ => {}
            }
        }
    }

    fn literal(&mut self, word: &'static [u8], context: &'static str) -> Result<(), Stop> {
        self.at += 1;
        for &expected in &word[1..] {
            let c = self.peek()?;
            if c != expected {
                let context = match (context, expected) {
                    ("in literal true", b'r') => "in literal true (expecting 'r')",
                    ("in literal true", b'u') => "in literal true (expecting 'u')",
                    ("in literal true", _) => "in literal true (expecting 'e')",
                    ("in literal false", b'a') => "in literal false (expecting 'a')",
                    ("in literal false", b'l') => "in literal false (expecting 'l')",
                    ("in literal false", b's') => "in literal false (expecting 's')",
                    ("in literal false", _) => "in literal false (expecting 'e')",
                    (_, b'u') => "in literal null (expecting 'u')",
                    _ => "in literal null (expecting 'l')",
                };
                return Err(Stop::Invalid(c, context));
            }
            self.at += 1;
        }
        Ok(())
    }

    fn number(&mut self) -> Result<(), Stop> {
        if self.peek()? == b'-' {
            self.at += 1;
            match self.peek()? {
                b'0'..=b'9' => {}
                c => return Err(Stop::Invalid(c, "in numeric literal")),
            }
        }
        if self.peek()? == b'0' {
            self.at += 1;
        } else {
            self.digits()?;
        }
        if self.peek()? == b'.' {
            self.at += 1;
            match self.peek()? {
                b'0'..=b'9' => self.digits()?,
                c => return Err(Stop::Invalid(c, "after decimal point in numeric literal")),
            }
        }
        if matches!(self.peek()?, b'e' | b'E') {
            self.at += 1;
            if matches!(self.peek()?, b'+' | b'-') {
                self.at += 1;
            }
            match self.peek()? {
                b'0'..=b'9' => self.digits()?,
                c => return Err(Stop::Invalid(c, "in exponent of numeric literal")),
            }
        }
        // A number ends at the first byte that cannot continue it: every
        // step above has seen that byte (a number at the end of what
        // arrived may still go on).
        Ok(())
    }

    fn digits(&mut self) -> Result<(), Stop> {
        while self.peek()?.is_ascii_digit() {
            self.at += 1;
        }
        Ok(())
    }
}

/// Go's encoding/json quoteChar: a byte as its scanner names it in errors.
fn go_quote_char(c: u8) -> String {
    match c {
        b'\'' => r"'\''".to_owned(),
        b'"' => r#"'"'"#.to_owned(),
        b'\n' => r"'\n'".to_owned(),
        b'\r' => r"'\r'".to_owned(),
        b'\t' => r"'\t'".to_owned(),
        0x07 => r"'\a'".to_owned(),
        0x08 => r"'\b'".to_owned(),
        0x0c => r"'\f'".to_owned(),
        0x0b => r"'\v'".to_owned(),
        b'\\' => r"'\\'".to_owned(),
        // strconv.Quote of a byte taken as a rune (Latin-1).
        c if c < 0x20 || c == 0x7f => format!(r"'\x{c:02x}'"),
        0x80..=0x9f => format!(r"'\u{c:04x}'"),
        c => format!("'{}'", char::from(c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(json: &str) -> String {
        match scan_json(json.as_bytes(), true) {
            Scan::Error(message) => message,
            other => panic!("{json:?} scanned as {other:?}"),
        }
    }

    /// Go's encoding/json words, as etcd's gateway answers them.
    #[test]
    fn syntax_errors_are_worded_as_go_words_them() {
        assert_eq!(error("x"), "invalid character 'x' looking for beginning of value");
        assert_eq!(error("{\"key\":"), "unexpected EOF");
        assert_eq!(error("{\"key\" 1}"), "invalid character '1' after object key");
        assert_eq!(error("{\"a\":1 \"b\"}"), "invalid character '\"' after object key:value pair");
        assert_eq!(error("{a:1}"), "invalid character 'a' looking for beginning of object key string");
        assert_eq!(error("[1 2]"), "invalid character '2' after array element");
        assert_eq!(error("nul"), "unexpected EOF");
        assert_eq!(error("nope"), "invalid character 'o' in literal null (expecting 'u')");
        assert_eq!(error("{\"a\":tru}"), "invalid character '}' in literal true (expecting 'e')");
        assert_eq!(error("{\"a\":-x}"), "invalid character 'x' in numeric literal");
        assert_eq!(error("{\"a\":1.}"), "invalid character '}' after decimal point in numeric literal");
        assert_eq!(error("{\"a\":1e}"), "invalid character '}' in exponent of numeric literal");
        assert_eq!(error("{\"a\":\"\\q\"}"), "invalid character 'q' in string escape code");
        assert_eq!(error("{\"a\":\"\n\"}"), r"invalid character '\n' in string literal");
        assert_eq!(error("'"), r"invalid character '\'' looking for beginning of value");
    }

    #[test]
    fn values_end_where_go_stops_reading() {
        assert_eq!(scan_json(b"  ", true), Scan::Empty);
        assert_eq!(scan_json(b"  ", false), Scan::More);
        assert_eq!(scan_json(b" {\"a\":[1,2.5e3,true,null]} {", true), Scan::Value(26));
        assert_eq!(scan_json(b"{\"a\":1", false), Scan::More);
        assert_eq!(scan_json(b"12", false), Scan::More);
        assert_eq!(scan_json(b"12", true), Scan::Value(2));
        // What follows a value is the next value's business.
        assert_eq!(scan_json(b"{}garbage", true), Scan::Value(2));
    }

    #[test]
    fn json_is_jsonpbs() {
        let put = pb::PutRequest {
            key: Bytes::from_static(b"foo"),
            value: Bytes::from_static(b"bar"),
            lease: 7,
            ..Default::default()
        };
        let decoded =
            request_from_json::<pb::PutRequest>(br#" {"key":"Zm9v","value":"YmFy","lease":"7","nope":1}"#).unwrap();
        assert_eq!(pb::PutRequest::decode(decoded).unwrap(), put);
        let response = pb::RangeResponse {
            header: Some(pb::ResponseHeader { cluster_id: u64::MAX, member_id: 1, revision: 5, raft_term: 2 }),
            kvs: vec![crate::pb::mvccpb::KeyValue {
                key: Bytes::from_static(b"<&>"),
                version: 1,
                ..Default::default()
            }],
            count: 1,
            more: false,
        };
        let json = response_to_json::<pb::RangeResponse>(&response.encode_to_vec()).unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"header":{"cluster_id":"18446744073709551615","member_id":"1","revision":"5","raft_term":"2"},"kvs":[{"key":"PCY+","version":"1"}],"count":"1"}"#
        );
        let nulls = request_from_json::<pb::TxnRequest>(
            br#"{"compare":null,"success":[{"request_put":{"key":"Zm9v","value":null}}]}"#,
        );
        let put = pb::PutRequest { key: Bytes::from_static(b"foo"), ..Default::default() };
        let success = vec![pb::RequestOp { request: Some(pb::request_op::Request::RequestPut(put)) }];
        assert_eq!(pb::TxnRequest::decode(nulls.unwrap()).unwrap(), pb::TxnRequest { success, ..Default::default() });
        assert!(
            matches!(request_from_json::<pb::PutRequest>(b"5"), Err(s) if s.message() == "json: cannot unmarshal number into Go value of type map[string]json.RawMessage")
        );
    }

    #[test]
    fn errors_are_grpc_gateways() {
        let status = Status::invalid_argument("a <b>");
        assert_eq!(
            String::from_utf8(stream_error_chunk(&status)).unwrap(),
            r#"{"error":{"grpc_code":3,"http_code":400,"message":"a \u003cb\u003e","http_status":"Bad Request"}}"#
        );
        assert_eq!(http_status(Code::FailedPrecondition), http::StatusCode::BAD_REQUEST);
        assert_eq!(http_status(Code::OutOfRange), http::StatusCode::BAD_REQUEST);
    }

    #[test]
    fn every_route_is_etcds_once() {
        let mut paths: Vec<&str> = ROUTES.iter().map(|(p, _, _)| *p).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), ROUTES.len());
        assert!(ROUTES.iter().all(|(p, _, _)| serves(p)));
    }
}
