//! HTTP/1.1 (and h2 without gRPC's content type) on the client port, beside
//! gRPC, as etcd serves it: `/health` and `/version` for now.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::Full;
use tonic::body::Body;

use crate::engine::Engine;

fn json(status: http::StatusCode, body: String) -> http::Response<Body> {
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::new(Full::new(Bytes::from(body))))
        .expect("a static response")
}

pub fn serve<B>(engine: &Engine, version: &str, req: &http::Request<B>) -> http::Response<Body> {
    match req.uri().path() {
        "/health" | "/livez" | "/readyz" => health(engine),
        "/version" => json(
            http::StatusCode::OK,
            format!(r#"{{"etcdserver":"{version}","etcdcluster":"{}"}}"#, cluster_version(version)),
        ),
        _ => http::Response::builder()
            .status(http::StatusCode::NOT_FOUND)
            .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Body::new(Full::new(Bytes::from_static(b"404 page not found\n"))))
            .expect("a static response"),
    }
}

/// etcd's cluster version is major.minor.0.
fn cluster_version(version: &str) -> String {
    let mut parts = version.split('.');
    format!("{}.{}.0", parts.next().unwrap_or("3"), parts.next().unwrap_or("5"))
}

/// etcd's /health: unhealthy without a leader or with an alarm raised.
fn health(engine: &Engine) -> http::Response<Body> {
    let shared = engine.shared();
    let reason = if shared.raft.leader.load(Ordering::Acquire) == 0 {
        Some("RAFT NO LEADER".to_owned())
    } else {
        shared.store.alarms().first().map(|&(alarm, _)| {
            let name = crate::pb::etcdserverpb::AlarmType::try_from(alarm).map_or("UNKNOWN", |a| a.as_str_name());
            format!("ALARM {name}")
        })
    };
    match reason {
        None => json(http::StatusCode::OK, r#"{"health":"true","reason":""}"#.to_owned()),
        Some(reason) => json(
            http::StatusCode::SERVICE_UNAVAILABLE,
            format!(r#"{{"health":"false","reason":"{reason}"}}"#),
        ),
    }
}
