//! The engine through its one entry point: encoded etcd requests in, encoded
//! responses out. Real WAL, real Raft node, real store, on a temp dir.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ketch::pb::etcdserverpb::{
    compare, request_op, CompactionRequest, Compare, DeleteRangeRequest, DeleteRangeResponse, MemberListRequest,
    MemberListResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, StatusRequest, StatusResponse,
    TxnRequest, TxnResponse,
};
use ketch::{Engine, EngineConfig, EtcdError, Method};
use prost::Message;

mod common;
use common::{Client, CLUSTER, MEMBER};

impl Client {
    fn put(&mut self, key: &str, value: &str) -> PutResponse {
        self.call(
            Method::KvPut,
            &PutRequest { key: key.to_owned().into(), value: value.to_owned().into(), ..Default::default() },
        )
        .expect("put")
    }

    fn get(&mut self, key: &str, serializable: bool) -> RangeResponse {
        self.call(Method::KvRange, &RangeRequest { key: key.to_owned().into(), serializable, ..Default::default() })
            .expect("range")
    }
}

fn start(dir: &std::path::Path) -> Arc<Engine> {
    let mut config = EngineConfig::new(dir, MEMBER, CLUSTER);
    config.max_request_bytes = 4096;
    Arc::new(Engine::start(config).expect("engine starts"))
}

#[test]
fn put_then_read_with_etcd_headers() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::new(start(dir.path()));
    // etcd accepts compacting at 0 on a store never compacted.
    let _: ketch::pb::etcdserverpb::CompactionResponse =
        c.call(Method::KvCompact, &CompactionRequest { revision: 0, physical: false }).unwrap();
    let put = c.put("a", "1");
    let h = put.header.unwrap();
    assert_eq!((h.cluster_id, h.member_id, h.revision), (CLUSTER, MEMBER, 2));
    // etcd starts at term 1 and its first election makes term 2.
    assert_eq!(h.raft_term, 2);
    for serializable in [false, true] {
        let got = c.get("a", serializable);
        assert_eq!(got.count, 1);
        assert_eq!(got.kvs[0].value, Bytes::from("1"));
        assert_eq!(got.header.unwrap().revision, 2);
    }
    let missing = c.get("nope", false);
    assert_eq!((missing.count, missing.kvs.len()), (0, 0));
}

#[test]
fn every_kv_method_and_status_member_list() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::new(start(dir.path()));
    c.put("k1", "v1");
    c.put("k2", "v2");
    let txn: TxnResponse = c
        .call(
            Method::KvTxn,
            &TxnRequest {
                compare: vec![Compare {
                    key: "k1".into(),
                    target: compare::CompareTarget::Value as i32,
                    result: compare::CompareResult::Equal as i32,
                    target_union: Some(compare::TargetUnion::Value("v1".into())),
                    ..Default::default()
                }],
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key: "k3".into(),
                        value: "v3".into(),
                        ..Default::default()
                    })),
                }],
                failure: vec![],
            },
        )
        .unwrap();
    assert!(txn.succeeded);
    assert_eq!(txn.header.unwrap().revision, 4);
    let del: DeleteRangeResponse = c
        .call(Method::KvDeleteRange, &DeleteRangeRequest { key: "k1".into(), prev_kv: true, ..Default::default() })
        .unwrap();
    assert_eq!(del.deleted, 1);
    assert_eq!(del.prev_kvs[0].value, Bytes::from("v1"));
    let all: RangeResponse = c
        .call(Method::KvRange, &RangeRequest { key: "k".into(), range_end: "l".into(), ..Default::default() })
        .unwrap();
    assert_eq!(all.kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>(), vec![Bytes::from("k2"), Bytes::from("k3")]);
    let _: ketch::pb::etcdserverpb::CompactionResponse =
        c.call(Method::KvCompact, &CompactionRequest { revision: 3, physical: true }).unwrap();
    let old: Result<RangeResponse, _> =
        c.call(Method::KvRange, &RangeRequest { key: "k2".into(), revision: 2, ..Default::default() });
    assert_eq!(old.unwrap_err(), EtcdError::Compacted);

    let status: StatusResponse = c.call(Method::MaintenanceStatus, &StatusRequest {}).unwrap();
    assert_eq!(status.leader, MEMBER);
    assert_eq!(status.raft_term, 2);
    assert!(status.raft_index >= 5 && status.raft_applied_index == status.raft_index);
    assert!(status.db_size > 0);
    let members: MemberListResponse = c.call(Method::ClusterMemberList, &MemberListRequest {}).unwrap();
    assert_eq!(members.members.len(), 1);
    assert_eq!(members.members[0].id, MEMBER);
    let header = members.header.unwrap();
    assert_eq!(header.cluster_id, CLUSTER);
    assert_eq!(header.revision, 0, "etcd's Cluster service reports no revision");
}

#[test]
fn bad_requests_get_etcd_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::new(start(dir.path()));
    let empty: Result<PutResponse, _> = c.call(Method::KvPut, &PutRequest::default());
    assert_eq!(empty.unwrap_err(), EtcdError::EmptyKey);
    let big = PutRequest { key: "k".into(), value: vec![b'x'; 5000].into(), ..Default::default() };
    assert_eq!(c.call::<_, PutResponse>(Method::KvPut, &big).unwrap_err(), EtcdError::RequestTooLarge);
    let garbage = c.call_raw(Method::KvPut, vec![0xff, 0xff, 0xff]);
    assert!(matches!(garbage, Err(EtcdError::BadRequest(_))));
    let future = c.call::<_, RangeResponse>(
        Method::KvRange,
        &RangeRequest { key: "a".into(), revision: 99, ..Default::default() },
    );
    assert_eq!(future.unwrap_err(), EtcdError::FutureRev);
    let leased = PutRequest { key: "k".into(), lease: 42, ..Default::default() };
    assert_eq!(c.call::<_, PutResponse>(Method::KvPut, &leased).unwrap_err(), EtcdError::LeaseNotFound);
    // Nothing above changed the store.
    assert_eq!(c.get("k", false).header.unwrap().revision, 1);
    assert_eq!(c.call_raw(Method::KvPut, vec![]).unwrap_err(), EtcdError::EmptyKey);
    let unknown = {
        c.engine.submit(999, Bytes::new(), 77);
        loop {
            if let Some(done) = c.engine.completions().take().into_iter().find(|d| d.token == 77) {
                break done.result;
            }
        }
    };
    assert!(matches!(unknown, Err(EtcdError::BadRequest(_))));
}

#[test]
fn restart_keeps_everything_and_continues_revisions() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = start(dir.path());
        let mut c = Client::new(engine.clone());
        for i in 0..50 {
            c.put(&format!("key{i:03}"), &format!("value{i}"));
        }
        engine.close();
    }
    let engine = start(dir.path());
    let mut c = Client::new(engine.clone());
    let all: RangeResponse = c
        .call(Method::KvRange, &RangeRequest { key: "key".into(), range_end: "kez".into(), ..Default::default() })
        .unwrap();
    assert_eq!(all.count, 50);
    assert_eq!(all.kvs[49].value, Bytes::from("value49"));
    assert_eq!(all.header.unwrap().revision, 51);
    let next = c.put("after", "restart");
    assert_eq!(next.header.as_ref().unwrap().revision, 52);
    // A restarted member campaigns again: one term more.
    assert_eq!(next.header.unwrap().raft_term, 3);
}

#[test]
fn concurrent_writers_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path());
    let fsyncs = |e: &Engine| e.stats().into_iter().find(|(k, _)| *k == "wal_fsyncs").unwrap().1;
    let before = fsyncs(&engine);
    let writers = 16;
    let per_writer = 50;
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                // Each writer keeps several requests in flight, as a gRPC
                // server with many clients does.
                let mut tokens = Vec::new();
                for i in 0..per_writer {
                    let token = (w * 1000 + i + 1) as u64;
                    let req = PutRequest { key: format!("w{w}/{i}").into(), value: "x".into(), ..Default::default() };
                    engine.submit(Method::KvPut as u32, Bytes::from(req.encode_to_vec()), token);
                    tokens.push(token);
                }
                tokens
            })
        })
        .collect();
    let mut outstanding: std::collections::HashSet<u64> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !outstanding.is_empty() {
        for c in engine.completions().take() {
            assert!(c.result.is_ok(), "{:?}", c.result);
            outstanding.remove(&c.token);
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(1));
    }
    let writes = (writers * per_writer) as u64;
    let used = fsyncs(&engine) - before;
    assert!(used < writes / 4, "{writes} writes took {used} fsyncs: no group commit");
    let mut c = Client::new(engine.clone());
    assert_eq!(c.get("w0/0", false).header.unwrap().revision, 1 + writes as i64);
}

#[test]
fn authenticate_answers_auth_not_enabled_after_a_read_index() {
    use ketch::pb::etcdserverpb::AuthenticateRequest;
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::new(start(dir.path()));
    let request = AuthenticateRequest { name: "root".into(), password: "pw".into() };
    let answer = c.call_raw(Method::AuthAuthenticate, request.encode_to_vec());
    assert_eq!(answer, Err(EtcdError::AuthNotEnabled));
    assert_eq!(EtcdError::AuthNotEnabled.to_string(), "etcdserver: authentication is not enabled");
    // Bytes that are no AuthenticateRequest are refused as gRPC would refuse them.
    assert!(matches!(c.call_raw(Method::AuthAuthenticate, vec![0x0a, 0xff]), Err(EtcdError::BadRequest(_))));
}
