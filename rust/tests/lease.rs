//! Leases through the engine's one entry point: encoded etcd requests in,
//! encoded responses out. Real WAL, Raft node, store and lessor on a temp dir.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ketch::pb::etcdserverpb::{
    DeleteRangeRequest, DeleteRangeResponse, LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest,
    LeaseKeepAliveResponse, LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
};
use ketch::{Engine, EngineConfig, EtcdError, Method};

mod common;
use common::{Client, CLUSTER, MEMBER};

impl Client {
    fn grant(&mut self, id: i64, ttl: i64) -> Result<LeaseGrantResponse, EtcdError> {
        self.call(Method::LeaseGrant, &LeaseGrantRequest { ttl, id })
    }

    fn revoke(&mut self, id: i64) -> Result<LeaseRevokeResponse, EtcdError> {
        self.call(Method::LeaseRevoke, &LeaseRevokeRequest { id })
    }

    fn keep_alive(&mut self, id: i64) -> LeaseKeepAliveResponse {
        self.call(Method::LeaseKeepAlive, &LeaseKeepAliveRequest { id }).expect("keep-alive")
    }

    fn ttl(&mut self, id: i64) -> LeaseTimeToLiveResponse {
        self.call(Method::LeaseTimeToLive, &LeaseTimeToLiveRequest { id, keys: true }).expect("time to live")
    }

    fn leases(&mut self) -> Vec<i64> {
        let r: LeaseLeasesResponse = self.call(Method::LeaseLeases, &LeaseLeasesRequest {}).expect("leases");
        r.leases.iter().map(|l| l.id).collect()
    }

    fn put(&mut self, key: &str, lease: i64) -> Result<PutResponse, EtcdError> {
        self.call(
            Method::KvPut,
            &PutRequest { key: key.to_owned().into(), value: "v".into(), lease, ..Default::default() },
        )
    }

    fn all(&mut self) -> RangeResponse {
        self.call(Method::KvRange, &RangeRequest { key: "\0".into(), range_end: "\0".into(), ..Default::default() })
            .expect("range")
    }

    fn keys(&mut self) -> Vec<String> {
        self.all().kvs.iter().map(|kv| String::from_utf8(kv.key.to_vec()).unwrap()).collect()
    }
}

fn start(dir: &std::path::Path) -> Arc<Engine> {
    Arc::new(Engine::start(EngineConfig::new(dir, MEMBER, CLUSTER)).expect("engine starts"))
}

fn strings(keys: &[Bytes]) -> Vec<&str> {
    keys.iter().map(|k| std::str::from_utf8(k).unwrap()).collect()
}

#[test]
fn lease_rpcs_answer_as_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::new(start(dir.path()));
    // ID 0: the member picks a positive one.
    let g = c.grant(0, 60).unwrap();
    assert!(g.id > 0);
    assert_eq!(g.ttl, 60);
    let h = g.header.unwrap();
    assert_eq!((h.cluster_id, h.member_id, h.revision), (CLUSTER, MEMBER, 1));
    assert_eq!(c.grant(42, 1).unwrap().ttl, 2, "raised to the minimum TTL");
    assert_eq!(c.grant(42, 60).unwrap_err(), EtcdError::LeaseExists);
    assert_eq!(c.grant(43, 9_000_000_001).unwrap_err(), EtcdError::LeaseTtlTooLarge);
    assert_eq!(c.put("k", 999).unwrap_err(), EtcdError::LeaseNotFound);

    c.put("b", g.id).unwrap();
    c.put("a", g.id).unwrap();
    c.put("c", 42).unwrap();
    let t = c.ttl(g.id);
    assert_eq!((t.id, t.granted_ttl), (g.id, 60));
    assert!((59..=60).contains(&t.ttl), "remaining {}", t.ttl);
    assert_eq!(strings(&t.keys), ["a", "b"]);
    assert_eq!(t.header.unwrap().revision, 4);
    // Unknown lease: TTL -1 and no error (etcd's API layer), keep-alive TTL 0.
    let unknown = c.ttl(7);
    assert_eq!((unknown.id, unknown.ttl, unknown.granted_ttl), (7, -1, 0));
    let k = c.keep_alive(g.id);
    assert_eq!((k.id, k.ttl, k.header.unwrap().revision), (g.id, 60, 4));
    assert_eq!(c.keep_alive(7).ttl, 0);
    // Soonest expiry first.
    assert_eq!(c.leases(), vec![42, g.id]);

    // Move "c" to the other lease, detach "b" by overwriting without one.
    c.put("c", g.id).unwrap();
    c.put("b", 0).unwrap();
    assert_eq!(strings(&c.ttl(g.id).keys), ["a", "c"]);
    assert!(c.ttl(42).keys.is_empty());

    let before = c.all().header.unwrap().revision;
    let r = c.revoke(g.id).unwrap();
    assert_eq!(r.header.unwrap().revision, before + 1, "both keys deleted in one revision");
    assert_eq!(c.keys(), ["b"]);
    assert_eq!(c.revoke(g.id).unwrap_err(), EtcdError::LeaseNotFound);
    assert_eq!(c.leases(), vec![42]);
    assert_eq!(c.ttl(g.id).ttl, -1);
}

#[test]
fn expiry_deletes_every_key_in_one_revision_within_a_second_of_the_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::new(start(dir.path()));
    let granted = Instant::now();
    let id = c.grant(0, 2).unwrap().id;
    for k in ["x", "y", "z"] {
        c.put(k, id).unwrap();
    }
    c.put("keep", 0).unwrap();
    let before = c.all().header.unwrap().revision;
    while c.keys().len() > 1 {
        assert!(granted.elapsed() < Duration::from_secs(3), "keys outlived their 2 s lease by 1 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(granted.elapsed() >= Duration::from_secs(2), "expired early: {:?}", granted.elapsed());
    assert_eq!(c.keys(), ["keep"]);
    assert_eq!(c.all().header.unwrap().revision, before + 1);
    assert!(c.leases().is_empty());
}

#[test]
fn keep_alive_keeps_a_lease_past_its_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::new(start(dir.path()));
    let id = c.grant(0, 2).unwrap().id;
    c.put("held", id).unwrap();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(3500) {
        assert_eq!(c.keep_alive(id).ttl, 2);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(c.keys(), ["held"]);
    assert_eq!(c.ttl(id).granted_ttl, 2);
}

#[test]
fn restart_keeps_leases_and_their_keys_then_they_expire() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path());
    let mut c = Client::new(engine.clone());
    c.grant(1, 60).unwrap();
    c.grant(2, 2).unwrap();
    c.put("long", 1).unwrap();
    c.put("short1", 2).unwrap();
    c.put("short2", 2).unwrap();
    c.put("moved", 2).unwrap();
    c.put("moved", 1).unwrap();
    drop(c);
    engine.close();
    drop(engine);

    let restarted = Instant::now();
    let mut c = Client::new(start(dir.path()));
    assert_eq!(c.leases(), vec![2, 1]);
    assert_eq!(strings(&c.ttl(1).keys), ["long", "moved"]);
    assert_eq!(strings(&c.ttl(2).keys), ["short1", "short2"]);
    // A restarted leader gives the lease a full TTL (plus an election timeout) again.
    while c.keys().len() > 2 {
        assert!(restarted.elapsed() < Duration::from_secs(5), "short lease never expired");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(restarted.elapsed() >= Duration::from_secs(2), "expired early: {:?}", restarted.elapsed());
    assert_eq!(c.keys(), ["long", "moved"]);
    assert_eq!(c.leases(), vec![1]);
    let d: DeleteRangeResponse =
        c.call(Method::KvDeleteRange, &DeleteRangeRequest { key: "long".into(), ..Default::default() }).unwrap();
    assert_eq!(d.deleted, 1);
    assert_eq!(strings(&c.ttl(1).keys), ["moved"]);
}
