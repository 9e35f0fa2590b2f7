//! The engine over failing storage: NOSPACE as etcd applies it, and what a
//! member answers when a write or fsync of its WAL or backend fails.
//!
//! The WAL runs over [`MemFs`] (which can fail its nth append or fsync with
//! a chosen errno and drop what was never synced), the backend over redb's
//! file backend wrapped in [`FaultyFile`] (which can fail its nth write,
//! resize or fsync). Engines here run inside the test process, so
//! `exit_on_fatal` is off: a failed member stays down, refusing everything,
//! instead of exiting (the exit itself is tested end to end in Python,
//! tests/e2e/test_storage_faults.py).

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ketch::mvcc::BackendFactory;
use ketch::pb::etcdserverpb::{
    alarm_request::AlarmAction, request_op, AlarmRequest, AlarmResponse, AlarmType, CompactionRequest,
    CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantRequest, LeaseGrantResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RequestOp, StatusRequest, StatusResponse, TxnRequest, TxnResponse,
};
use ketch::wal::{CrashTail, FsOp, MemFs};
use ketch::{Engine, EngineConfig, EtcdError, Method, StorageSeams};
use redb::backends::FileBackend;
use redb::StorageBackend;

mod common;
use common::{Client, CLUSTER, MEMBER};

impl Client {
    fn put(&mut self, key: &str, value: &[u8]) -> Result<PutResponse, EtcdError> {
        self.call(Method::KvPut, &put_req(key, value))
    }

    fn get(&mut self, key: &str) -> Result<RangeResponse, EtcdError> {
        self.call(Method::KvRange, &RangeRequest { key: key.to_owned().into(), ..Default::default() })
    }

    fn txn(&mut self, success: Vec<RequestOp>, failure: Vec<RequestOp>) -> Result<TxnResponse, EtcdError> {
        self.call(Method::KvTxn, &TxnRequest { compare: vec![], success, failure })
    }

    fn alarm(&mut self, action: AlarmAction) -> AlarmResponse {
        let req = AlarmRequest { action: action as i32, member_id: MEMBER, alarm: AlarmType::Nospace as i32 };
        self.call(Method::MaintenanceAlarm, &req).expect("alarm")
    }
}

fn put_req(key: &str, value: &[u8]) -> PutRequest {
    PutRequest { key: key.to_owned().into(), value: Bytes::copy_from_slice(value), ..Default::default() }
}

fn op_put(key: &str) -> RequestOp {
    RequestOp { request: Some(request_op::Request::RequestPut(put_req(key, b"v"))) }
}

fn op_delete(key: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(DeleteRangeRequest {
            key: key.to_owned().into(),
            ..Default::default()
        })),
    }
}

fn op_get(key: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: key.to_owned().into(),
            ..Default::default()
        })),
    }
}

fn op_txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
    RequestOp { request: Some(request_op::Request::RequestTxn(TxnRequest { compare: vec![], success, failure })) }
}

fn config(dir: &Path) -> EngineConfig {
    let mut c = EngineConfig::new(dir, MEMBER, CLUSTER);
    c.storage.exit_on_fatal = false;
    c
}

/// Every shape the capped applier and the quota tell apart, with whether
/// NOSPACE refuses it. (The same shapes against etcd itself, through gRPC:
/// tests/e2e/test_nospace.py.)
fn nospace_shapes(c: &mut Client) {
    let nospace = |r: Result<TxnResponse, EtcdError>| matches!(r, Err(EtcdError::NoSpace));
    assert!(matches!(c.put("b", b"2"), Err(EtcdError::NoSpace)));
    let grant: Result<LeaseGrantResponse, _> = c.call(Method::LeaseGrant, &LeaseGrantRequest { ttl: 10, id: 0 });
    assert!(matches!(grant, Err(EtcdError::NoSpace)));
    assert!(nospace(c.txn(vec![op_put("b")], vec![])), "a put in success");
    assert!(nospace(c.txn(vec![], vec![op_put("b")])), "a put in failure (not taken)");
    assert!(nospace(c.txn(vec![op_delete("x")], vec![op_txn(vec![], vec![op_put("b")])])), "a nested put");
    // No put anywhere: applied.
    let t =
        c.txn(vec![op_delete("a"), op_get("a")], vec![op_txn(vec![op_delete("z")], vec![])]).expect("delete-only txn");
    assert!(t.succeeded);
    c.txn(vec![op_get("a")], vec![]).expect("read-only txn");
    let _: DeleteRangeResponse =
        c.call(Method::KvDeleteRange, &DeleteRangeRequest { key: "a".into(), ..Default::default() }).expect("delete");
    let rev = c.get("a").expect("get").header.expect("header").revision;
    let _: CompactionResponse =
        c.call(Method::KvCompact, &CompactionRequest { revision: rev, physical: false }).expect("compact");
    let _: ketch::pb::etcdserverpb::DefragmentResponse =
        c.call(Method::MaintenanceDefragment, &ketch::pb::etcdserverpb::DefragmentRequest {}).expect("defragment");
}

#[test]
fn nospace_alarm_caps_puts_and_lets_everything_else_through() {
    // The capped applier alone: the alarm is raised by hand, the quota has room.
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::new(Arc::new(Engine::start(config(dir.path())).unwrap()));
    c.put("a", b"0").unwrap();
    c.alarm(AlarmAction::Activate);
    c.alarm(AlarmAction::Deactivate);
    c.put("a", b"0").unwrap();
    c.alarm(AlarmAction::Activate);
    nospace_shapes(&mut c);
    c.alarm(AlarmAction::Deactivate);
    c.put("b", b"1").expect("put once disarmed");
}

#[test]
fn quota_refuses_what_grows_the_store_and_passes_what_does_not() {
    // The admission check: with a 1-byte quota every put is over it and the
    // first refusal raises the alarm; a txn without puts adds nothing and
    // passes though the backend is already past the quota.
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::new(Arc::new(Engine::start(config(dir.path())).unwrap()));
    c.put("a", b"1").unwrap();
    drop(c);
    let mut cfg = config(dir.path());
    cfg.quota_backend_bytes = 1;
    let mut c = Client::new(Arc::new(Engine::start(cfg).unwrap()));
    assert!(matches!(c.put("b", b"1"), Err(EtcdError::NoSpace)));
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.alarm(AlarmAction::Get).alarms.is_empty() {
        assert!(Instant::now() < deadline, "the quota raised no alarm");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(matches!(c.txn(vec![op_delete("a")], vec![op_txn(vec![op_put("n")], vec![])]), Err(EtcdError::NoSpace)));
    let t = c.txn(vec![op_delete("a")], vec![]).expect("a delete-only txn over the quota");
    assert!(t.succeeded);
    assert!(c.get("a").unwrap().kvs.is_empty(), "the txn deleted a");
}

// ---------------------------------------------------------------------------
// Storage faults.

/// What to break in the backend's storage, shared between a test and the
/// backend it made. Each counter is "fail the nth call from now" (0 = the
/// next), negative = disarmed; the failure's errno is `errno`.
#[derive(Debug, Default)]
struct Faults {
    write_in: AtomicI64,
    sync_in: AtomicI64,
    set_len_in: AtomicI64,
    errno: AtomicI64,
    /// Calls that reached the file after a failure fired (must stay 0 for
    /// syncs: a failed fsync is never retried).
    syncs_after_failure: AtomicI64,
    fired: AtomicBool,
}

impl Faults {
    fn disarmed() -> Arc<Faults> {
        let f = Faults::default();
        for c in [&f.write_in, &f.sync_in, &f.set_len_in] {
            c.store(-1, Ordering::SeqCst);
        }
        Arc::new(f)
    }

    fn check(&self, counter: &AtomicI64) -> std::io::Result<()> {
        let n = counter.load(Ordering::SeqCst);
        if n < 0 {
            return Ok(());
        }
        counter.store(n - 1, Ordering::SeqCst);
        if n == 0 {
            self.fired.store(true, Ordering::SeqCst);
            return Err(std::io::Error::from_raw_os_error(self.errno.load(Ordering::SeqCst) as i32));
        }
        Ok(())
    }
}

/// redb's file backend with [`Faults`] in front of its writes.
#[derive(Debug)]
struct FaultyFile {
    inner: FileBackend,
    faults: Arc<Faults>,
}

impl StorageBackend for FaultyFile {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.faults.check(&self.faults.set_len_in)?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        if self.faults.fired.load(Ordering::SeqCst) {
            self.faults.syncs_after_failure.fetch_add(1, Ordering::SeqCst);
        }
        self.faults.check(&self.faults.sync_in)?;
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.faults.check(&self.faults.write_in)?;
        self.inner.write(offset, data)
    }
    fn close(&self) -> std::io::Result<()> {
        self.inner.close()
    }
    fn try_lock_range(&self, s: std::ops::Bound<u64>, e: std::ops::Bound<u64>) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_range(s, e)
    }
    fn lock_range(&self, s: std::ops::Bound<u64>, e: std::ops::Bound<u64>) -> Result<(), redb::BackendError> {
        self.inner.lock_range(s, e)
    }
    fn unlock_range(&self, s: std::ops::Bound<u64>, e: std::ops::Bound<u64>) -> Result<(), redb::BackendError> {
        self.inner.unlock_range(s, e)
    }
    fn try_lock_shared_range(
        &self,
        s: std::ops::Bound<u64>,
        e: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_shared_range(s, e)
    }
    fn lock_shared_range(&self, s: std::ops::Bound<u64>, e: std::ops::Bound<u64>) -> Result<(), redb::BackendError> {
        self.inner.lock_shared_range(s, e)
    }
    fn query_lock_range(&self, s: std::ops::Bound<u64>, e: std::ops::Bound<u64>) -> Result<bool, redb::BackendError> {
        self.inner.query_lock_range(s, e)
    }
}

fn faulty_backend(faults: &Arc<Faults>) -> BackendFactory {
    let faults = faults.clone();
    BackendFactory(Arc::new(move |path: &Path| {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        let inner = FileBackend::new(file).map_err(std::io::Error::other)?;
        Ok(Box::new(FaultyFile { inner, faults: faults.clone() }) as Box<dyn StorageBackend>)
    }))
}

/// An engine over a MemFs WAL and a faulty backend file in `dir`.
fn start_faulty(dir: &Path, fs: &MemFs, faults: &Arc<Faults>) -> Arc<Engine> {
    let mut cfg = config(dir);
    cfg.storage =
        StorageSeams { wal_fs: Arc::new(fs.clone()), backend: Some(faulty_backend(faults)), exit_on_fatal: false };
    Arc::new(Engine::start(cfg).expect("engine starts"))
}

/// After the fault: the write in flight and every later call (reads
/// included) get etcd's UNAVAILABLE answer "server stopped"; nothing is
/// refused as INTERNAL, nothing is left unanswered.
fn assert_down(c: &mut Client) {
    assert!(matches!(c.put("after", b"x"), Err(EtcdError::Stopped)), "a put after the failure");
    assert!(matches!(c.get("k0"), Err(EtcdError::Stopped)), "a read after the failure");
    let status: Result<StatusResponse, _> = c.call(Method::MaintenanceStatus, &StatusRequest {});
    assert!(matches!(status, Err(EtcdError::Stopped)), "status after the failure");
}

/// Puts until one fails; returns the keys acknowledged and the error.
fn put_until_failure(c: &mut Client, value: &[u8]) -> (Vec<String>, EtcdError) {
    let mut acked = Vec::new();
    for i in 0..2000 {
        let key = format!("k{i}");
        match c.put(&key, value) {
            Ok(_) => acked.push(key),
            Err(e) => return (acked, e),
        }
        if i % 20 == 19 {
            // Lets the 100 ms durable commit of the backend come round.
            std::thread::sleep(Duration::from_millis(30));
        }
    }
    panic!("no put failed");
}

/// Restarts over what is durable (unsynced WAL bytes dropped, the backend
/// file as it is) and checks every acknowledged key is there.
fn restart_has(dir: &Path, fs: &MemFs, acked: &[String]) {
    fs.clear_failures();
    fs.crash(|_, _| CrashTail::Drop);
    let mut c = Client::new(start_faulty(dir, fs, &Faults::disarmed()));
    for key in acked {
        let got = c.get(key).expect("get after restart");
        assert_eq!(got.kvs.len(), 1, "acknowledged {key} lost");
    }
    c.put("again", b"1").expect("the restarted member takes writes");
}

fn syncs_after(fs: &MemFs, ops_before: usize) -> usize {
    fs.ops()[ops_before..].iter().filter(|op| matches!(op, FsOp::SyncFile(_) | FsOp::SyncDir(_))).count()
}

#[test]
fn wal_write_or_fsync_failure_answers_unavailable_and_never_fsyncs_again() {
    for (site, errno) in [("append", libc::EIO), ("append", libc::ENOSPC), ("sync", libc::EIO), ("sync", libc::ENOSPC)]
    {
        let dir = tempfile::tempdir().unwrap();
        let fs = MemFs::new();
        let engine = start_faulty(dir.path(), &fs, &Faults::disarmed());
        let mut c = Client::new(engine.clone());
        for i in 0..5 {
            c.put(&format!("k{i}"), b"v").unwrap();
        }
        let acked: Vec<String> = (0..5).map(|i| format!("k{i}")).collect();
        match site {
            "append" => fs.fail_append_with(0, errno),
            _ => fs.fail_sync_with(0, errno),
        }
        let ops_before = fs.ops().len();
        let in_flight = c.put("in-flight", b"v");
        assert!(matches!(in_flight, Err(EtcdError::Stopped)), "{site}/{errno}: the write in flight got {in_flight:?}");
        assert_down(&mut c);
        assert_eq!(syncs_after(&fs, ops_before), 0, "{site}/{errno}: the WAL fsynced after a failure");
        drop(c);
        drop(engine);
        assert_eq!(syncs_after(&fs, ops_before), 0, "{site}/{errno}: closing fsynced after a failure");
        restart_has(dir.path(), &fs, &acked);
    }
}

#[test]
fn backend_write_resize_or_fsync_failure_answers_unavailable_and_never_fsyncs_again() {
    for (site, errno) in [("write", libc::EIO), ("write", libc::ENOSPC), ("set_len", libc::ENOSPC), ("sync", libc::EIO)]
    {
        let dir = tempfile::tempdir().unwrap();
        let fs = MemFs::new();
        let faults = Faults::disarmed();
        let engine = start_faulty(dir.path(), &fs, &faults);
        let mut c = Client::new(engine.clone());
        c.put("k", b"v").unwrap();
        faults.errno.store(i64::from(errno), Ordering::SeqCst);
        let counter = match site {
            "write" => &faults.write_in,
            "set_len" => &faults.set_len_in,
            _ => &faults.sync_in,
        };
        counter.store(0, Ordering::SeqCst);
        // Big values make the file grow (set_len) soon.
        let (acked, err) = put_until_failure(&mut c, &[7u8; 3000]);
        assert!(faults.fired.load(Ordering::SeqCst), "{site}/{errno}: the fault never fired");
        assert!(matches!(err, EtcdError::Stopped), "{site}/{errno}: the write in flight got {err:?}");
        assert_down(&mut c);
        drop(c);
        drop(engine);
        assert_eq!(faults.syncs_after_failure.load(Ordering::SeqCst), 0, "{site}/{errno}: the backend fsynced again");
        restart_has(dir.path(), &fs, &acked);
    }
}
