//! Several engines in one process, wired by an in-memory transport that
//! carries the batches the engines hand out, as the Python peer transport
//! does over gRPC. The transport can drop a member, so these tests check
//! elections, forwarding, membership changes and snapshot catch-up without
//! any network.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ketch::pb::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse, MemberPromoteRequest,
    MemberRemoveRequest, MemberRemoveResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
};
use ketch::{Engine, EngineConfig, EtcdError, Method};
use parking_lot::Mutex;
use prost::Message;

const CLUSTER: u64 = 0x1234;

/// The members of a test cluster and the transport between them.
struct Cluster {
    dir: tempfile::TempDir,
    engines: Arc<Mutex<BTreeMap<u64, Arc<Engine>>>>,
    stop: Arc<AtomicBool>,
    pump: Option<std::thread::JoinHandle<()>>,
    next_token: Mutex<u64>,
    stash: Mutex<HashMap<u64, Result<Vec<u8>, EtcdError>>>,
}

fn config(dir: &std::path::Path, id: u64, initial: &[u64], snapshot_count: u64) -> EngineConfig {
    let mut c = EngineConfig::new(dir.join(format!("m{id}")), id, CLUSTER);
    c.name = format!("m{id}");
    c.peer_urls = vec![format!("http://m{id}:2380")];
    c.client_urls = vec![format!("http://m{id}:2379")];
    c.tick = Duration::from_millis(10);
    c.election_ticks = 10;
    c.snapshot_count = snapshot_count;
    c.initial_members = initial.iter().map(|&m| (m, format!("m{m}"), vec![format!("http://m{m}:2380")])).collect();
    c
}

impl Cluster {
    fn start(ids: &[u64], snapshot_count: u64) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let engines = Arc::new(Mutex::new(BTreeMap::new()));
        for &id in ids {
            let e = Engine::start(config(dir.path(), id, ids, snapshot_count)).unwrap();
            engines.lock().insert(id, Arc::new(e));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let pump = {
            let (engines, stop) = (engines.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    let live: Vec<(u64, Arc<Engine>)> = engines.lock().iter().map(|(k, v)| (*k, v.clone())).collect();
                    for (_, from) in &live {
                        for b in from.take_peer_batches() {
                            match live.iter().find(|(id, _)| *id == b.to) {
                                Some((_, to)) => {
                                    to.step(&b.bytes).unwrap();
                                    if b.is_snapshot {
                                        from.report_snapshot(b.to, true);
                                    }
                                }
                                None => from.report_unreachable(b.to),
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        Cluster { dir, engines, stop, pump: Some(pump), next_token: Mutex::new(1), stash: Mutex::new(HashMap::new()) }
    }

    fn engine(&self, id: u64) -> Arc<Engine> {
        self.engines.lock()[&id].clone()
    }

    fn call<Req: Message, Resp: Message + Default>(
        &self,
        id: u64,
        method: Method,
        req: &Req,
    ) -> Result<Resp, EtcdError> {
        let engine = self.engine(id);
        let token = {
            let mut t = self.next_token.lock();
            *t += 1;
            *t
        };
        engine.submit(method as u32, Bytes::from(req.encode_to_vec()), token);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            for c in engine.completions().take() {
                self.stash.lock().insert(c.token, c.result);
            }
            if let Some(r) = self.stash.lock().remove(&token) {
                return r.map(|b| Resp::decode(b.as_slice()).unwrap());
            }
            assert!(Instant::now() < deadline, "no answer from member {id:x}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn put(&self, id: u64, key: &str, value: &str) -> Result<PutResponse, EtcdError> {
        let req = PutRequest { key: key.to_owned().into(), value: value.to_owned().into(), ..Default::default() };
        self.call(id, Method::KvPut, &req)
    }

    fn get(&self, id: u64, key: &str, serializable: bool) -> Result<Option<String>, EtcdError> {
        let req = RangeRequest { key: key.to_owned().into(), serializable, ..Default::default() };
        let resp: RangeResponse = self.call(id, Method::KvRange, &req)?;
        Ok(resp.kvs.first().map(|kv| String::from_utf8(kv.value.to_vec()).unwrap()))
    }

    fn stat(&self, id: u64, name: &str) -> u64 {
        self.engine(id).stats().into_iter().find(|(k, _)| *k == name).unwrap().1
    }

    /// Waits until every live member agrees on one leader and has published.
    fn leader(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ids: Vec<u64> = self.engines.lock().keys().copied().collect();
            let leaders: Vec<u64> = ids.iter().map(|&id| self.stat(id, "raft_leader")).collect();
            if leaders[0] != 0 && leaders.iter().all(|&l| l == leaders[0]) && ids.contains(&leaders[0]) {
                return leaders[0];
            }
            assert!(Instant::now() < deadline, "no agreed leader: {leaders:x?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn kill(&self, id: u64) {
        let e = self.engines.lock().remove(&id).unwrap();
        e.close();
    }

    fn restart(&self, id: u64, cfg: EngineConfig) {
        let e = Engine::start(cfg).unwrap();
        self.engines.lock().insert(id, Arc::new(e));
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(p) = self.pump.take() {
            let _ = p.join();
        }
        for (_, e) in std::mem::take(&mut *self.engines.lock()) {
            e.close();
        }
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn any_member_serves_and_a_killed_leader_is_replaced() {
    let c = Cluster::start(&[1, 2, 3], 100_000);
    let leader = c.leader();
    let follower = [1, 2, 3].into_iter().find(|&i| i != leader).unwrap();
    // A write through a follower is forwarded; a linearizable read anywhere sees it.
    c.put(follower, "k", "v1").unwrap();
    for id in [1, 2, 3] {
        assert_eq!(c.get(id, "k", false).unwrap().as_deref(), Some("v1"));
    }
    wait_for("every member to publish", || [1, 2, 3].iter().all(|&i| c.stat(i, "published") == 1));
    let list: MemberListResponse = c.call(follower, Method::ClusterMemberList, &MemberListRequest::default()).unwrap();
    let names: Vec<&str> = list.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["m1", "m2", "m3"]);
    assert_eq!(list.members[1].client_ur_ls, ["http://m2:2379"]);

    c.kill(leader);
    let new_leader = c.leader();
    assert_ne!(new_leader, leader);
    c.put(new_leader, "k", "v2").unwrap();
    c.restart(leader, config(&c.path(), leader, &[1, 2, 3], 100_000));
    wait_for("the old leader to catch up", || c.get(leader, "k", true).unwrap().as_deref() == Some("v2"));
}

#[test]
fn a_learner_catches_up_from_a_snapshot_is_promoted_and_a_member_is_removed() {
    let c = Cluster::start(&[1, 2, 3], 20);
    let leader = c.leader();
    for i in 0..300 {
        c.put(leader, &format!("key{i}"), &format!("v{i}")).unwrap();
    }
    // The leader's log was compacted (snapshot_count 20), so a new member
    // can only catch up from a snapshot.
    let add: MemberAddResponse = c
        .call(
            leader,
            Method::ClusterMemberAdd,
            &MemberAddRequest { peer_ur_ls: vec!["http://m9:2380".into()], is_learner: true },
        )
        .unwrap();
    let new_id = add.member.as_ref().unwrap().id;
    assert!(add.member.unwrap().is_learner);
    assert_eq!(add.members.len(), 4);
    // MemberList is linearizable: a follower lists the member just added.
    let other = [1, 2, 3].into_iter().find(|&i| i != leader).unwrap();
    let list: MemberListResponse = c.call(other, Method::ClusterMemberList, &MemberListRequest::default()).unwrap();
    assert_eq!(list.members.len(), 4);
    let mut cfg = config(&c.path(), new_id, &[], 20);
    cfg.name = "m9".into();
    cfg.peer_urls = vec!["http://m9:2380".into()];
    cfg.initial_members.clear();
    c.restart(new_id, cfg);
    wait_for("the learner to catch up", || c.get(new_id, "key299", true).ok().flatten().as_deref() == Some("v299"));
    assert_eq!(c.stat(new_id, "snapshots_installed"), 1);
    assert_eq!(c.stat(new_id, "is_learner"), 1);
    assert_eq!(c.get(new_id, "key1", false), Err(EtcdError::NotSupportedForLearner));
    // Promote must run on the leader.
    let promote = MemberPromoteRequest { id: new_id };
    let follower = [1, 2, 3].into_iter().find(|&i| i != leader).unwrap();
    assert_eq!(
        c.call::<_, MemberListResponse>(follower, Method::ClusterMemberPromote, &promote).err(),
        Some(EtcdError::NotLeader)
    );
    let _: MemberListResponse = c.call(leader, Method::ClusterMemberPromote, &promote).unwrap();
    wait_for("the learner to be a voter", || c.stat(new_id, "is_learner") == 0);
    assert_eq!(c.get(new_id, "key5", false).unwrap().as_deref(), Some("v5"));

    let removed: MemberRemoveResponse =
        c.call(leader, Method::ClusterMemberRemove, &MemberRemoveRequest { id: follower }).unwrap();
    assert_eq!(removed.members.len(), 3);
    wait_for("the removed member to learn it", || c.stat(follower, "removed") == 1);
    assert_eq!(
        c.call::<_, MemberRemoveResponse>(leader, Method::ClusterMemberRemove, &MemberRemoveRequest { id: follower })
            .err(),
        Some(EtcdError::MemberNotFound)
    );
    c.kill(follower);
    c.put(new_id, "after", "removal").unwrap();
    assert_eq!(c.get(leader, "after", false).unwrap().as_deref(), Some("removal"));
}

#[test]
fn a_lease_outlives_its_leader_and_then_expires_on_the_next() {
    use ketch::pb::etcdserverpb::{LeaseGrantRequest, LeaseGrantResponse};
    let c = Cluster::start(&[1, 2, 3], 100_000);
    let leader = c.leader();
    let grant: LeaseGrantResponse = c.call(leader, Method::LeaseGrant, &LeaseGrantRequest { ttl: 3, id: 0 }).unwrap();
    let put = PutRequest { key: "owned".into(), value: "x".into(), lease: grant.id, ..Default::default() };
    let _: PutResponse = c.call(leader, Method::KvPut, &put).unwrap();
    c.kill(leader);
    let next = c.leader();
    // The new leader took the lease over (etcd's promote: every lease gets
    // at least its TTL again), so the key is still there ...
    assert_eq!(c.get(next, "owned", false).unwrap().as_deref(), Some("x"));
    // ... until nobody keeps it alive: the new leader revokes it through the
    // log, and every member deletes the key.
    wait_for("the lease to expire under the new leader", || c.get(next, "owned", false).unwrap().is_none());
    let other = [1, 2, 3].into_iter().find(|&i| i != leader && i != next).unwrap();
    assert!(c.get(other, "owned", false).unwrap().is_none());
}

#[test]
fn linearizable_reads_from_every_member_at_once_are_all_answered() {
    let c = Cluster::start(&[1, 2, 3], 100_000);
    c.leader();
    c.put(1, "k", "v").unwrap();
    // Every member's first reads carry the same counters; the leader must
    // still tell them apart (it drops a ReadIndex whose context it holds).
    let engines: Vec<Arc<Engine>> = [1, 2, 3].into_iter().map(|id| c.engine(id)).collect();
    let req = RangeRequest { key: "k".into(), ..Default::default() }.encode_to_vec();
    for round in 0..20u64 {
        for e in &engines {
            e.submit(Method::KvRange as u32, Bytes::from(req.clone()), 1000 + round);
        }
    }
    for e in &engines {
        let mut answered = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while answered < 20 {
            for done in e.completions().take() {
                let resp = RangeResponse::decode(done.result.expect("read answered").as_slice()).unwrap();
                assert_eq!(resp.kvs.len(), 1);
                answered += 1;
            }
            assert!(Instant::now() < deadline, "only {answered} of 20 reads answered");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
