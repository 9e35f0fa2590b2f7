//! HTTP/1.1 (and h2 without gRPC's content type) on the client port, beside
//! gRPC, as etcd 3.5 serves it: `/health`, `/livez`, `/readyz` (and their
//! per-check sub paths), `/version` and `/metrics`. A `--listen-metrics-urls`
//! listener serves only `/metrics` and the health checks.
//!
//! The health checks are etcd 3.5's (etcdhttp/health.go):
//! - `/health`: an active alarm not named in `?exclude=` → 503 "ALARM
//!   NOSPACE" (or CORRUPT); no leader (unless `?serializable=true`) →
//!   "RAFT NO LEADER"; then a one-key Range, linearizable unless
//!   `?serializable=true`, within etcd's request timeout → "RANGE ERROR:…".
//!   The body is `{"health":"true","reason":""}`, 503 answers as Go's
//!   http.Error writes them (text/plain, a newline after the JSON).
//! - `/livez`: a serializable read. `/readyz`: no CORRUPT alarm, a
//!   serializable and a linearizable read, not a learner. `?verbose` lists
//!   each check (`[+]name ok`); a failure always does, with 503;
//!   `?exclude=name` leaves a check out; `/readyz/<name>` runs one.
//!
//! Every answer of `/health` counts in `etcd_server_health_success` or
//! `_failures`, every check of `/livez` and `/readyz` in
//! `etcd_server_healthcheck{type,name}` and `_healthchecks_total`, and
//! failures are logged in etcd's words.
//!
//! On the client port (not on a metrics URL) HTTP requests pass etcd's
//! accessController first ([`AccessRules`]): on a plain-text listener a Host
//! not in `--host-whitelist` gets 421 and etcd's DNS-rebinding text; an
//! origin allowed by `--cors` gets etcd's CORS headers; OPTIONS is answered
//! 200 with no body. gRPC never passes it, as in etcd (its h2 connections go
//! straight to the gRPC server).

use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use prost::Message;
use tonic::body::Body;

use crate::engine::{Engine, Method};
use crate::pb::etcdserverpb::{AlarmType, RangeRequest};
use crate::server::calls::Calls;

/// A response with Go's net/http headers for `content_type`.
fn respond(status: http::StatusCode, content_type: &str, body: String) -> http::Response<Body> {
    let mut b = http::Response::builder().status(status).header(http::header::CONTENT_TYPE, content_type);
    if content_type.starts_with("text/plain") {
        b = b.header("X-Content-Type-Options", "nosniff");
    }
    b.body(Body::new(Full::new(Bytes::from(body)))).expect("a static response")
}

fn not_found() -> http::Response<Body> {
    respond(http::StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "404 page not found\n".to_owned())
}

/// Go's http.Error: text/plain, the message and a newline.
fn http_error(status: http::StatusCode, message: &str) -> http::Response<Body> {
    respond(status, "text/plain; charset=utf-8", format!("{message}\n"))
}

fn method_not_allowed() -> http::Response<Body> {
    let mut r = http_error(http::StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    r.headers_mut().insert(http::header::ALLOW, http::HeaderValue::from_static("GET"));
    r
}

/// etcd's `--cors` and `--host-whitelist` lists (its AccessController).
/// An empty list or one holding `*` allows everything, as in etcd.
#[derive(Clone, Debug, Default)]
pub struct AccessRules {
    pub cors: Vec<String>,
    pub host_whitelist: Vec<String>,
}

fn allows(list: &[String], value: &str) -> bool {
    list.is_empty() || list.iter().any(|x| x == "*" || x == value)
}

impl AccessRules {
    /// The origin etcd writes in Access-Control-Allow-Origin for a request
    /// from `origin`, if any: `*` when every origin is allowed, else the
    /// request's own origin when it is listed.
    pub fn cors_origin(&self, origin: Option<&http::HeaderValue>) -> Option<http::HeaderValue> {
        if allows(&self.cors, "*") {
            return Some(http::HeaderValue::from_static("*"));
        }
        let origin = origin.map_or(Some(""), |v| v.to_str().ok())?;
        (allows(&self.cors, origin)).then(|| http::HeaderValue::from_str(origin).ok()).flatten()
    }

    /// etcd's host check on a plain-text connection (a TLS one skips it):
    /// the request's host without its port (Go's net.SplitHostPort; the
    /// whole Host when that fails) must be whitelisted, else 421.
    pub fn refuse_host(&self, host: &str) -> Option<http::Response<Body>> {
        let host = split_host(host);
        if allows(&self.host_whitelist, host) {
            return None;
        }
        crate::log_warn!("rejecting HTTP request to prevent DNS rebinding attacks"; "host" => host.to_owned());
        Some(http_error(
            http::StatusCode::MISDIRECTED_REQUEST,
            &format!(
                "\netcd received your request, but the Host header was unrecognized.\n\nTo fix this, choose one \
                 of the following options:\n- Enable TLS, then any HTTPS request will be allowed.\n- Add the \
                 hostname you want to use to the whitelist in settings.\n  - e.g. etcd --host-whitelist {}\n\nThis \
                 requirement has been added to help prevent \"DNS Rebinding\" attacks (CVE-2018-5702).\n",
                go_quote(host)
            ),
        ))
    }
}

/// Go's net.SplitHostPort host part, or `hostport` itself when it has no
/// valid port part (etcd's httputil.GetHostname).
fn split_host(hostport: &str) -> &str {
    if let Some(rest) = hostport.strip_prefix('[') {
        if let Some((host, port)) = rest.split_once(']') {
            if port.starts_with(':') && !port[1..].contains(':') {
                return host;
            }
        }
        return hostport;
    }
    match hostport.rsplit_once(':') {
        Some((host, _)) if !host.contains(':') => host,
        _ => hostport,
    }
}

/// fmt's %q for a host name: quoted, `"` and `\` escaped, bytes outside
/// printable ASCII as \xNN (host names are ASCII on the wire).
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for b in s.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push('"');
    out
}

/// etcd's addCORSHeader for `origin` (None: no CORS headers): the three
/// headers first, as Go writes its header names sorted.
pub fn with_cors(mut response: http::Response<Body>, origin: Option<http::HeaderValue>) -> http::Response<Body> {
    let Some(origin) = origin else { return response };
    let mut headers = http::HeaderMap::new();
    headers
        .insert("Access-Control-Allow-Headers", http::HeaderValue::from_static("accept, content-type, authorization"));
    headers.insert("Access-Control-Allow-Methods", http::HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"));
    headers.insert("Access-Control-Allow-Origin", origin);
    let rest = std::mem::take(response.headers_mut());
    let mut name = None;
    for (k, v) in rest {
        if k.is_some() {
            name = k;
        }
        if let Some(n) = &name {
            headers.append(n.clone(), v);
        }
    }
    *response.headers_mut() = headers;
    response
}

/// etcd answers OPTIONS on the client port itself, before any endpoint: 200, no body.
pub fn options() -> http::Response<Body> {
    http::Response::builder().status(http::StatusCode::OK).body(Body::empty()).expect("a static response")
}

/// The client port's HTTP endpoints.
pub async fn serve<B>(calls: &Calls, version: &str, req: &http::Request<B>) -> http::Response<Body> {
    match req.uri().path() {
        "/version" => respond(
            http::StatusCode::OK,
            "application/json",
            format!(r#"{{"etcdserver":"{version}","etcdcluster":"{}"}}"#, cluster_version(version)),
        ),
        _ => serve_metrics_and_health(calls, req).await,
    }
}

/// What a `--listen-metrics-urls` listener serves (etcd's
/// HandleMetricsHealthForV3); also the client port's share of it.
pub async fn serve_metrics_and_health<B>(calls: &Calls, req: &http::Request<B>) -> http::Response<Body> {
    let path = req.uri().path();
    if !matches!(path, "/metrics" | "/health") && !path.starts_with("/livez") && !path.starts_with("/readyz") {
        return not_found();
    }
    if req.method() != http::Method::GET && !(path == "/metrics" && req.method() == http::Method::HEAD) {
        return method_not_allowed();
    }
    let query = Query::parse(req.uri().query().unwrap_or(""));
    match path {
        "/metrics" => metrics(&calls.engine),
        "/health" => health(calls, &query).await,
        _ => match checks_at(path) {
            Some((root, only)) => run_checks(calls, root, only, &query).await,
            None => not_found(),
        },
    }
}

fn metrics(engine: &Engine) -> http::Response<Body> {
    let text = crate::metrics::render(engine, &super::method_names());
    respond(http::StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", text)
}

/// etcd's cluster version is major.minor.0.
fn cluster_version(version: &str) -> String {
    let mut parts = version.split('.');
    format!("{}.{}.0", parts.next().unwrap_or("3"), parts.next().unwrap_or("5"))
}

/// The query parameters the health checks read.
struct Query {
    exclude: Vec<String>,
    serializable: bool,
    verbose: bool,
}

impl Query {
    fn parse(query: &str) -> Query {
        let mut q = Query { exclude: Vec::new(), serializable: false, verbose: false };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v);
            match k {
                "exclude" if !v.is_empty() => q.exclude.push(v),
                // Go's Query().Get takes the first value.
                "serializable" if !q.serializable => q.serializable = v == "true",
                "verbose" => q.verbose = true,
                _ => {}
            }
        }
        q
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// etcd's ReqTimeout: 5 s plus two election timeouts.
fn request_timeout(engine: &Engine) -> Duration {
    let config = &engine.shared().config;
    let election = config.tick * u32::try_from(config.election_ticks).unwrap_or(u32::MAX);
    Duration::from_secs(5) + 2 * election
}

/// etcd's health read: one key, keys only, over the whole key space.
async fn read(calls: &Calls, serializable: bool) -> Result<(), String> {
    let request = RangeRequest {
        key: Bytes::from_static(b"\0"),
        range_end: Bytes::from_static(b"\0"),
        limit: 1,
        keys_only: true,
        serializable,
        ..Default::default()
    };
    // The engine times a read out itself, in etcd's words ("request timed
    // out"); this bound is only in case it never answers.
    let bound = request_timeout(&calls.engine) + Duration::from_secs(2);
    let answer = tokio::time::timeout(bound, calls.call(Method::KvRange, request.encode_to_vec().into()));
    match answer.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        // etcd's context deadline, in its words.
        Err(_) => Err("context deadline exceeded".to_owned()),
    }
}

/// The active alarms, as etcd names them.
fn alarm_names(engine: &Engine) -> Vec<&'static str> {
    engine
        .shared()
        .store
        .alarms()
        .iter()
        .map(|&(alarm, _)| AlarmType::try_from(alarm).map_or("UNKNOWN", |a| a.as_str_name()))
        .collect()
}

fn has_leader(engine: &Engine) -> bool {
    engine.shared().raft.leader.load(std::sync::atomic::Ordering::Acquire) != 0
}

async fn health(calls: &Calls, query: &Query) -> http::Response<Body> {
    let reason = health_reason(calls, query).await;
    match reason {
        None => {
            crate::metrics::HEALTH_SUCCESS.inc();
            crate::log_at!(crate::logging::Level::Debug, "/health OK"; "status-code" => 200_u32);
            respond(http::StatusCode::OK, "text/plain; charset=utf-8", r#"{"health":"true","reason":""}"#.to_owned())
        }
        Some(reason) => {
            crate::metrics::HEALTH_FAILURES.inc();
            let output = format!(r#"{{"health":"false","reason":"{}"}}"#, json_escape(&reason));
            crate::log_warn!("/health error"; "output" => output, "status-code" => 503_u32);
            http_error(http::StatusCode::SERVICE_UNAVAILABLE, &output)
        }
    }
}

/// Why `/health` is false, in etcd's order of checks; None when healthy.
async fn health_reason(calls: &Calls, query: &Query) -> Option<String> {
    let alarms = calls.engine.shared().store.alarms();
    let named = alarms
        .iter()
        .map(|&(alarm, member)| (AlarmType::try_from(alarm).map_or("UNKNOWN", |a| a.as_str_name()), member));
    if let Some((alarm, member)) = named.into_iter().find(|(a, _)| !query.exclude.iter().any(|e| e == a)) {
        crate::log_warn!("serving /health false due to an alarm"; "alarm" => format!("memberID:{member} alarm:{alarm} "));
        return Some(match alarm {
            "NOSPACE" | "CORRUPT" => format!("ALARM {alarm}"),
            _ => "ALARM UNKNOWN".to_owned(),
        });
    }
    if !query.serializable && !has_leader(&calls.engine) {
        crate::log_warn!("serving /health false; no leader");
        return Some("RAFT NO LEADER".to_owned());
    }
    match read(calls, query.serializable).await {
        Ok(()) => None,
        Err(e) => {
            crate::log_warn!("serving /health false; Range fails"; "error" => e);
            Some(format!("RANGE ERROR:{e}"))
        }
    }
}

/// The checks of `/livez` and `/readyz`, in the order ketch lists them
/// (etcd's order is a Go map's, so it varies from call to call).
const LIVEZ: &[&str] = &["serializable_read"];
const READYZ: &[&str] = &["data_corruption", "serializable_read", "linearizable_read", "non_learner"];

/// (the root's checks, the one check of a sub path) for `/livez`,
/// `/readyz` and `/readyz/<check>`.
fn checks_at(path: &str) -> Option<(&'static [&'static str], Option<&'static str>)> {
    let (root, rest) = if let Some(rest) = path.strip_prefix("/livez") {
        (LIVEZ, rest)
    } else {
        (READYZ, path.strip_prefix("/readyz")?)
    };
    if rest.is_empty() {
        Some((root, None))
    } else {
        let name = rest.strip_prefix('/')?;
        root.iter().find(|c| **c == name).map(|c| (root, Some(*c)))
    }
}

async fn check(calls: &Calls, name: &str) -> Result<(), String> {
    match name {
        "data_corruption" => {
            if alarm_names(&calls.engine).contains(&"CORRUPT") {
                Err("alarm activated: CORRUPT".to_owned())
            } else {
                Ok(())
            }
        }
        "serializable_read" => read(calls, true).await,
        "linearizable_read" => read(calls, false).await,
        "non_learner" => {
            if calls.engine.shared().raft.is_learner.load(std::sync::atomic::Ordering::Acquire) {
                Err("not supported for learner".to_owned())
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

async fn run_checks(calls: &Calls, root: &[&str], only: Option<&str>, query: &Query) -> http::Response<Body> {
    let kind = if root == LIVEZ { "livez" } else { "readyz" };
    let names: Vec<&str> = match only {
        Some(name) => vec![name],
        // Excluding a check that does not exist is not an error (etcd logs it).
        None => root.iter().copied().filter(|c| !query.exclude.iter().any(|e| e == c)).collect(),
    };
    let mut report = String::new();
    let mut failed = false;
    for name in names {
        let result = check(calls, name).await;
        crate::metrics::health_check_ran(kind, name, result.is_ok());
        match result {
            Ok(()) => {
                let _ = writeln!(report, "[+]{name} ok");
            }
            Err(e) => {
                failed = true;
                let _ = writeln!(report, "[-]{name} failed: {e}");
            }
        }
    }
    if failed {
        let path = match only {
            Some(name) => format!("/{kind}/{name}"),
            None => format!("/{kind}"),
        };
        crate::log_error!("Health check error"; "path" => path, "reason" => report, "status-code" => 503_u32);
        // http.Error adds a newline after the report's own.
        return http_error(http::StatusCode::SERVICE_UNAVAILABLE, &report);
    }
    let body = if query.verbose { format!("{report}ok\n") } else { "ok\n".to_owned() };
    respond(http::StatusCode::OK, "text/plain; charset=utf-8", body)
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_read_as_go_reads_them() {
        let q = Query::parse("exclude=NOSPACE&exclude=&serializable=true&verbose");
        assert_eq!(q.exclude, ["NOSPACE"]);
        assert!(q.serializable && q.verbose);
        let q = Query::parse("serializable=false&exclude=a%5Fb");
        assert!(!q.serializable && !q.verbose);
        assert_eq!(q.exclude, ["a_b"]);
    }

    #[test]
    fn check_paths() {
        assert_eq!(checks_at("/readyz"), Some((READYZ, None)));
        assert_eq!(checks_at("/readyz/non_learner"), Some((READYZ, Some("non_learner"))));
        assert_eq!(checks_at("/livez/non_learner"), None);
        assert_eq!(checks_at("/readyzx"), None);
    }

    #[test]
    fn reasons_are_escaped_as_go_json_escapes_them() {
        assert_eq!(json_escape(r#"RANGE ERROR:a "b" <c>"#), r#"RANGE ERROR:a \"b\" \u003cc\u003e"#);
    }
}
