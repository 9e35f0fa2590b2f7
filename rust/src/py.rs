//! `ketch._core`: the only module that knows Python. It wraps [`Engine`],
//! converts its errors in one place, and never holds the GIL while waiting.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::completion::CompletionQueue;
use crate::engine::{Engine as RustEngine, EngineConfig, Method, StartError};
use crate::server::{ClientServer, ForwardTls, PeerDialTls, PeerTransport, ServerConfig, TlsFiles, TransportConfig};

/// One member's engine; see `_core.pyi` for the contract.
#[pyclass(module = "ketch._core", name = "Engine", frozen)]
struct PyEngine {
    engine: Arc<RustEngine>,
}

/// (cert file, key file, trusted CA file, client cert auth, CRL file, TLS min version, TLS max version,
/// cipher suites); empty for what is not given.
type TlsArgs = (String, String, String, bool, String, String, String, Vec<String>);
/// (ID, name, peer URLs, client URLs, is learner): one member for Python.
type MemberRow = (u64, String, Vec<String>, Vec<String>, bool);
/// (CA PEM or None, certificate PEM, key PEM, skip verification (--peer-auto-tls)): how this member dials
/// its peers' https URLs, the leader's included.
type ForwardTlsArgs = (Option<Vec<u8>>, Vec<u8>, Vec<u8>, bool);

/// Listening sockets Python detached from their socket objects: their fds
/// are owned here from now on.
fn take_listeners(listeners: Vec<(i32, bool)>) -> Vec<(std::net::TcpListener, bool)> {
    listeners
        .into_iter()
        .map(|(fd, is_tls)| {
            // SAFETY: Python detached this fd from its socket object and
            // passes ownership here; nothing else closes it.
            (unsafe { <std::net::TcpListener as std::os::fd::FromRawFd>::from_raw_fd(fd) }, is_tls)
        })
        .collect()
}

fn tls_files(t: TlsArgs) -> TlsFiles {
    TlsFiles {
        cert_file: t.0,
        key_file: t.1,
        trusted_ca_file: t.2,
        client_cert_auth: t.3,
        crl_file: t.4,
        min_version: t.5,
        max_version: t.6,
        cipher_suites: t.7,
    }
}

/// The running peer transport of one engine.
#[pyclass(module = "ketch._core", name = "PeerTransport", frozen)]
struct PyPeerTransport {
    transport: Mutex<Option<PeerTransport>>,
}

#[pymethods]
impl PyPeerTransport {
    /// Stops serving and sending peers at once. Idempotent.
    fn stop(&self, py: Python<'_>) {
        let transport = self.transport.lock().take();
        if let Some(mut transport) = transport {
            py.detach(move || transport.stop());
        }
    }
}

/// The running client front door of one engine.
#[pyclass(module = "ketch._core", name = "ClientServer", frozen)]
struct PyClientServer {
    server: Mutex<Option<ClientServer>>,
}

#[pymethods]
impl PyClientServer {
    /// Stops listening, ends watch streams, lets other calls finish for up
    /// to `grace` seconds. Idempotent.
    fn stop(&self, py: Python<'_>, grace: f64) {
        let server = self.server.lock().take();
        if let Some(mut server) = server {
            let grace = std::time::Duration::try_from_secs_f64(grace).unwrap_or_default();
            py.detach(move || server.stop(grace));
        }
    }
}

#[pymethods]
impl PyEngine {
    #[new]
    #[pyo3(signature = (data_dir, *, name, member_id, cluster_id, peer_urls, client_urls,
                        max_request_bytes, quota_backend_bytes, max_txn_ops, version,
                        initial_members=None, tick_ms=100, election_ticks=10, snapshot_count=100_000,
                        wal_dir=None, pre_vote=true, initial_election_tick_advance=false,
                        strict_reconfig_check=true, max_learners=1, snapshot_catchup_entries=5000,
                        unsafe_no_fsync=false, force_new_cluster=false, max_wals=5,
                        auto_compaction_mode="periodic", auto_compaction_retention=0.0,
                        compaction_batch_limit=1000, compaction_sleep_interval=0.01,
                        auth_token=String::from("simple"), bcrypt_cost=10, auth_token_ttl=300))]
    #[allow(clippy::too_many_arguments)] // one argument per Python keyword, as its signature lists them
    fn new(
        py: Python<'_>,
        data_dir: std::path::PathBuf,
        name: String,
        member_id: u64,
        cluster_id: u64,
        peer_urls: Vec<String>,
        client_urls: Vec<String>,
        max_request_bytes: usize,
        quota_backend_bytes: u64,
        max_txn_ops: usize,
        version: String,
        initial_members: Option<Vec<(u64, String, Vec<String>)>>,
        tick_ms: u64,
        election_ticks: usize,
        snapshot_count: u64,
        wal_dir: Option<std::path::PathBuf>,
        pre_vote: bool,
        initial_election_tick_advance: bool,
        strict_reconfig_check: bool,
        max_learners: usize,
        snapshot_catchup_entries: u64,
        unsafe_no_fsync: bool,
        force_new_cluster: bool,
        max_wals: usize,
        auto_compaction_mode: &str,
        auto_compaction_retention: f64,
        compaction_batch_limit: usize,
        compaction_sleep_interval: f64,
        auth_token: String,
        bcrypt_cost: u32,
        auth_token_ttl: u64,
    ) -> PyResult<Self> {
        if member_id == 0 {
            return Err(PyValueError::new_err("member_id must not be 0"));
        }
        if tick_ms == 0 || election_ticks < 2 {
            return Err(PyValueError::new_err("tick_ms must be positive and election_ticks at least 2"));
        }
        let mut config = EngineConfig::new(data_dir, member_id, cluster_id);
        // None: a cluster of this member alone, as before clustering.
        config.initial_members = initial_members.unwrap_or_else(|| vec![(member_id, name.clone(), peer_urls.clone())]);
        config.tick = std::time::Duration::from_millis(tick_ms);
        config.election_ticks = election_ticks;
        config.snapshot_count = snapshot_count;
        config.name = name;
        config.peer_urls = peer_urls;
        config.client_urls = client_urls;
        config.max_request_bytes = max_request_bytes;
        config.quota_backend_bytes = quota_backend_bytes;
        config.max_txn_ops = max_txn_ops;
        config.version = version;
        config.wal_dir = wal_dir;
        config.pre_vote = pre_vote;
        config.initial_election_tick_advance = initial_election_tick_advance;
        config.strict_reconfig_check = strict_reconfig_check;
        config.max_learners = max_learners;
        config.snapshot_catchup_entries = snapshot_catchup_entries;
        config.unsafe_no_fsync = unsafe_no_fsync;
        config.force_new_cluster = force_new_cluster;
        config.max_wals = max_wals;
        config.auto_compaction = auto_compaction(auto_compaction_mode, auto_compaction_retention)?;
        config.compaction_pacing = crate::compactor::CompactionPacing {
            batch_limit: compaction_batch_limit.max(1),
            sleep_interval: std::time::Duration::try_from_secs_f64(compaction_sleep_interval.max(0.0))
                .map_err(|e| PyValueError::new_err(format!("compaction_sleep_interval: {e}")))?,
        };
        config.auth_token = auth_token;
        config.bcrypt_cost = bcrypt_cost;
        config.auth_token_ttl = std::time::Duration::from_secs(auth_token_ttl);
        // Opening replays the WAL: disk work, so the GIL is released.
        let engine = py.detach(|| RustEngine::start(config)).map_err(start_error)?;
        Ok(PyEngine { engine: Arc::new(engine) })
    }

    #[getter]
    fn member_id(&self) -> u64 {
        self.engine.identity().member_id
    }

    #[getter]
    fn cluster_id(&self) -> u64 {
        self.engine.identity().cluster_id
    }

    fn completion_fd(&self) -> i32 {
        self.engine.completions().fd()
    }

    /// Hot path: one copy of the request out of the Python bytes object,
    /// then a channel send. Short enough not to be worth releasing the GIL.
    fn submit(&self, method: u32, request: &[u8], token: u64) {
        self.engine.submit(method, Bytes::copy_from_slice(request), token);
    }

    fn drain<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        drain_queue(py, self.engine.completions())
    }

    /// [(id, name, peer URLs, client URLs, is_learner)], sorted by ID.
    fn members(&self) -> Vec<MemberRow> {
        self.engine.members().into_iter().map(|m| (m.id, m.name, m.peer_ur_ls, m.client_ur_ls, m.is_learner)).collect()
    }

    /// Starts the client front door (`crate::server`) on listening sockets
    /// Python has bound: `listeners` is [(fd, is_https)]; the server owns the
    /// fds from here on. `tls`: the https listeners' files (see `_core.pyi`).
    /// `metrics_listeners`: --listen-metrics-urls sockets, likewise;
    /// `metrics`: etcd's --metrics ("basic" or "extensive").
    #[pyo3(signature = (listeners, *, max_request_bytes, max_concurrent_streams, keepalive_interval,
                        keepalive_timeout, version, keepalive_min_time=5.0, tls=None, forward_tls=None, threads=0, grpc_gateway=true,
                        metrics_listeners=Vec::new(), metrics="basic", cors=Vec::new(), host_whitelist=Vec::new()))]
    #[allow(clippy::too_many_arguments)] // one argument per Python keyword, as its signature lists them
    fn serve_clients(
        &self,
        py: Python<'_>,
        listeners: Vec<(i32, bool)>,
        max_request_bytes: usize,
        max_concurrent_streams: u32,
        keepalive_interval: f64,
        keepalive_timeout: f64,
        version: String,
        keepalive_min_time: f64,
        tls: Option<TlsArgs>,
        forward_tls: Option<ForwardTlsArgs>,
        threads: usize,
        grpc_gateway: bool,
        metrics_listeners: Vec<(i32, bool)>,
        metrics: &str,
        cors: Vec<String>,
        host_whitelist: Vec<String>,
    ) -> PyResult<PyClientServer> {
        crate::metrics::set_extensive(metrics == "extensive");
        let seconds = |s: f64, what: &str| {
            std::time::Duration::try_from_secs_f64(s).map_err(|e| PyValueError::new_err(format!("{what} {s}: {e}")))
        };
        let config = ServerConfig {
            listeners: take_listeners(listeners),
            tls: tls.map(tls_files),
            forward_tls: forward_tls.map(|(ca_pem, cert_pem, key_pem, skip_verify)| ForwardTls {
                ca_pem,
                cert_pem,
                key_pem,
                skip_verify,
            }),
            max_request_bytes,
            max_concurrent_streams,
            keepalive_interval: seconds(keepalive_interval, "keepalive interval")?,
            keepalive_timeout: seconds(keepalive_timeout, "keepalive timeout")?,
            keepalive_min_time: seconds(keepalive_min_time, "keepalive min time")?,
            version,
            threads,
            grpc_gateway,
            metrics_listeners: take_listeners(metrics_listeners),
            access: crate::server::AccessRules { cors, host_whitelist },
        };
        let engine = self.engine.clone();
        let server = py.detach(|| ClientServer::start(engine, config)).map_err(PyValueError::new_err)?;
        Ok(PyClientServer { server: Mutex::new(Some(server)) })
    }

    /// Starts the peer transport (`crate::server::transport`) on listening
    /// peer sockets Python has bound ([(fd, is_https)], owned by the
    /// transport from here on); `tls`: the https listeners' files as for
    /// serve_clients; `dial_tls`: (CA PEM, cert PEM, key PEM, skip
    /// verification) for https peers; `known_peers`: {member ID: peer URLs} of a joining member.
    #[pyo3(signature = (listeners, *, tls=None, dial_tls=None, known_peers=None, corrupt_check_time=0.0, compact_hash_check_time=0.0))]
    fn serve_peers(
        &self,
        py: Python<'_>,
        listeners: Vec<(i32, bool)>,
        tls: Option<TlsArgs>,
        dial_tls: Option<ForwardTlsArgs>,
        known_peers: Option<std::collections::HashMap<u64, Vec<String>>>,
        corrupt_check_time: f64,
        compact_hash_check_time: f64,
    ) -> PyResult<PyPeerTransport> {
        let compact_hash_check_time = std::time::Duration::try_from_secs_f64(compact_hash_check_time)
            .map_err(|e| PyValueError::new_err(format!("compact hash check time {compact_hash_check_time}: {e}")))?;
        let corrupt_check_time = std::time::Duration::try_from_secs_f64(corrupt_check_time)
            .map_err(|e| PyValueError::new_err(format!("corrupt check time {corrupt_check_time}: {e}")))?;
        let config = TransportConfig {
            listeners: take_listeners(listeners),
            server_tls: tls.map(tls_files),
            dial_tls: dial_tls
                .map(|(ca_pem, cert_pem, key_pem, skip_verify)| PeerDialTls { ca_pem, cert_pem, key_pem, skip_verify })
                .unwrap_or_default(),
            known_peers: known_peers.unwrap_or_default(),
            corrupt_check_time: Some(corrupt_check_time),
            compact_hash_check_time: Some(compact_hash_check_time),
        };
        let engine = self.engine.clone();
        let transport = py.detach(|| PeerTransport::start(engine, config)).map_err(PyValueError::new_err)?;
        Ok(PyPeerTransport { transport: Mutex::new(Some(transport)) })
    }

    /// etcd's initial corruption check: compares this member's HashKV with
    /// every peer's at its revision; ValueError with the line to stop with.
    #[pyo3(signature = (*, dial_tls=None))]
    fn initial_corrupt_check(&self, py: Python<'_>, dial_tls: Option<ForwardTlsArgs>) -> PyResult<()> {
        let tls = dial_tls
            .map(|(ca_pem, cert_pem, key_pem, skip_verify)| PeerDialTls { ca_pem, cert_pem, key_pem, skip_verify })
            .unwrap_or_default();
        let engine = self.engine.clone();
        py.detach(|| crate::server::initial_corrupt_check(&engine, &tls)).map_err(PyValueError::new_err)
    }

    fn set_watch_progress_interval(&self, seconds: f64) -> PyResult<()> {
        let interval = std::time::Duration::try_from_secs_f64(seconds)
            .map_err(|e| PyValueError::new_err(format!("watch progress interval {seconds}: {e}")))?;
        self.engine.set_watch_progress_interval(interval);
        Ok(())
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.engine.stats() {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    fn close(&self, py: Python<'_>) {
        py.detach(|| self.engine.close());
    }
}

/// Every finished request as (token, None, response) or (token, error name, message).
fn drain_queue<'py>(py: Python<'py>, queue: &CompletionQueue) -> PyResult<Bound<'py, PyList>> {
    let done = queue.take();
    let out = PyList::empty(py);
    for c in done {
        let item = match c.result {
            Ok(bytes) => PyTuple::new(
                py,
                [c.token.into_pyobject(py)?.into_any(), py.None().into_bound(py), PyBytes::new(py, &bytes).into_any()],
            )?,
            Err(e) => PyTuple::new(
                py,
                [
                    c.token.into_pyobject(py)?.into_any(),
                    e.name().into_pyobject(py)?.into_any(),
                    PyBytes::new(py, e.to_string().as_bytes()).into_any(),
                ],
            )?,
        };
        out.append(item)?;
    }
    Ok(out)
}

/// etcd's --auto-tls: (certificate PEM, key PEM), self-signed for `hosts`.
#[pyfunction]
fn self_signed_cert(hosts: Vec<String>) -> PyResult<(String, String)> {
    crate::server::self_signed(&hosts).map_err(PyValueError::new_err)
}

/// `snapshot status`: (hash, revision, total keys, total size) of an
/// etcd-format snapshot file.
#[pyfunction]
fn snapshot_status(py: Python<'_>, path: std::path::PathBuf) -> PyResult<(u32, i64, u64, u64)> {
    let st = py.detach(|| crate::bbolt::snapshot_status(&path)).map_err(|e| PyValueError::new_err(e.0))?;
    Ok((st.hash, st.revision, st.total_keys, st.total_size))
}

/// `snapshot restore`: a new data dir from an etcd-format snapshot, as
/// member `member_id` of the cluster `members` ((ID, name, peer URLs)).
/// Returns (records, leases, revision) restored.
#[pyfunction]
#[pyo3(signature = (path, data_dir, wal_dir, member_id, cluster_id, members, skip_hash_check))]
#[allow(clippy::too_many_arguments)] // one argument per Python keyword, as its signature lists them
fn snapshot_restore(
    py: Python<'_>,
    path: std::path::PathBuf,
    data_dir: std::path::PathBuf,
    wal_dir: Option<std::path::PathBuf>,
    member_id: u64,
    cluster_id: u64,
    members: Vec<(u64, String, Vec<String>)>,
    skip_hash_check: bool,
) -> PyResult<(u64, u64, i64)> {
    let target = crate::bbolt::RestoreTarget { data_dir, wal_dir, member_id, cluster_id, members };
    let done =
        py.detach(|| crate::bbolt::restore(&path, skip_hash_check, &target)).map_err(|e| PyValueError::new_err(e.0))?;
    Ok((done.records, done.leases, done.revision))
}

/// For corruption tests: rewrites `key`'s newest value in a stopped
/// member's backend file, out of band; returns that record's revision.
#[pyfunction]
fn tamper_backend(py: Python<'_>, path: std::path::PathBuf, key: Vec<u8>, value: Vec<u8>) -> PyResult<i64> {
    py.detach(|| crate::mvcc::tamper_value(&path, &key, &value)).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// etcd's --log-outputs and --log-level for the process's one log writer;
/// `rotation` (maxsize MB, maxage days, maxbackups, localtime) with
/// --enable-log-rotation, for the one file output.
#[pyfunction]
#[pyo3(signature = (outputs, level, rotation=None))]
fn configure_logging(outputs: Vec<String>, level: &str, rotation: Option<(u64, u64, u64, bool)>) -> PyResult<()> {
    let level = crate::logging::Level::parse(level)
        .ok_or_else(|| PyValueError::new_err(format!("unknown log level {level:?}")))?;
    let rotation = rotation.map(|(max_size_mb, max_age_days, max_backups, local_time)| crate::logging::Rotation {
        max_size_mb,
        max_age_days,
        max_backups,
        local_time,
    });
    crate::logging::configure(&outputs, level, rotation).map_err(PyOSError::new_err)
}

/// One of Python's log records, written by the same writer as Rust's:
/// `fields` are (name, value as JSON).
#[pyfunction]
fn log(level: &str, caller: &str, msg: &str, fields: Vec<(String, String)>) -> PyResult<()> {
    let level = crate::logging::Level::parse(level)
        .ok_or_else(|| PyValueError::new_err(format!("unknown log level {level:?}")))?;
    let fields: Vec<(&str, String)> = fields.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    crate::logging::write(level, caller, msg, &fields);
    Ok(())
}

fn start_error(e: StartError) -> PyErr {
    match e {
        StartError::Io { .. } | StartError::Wal(crate::wal::WalError::Io { .. }) => PyOSError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

#[pymodule]
#[pyo3(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyEngine>()?;
    m.add_class::<PyClientServer>()?;
    m.add_class::<PyPeerTransport>()?;
    m.add_function(wrap_pyfunction!(self_signed_cert, m)?)?;
    m.add_function(wrap_pyfunction!(snapshot_status, m)?)?;
    m.add_function(wrap_pyfunction!(snapshot_restore, m)?)?;
    m.add_function(wrap_pyfunction!(configure_logging, m)?)?;
    m.add_function(wrap_pyfunction!(log, m)?)?;
    m.add_function(wrap_pyfunction!(tamper_backend, m)?)?;
    for method in Method::ALL {
        m.add(method.const_name(), method as u32)?;
    }
    // What this build is: `ketch --version` prints these (rust/build.rs sets KETCH_GIT_SHA).
    m.add("VERSION", env!("CARGO_PKG_VERSION"))?;
    m.add("ETCD_VERSION", crate::engine::ETCD_VERSION)?;
    m.add("GIT_SHA", env!("KETCH_GIT_SHA"))?;
    Ok(())
}

/// etcd's compactor choice: nothing for a zero retention, else by mode.
fn auto_compaction(mode: &str, retention: f64) -> PyResult<crate::compactor::AutoCompaction> {
    use crate::compactor::AutoCompaction;
    if retention == 0.0 {
        return Ok(AutoCompaction::Off);
    }
    match mode {
        "periodic" | "" => std::time::Duration::try_from_secs_f64(retention)
            .map(AutoCompaction::Periodic)
            .map_err(|e| PyValueError::new_err(format!("auto_compaction_retention: {e}"))),
        "revision" => Ok(AutoCompaction::Revision(retention as i64)),
        other => Err(PyValueError::new_err(format!("unknown auto-compaction-mode {other:?}"))),
    }
}
