//! WatchHub against a real store: what each stream receives, response by response.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use prost::Message;
use tempfile::TempDir;

use super::*;
use crate::mvcc::{LeaseCheck, Store, StoreOptions, WriteBatch};
use crate::pb::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, PutRequest, WatchCancelRequest, WatchProgressRequest,
};

struct NoLeases;
impl LeaseCheck for NoLeases {
    fn lease_exists(&self, _: i64) -> bool {
        false
    }
}

struct Ctx {
    _dir: TempDir,
    store: Store,
    out: Mutex<Vec<(u64, Vec<u8>)>>,
}

impl WatchCtx for Ctx {
    fn store(&self) -> &Store {
        &self.store
    }
    fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader { revision, ..Default::default() }
    }
    fn send(&self, out: Vec<(u64, Vec<u8>)>) {
        self.out.lock().extend(out);
    }
}

fn setup(limits: Limits) -> (Arc<Ctx>, WatchHub) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db"), StoreOptions::default()).unwrap();
    let hub = WatchHub::new(store.current_revision(), limits);
    (Arc::new(Ctx { _dir: dir, store, out: Mutex::new(Vec::new()) }), hub)
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// One apply batch: the writes, commit, then notify (as the node does).
fn write(ctx: &Ctx, hub: &WatchHub, f: impl FnOnce(&mut WriteBatch<'_>)) {
    let mut batch = ctx.store.write_batch().unwrap();
    f(&mut batch);
    let events = batch.take_events();
    batch.commit(false).unwrap();
    hub.notify(ctx, &events);
}

fn put(ctx: &Ctx, hub: &WatchHub, k: &str, v: &str) {
    write(ctx, hub, |w| {
        w.put(&PutRequest { key: b(k), value: b(v), ..Default::default() }, &NoLeases).unwrap();
    });
}

fn del(ctx: &Ctx, hub: &WatchHub, k: &str, end: &str) {
    write(ctx, hub, |w| {
        w.delete_range(&DeleteRangeRequest { key: b(k), range_end: b(end), ..Default::default() }).unwrap();
    });
}

fn create(hub: &WatchHub, ctx: &Ctx, stream: u64, c: WatchCreateRequest) {
    let req = WatchRequest { request_union: Some(RequestUnion::CreateRequest(c)) };
    hub.request(ctx, stream, &req.encode_to_vec()).unwrap();
}

fn watch_req(key: &str, end: &str, start: i64) -> WatchCreateRequest {
    WatchCreateRequest { key: b(key), range_end: b(end), start_revision: start, ..Default::default() }
}

/// Everything sent so far, decoded, with its token.
fn take(ctx: &Ctx) -> Vec<(u64, WatchResponse)> {
    std::mem::take(&mut *ctx.out.lock())
        .into_iter()
        .map(|(t, bytes)| (t, WatchResponse::decode(&bytes[..]).unwrap()))
        .collect()
}

/// (type, key, mod_revision) of each event, for compact asserts.
fn evs(r: &WatchResponse) -> Vec<(i32, String, i64)> {
    r.events
        .iter()
        .map(|e| {
            let kv = e.kv.as_ref().unwrap();
            (e.r#type, String::from_utf8_lossy(&kv.key).into_owned(), kv.mod_revision)
        })
        .collect()
}

const PUT: i32 = EventType::Put as i32;
const DEL: i32 = EventType::Delete as i32;

/// Revisions of every event a watcher got, in arrival order.
fn revs_of(resps: &[(u64, WatchResponse)], watch_id: i64) -> Vec<i64> {
    resps
        .iter()
        .filter(|(_, r)| r.watch_id == watch_id)
        .flat_map(|(_, r)| r.events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision))
        .collect()
}

#[test]
fn watch_live_single_prefix_and_from_key() {
    let (ctx, hub) = setup(Limits::default());
    let s = 7;
    hub.open_stream(s);
    create(&hub, &ctx, s, watch_req("a", "", 0)); // id 0
    create(&hub, &ctx, s, watch_req("a", "b", 0)); // id 1: prefix "a"
    create(&hub, &ctx, s, watch_req("b", "\0", 0)); // id 2: from "b"
    create(&hub, &ctx, s, watch_req("", "\0", 0)); // id 3: everything
    let created = take(&ctx);
    assert_eq!(created.len(), 4);
    for (i, (token, r)) in created.iter().enumerate() {
        assert_eq!(*token, 7);
        assert!(r.created && !r.canceled);
        assert_eq!(r.watch_id, i as i64);
        assert_eq!(r.header.as_ref().unwrap().revision, 1);
    }
    put(&ctx, &hub, "a", "1"); // rev 2
    put(&ctx, &hub, "ab", "1"); // rev 3
    put(&ctx, &hub, "c", "1"); // rev 4
    del(&ctx, &hub, "a", "b"); // rev 5: deletes a and ab
    let got = take(&ctx);
    let by = |id: i64| -> Vec<Vec<(i32, String, i64)>> {
        got.iter().filter(|(_, r)| r.watch_id == id).map(|(_, r)| evs(r)).collect()
    };
    let s = |k: &str| k.to_owned();
    assert_eq!(by(0), vec![vec![(PUT, s("a"), 2)], vec![(DEL, s("a"), 5)]]);
    assert_eq!(by(1), vec![vec![(PUT, s("a"), 2)], vec![(PUT, s("ab"), 3)], vec![(DEL, s("a"), 5), (DEL, s("ab"), 5)]]);
    assert_eq!(by(2), vec![vec![(PUT, s("c"), 4)]]);
    assert_eq!(by(3).len(), 4, "one response per revision");
    assert_eq!(by(3)[3].len(), 2, "a revision's events arrive together");
    for (_, r) in &got {
        let rev = r.events[0].kv.as_ref().unwrap().mod_revision;
        assert_eq!(r.header.as_ref().unwrap().revision, rev);
    }
}

#[test]
fn watch_ids_duplicates_empty_range_and_cancel() {
    let (ctx, hub) = setup(Limits::default());
    let s = 1;
    hub.open_stream(s);
    create(&hub, &ctx, s, WatchCreateRequest { watch_id: 1, ..watch_req("k", "", 0) });
    create(&hub, &ctx, s, watch_req("k", "", 0)); // auto: 0
    create(&hub, &ctx, s, watch_req("k", "", 0)); // auto: 2 (1 is taken)
    create(&hub, &ctx, s, WatchCreateRequest { watch_id: 2, ..watch_req("k", "", 0) });
    create(&hub, &ctx, s, watch_req("b", "a", 0));
    let r = take(&ctx);
    let ids: Vec<i64> = r.iter().map(|(_, r)| r.watch_id).collect();
    assert_eq!(ids, vec![1, 0, 2, -1, -1]);
    assert!(r[3].1.canceled && r[3].1.created);
    assert_eq!(r[3].1.cancel_reason, "mvcc: duplicate watch ID provided on the WatchStream");
    assert_eq!(r[4].1.cancel_reason, "mvcc: watcher range is empty");

    let cancel =
        |id| WatchRequest { request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest { watch_id: id })) };
    hub.request(&*ctx, s, &cancel(0).encode_to_vec()).unwrap();
    hub.request(&*ctx, s, &cancel(42).encode_to_vec()).unwrap(); // unknown: no answer, as etcd
    let r = take(&ctx);
    assert_eq!(r.len(), 1);
    assert!(r[0].1.canceled && !r[0].1.created && r[0].1.watch_id == 0);
    put(&ctx, &hub, "k", "v");
    let r = take(&ctx);
    assert_eq!(r.iter().map(|(_, r)| r.watch_id).collect::<Vec<_>>(), vec![1, 2]);
    // Another stream's ids are its own.
    let s2 = 2;
    hub.open_stream(s2);
    create(&hub, &ctx, s2, watch_req("k", "", 0));
    assert_eq!(take(&ctx)[0].1.watch_id, 0);
    assert!(hub.request(&*ctx, s2, b"\xff\xff").is_err());
    hub.close_stream(s);
    hub.close_stream(s2);
    assert_eq!(hub.counts(), (0, 0));
}

#[test]
fn watch_filters_and_prev_kv() {
    let (ctx, hub) = setup(Limits::default());
    let s = 1;
    hub.open_stream(s);
    create(&hub, &ctx, s, WatchCreateRequest { filters: vec![FilterType::Noput as i32], ..watch_req("k", "", 0) });
    create(&hub, &ctx, s, WatchCreateRequest { filters: vec![FilterType::Nodelete as i32], ..watch_req("k", "", 0) });
    create(&hub, &ctx, s, WatchCreateRequest { prev_kv: true, ..watch_req("k", "", 0) });
    take(&ctx);
    put(&ctx, &hub, "k", "1");
    put(&ctx, &hub, "k", "2");
    del(&ctx, &hub, "k", "");
    let r = take(&ctx);
    assert_eq!(revs_of(&r, 0), vec![4], "NOPUT sees only the delete");
    assert_eq!(revs_of(&r, 1), vec![2, 3], "NODELETE sees only puts");
    let prevs: Vec<Option<String>> = r
        .iter()
        .filter(|(_, r)| r.watch_id == 2)
        .map(|(_, r)| r.events[0].prev_kv.as_ref().map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
        .collect();
    assert_eq!(prevs, vec![None, Some("1".into()), Some("2".into())], "no prev_kv for a create");
}

#[test]
fn watch_history_then_live_while_writes_race() {
    let (ctx, hub) = setup(Limits { window_revs: 7, ..Limits::default() });
    let hub = Arc::new(hub);
    for i in 0..200 {
        put(&ctx, &hub, &format!("k{}", i % 5), "v");
    }
    let s = 1;
    hub.open_stream(s);
    create(&hub, &ctx, s, watch_req("k", "l", 2));
    create(&hub, &ctx, s, watch_req("k3", "", 50));
    assert_eq!(hub.counts(), (0, 2));
    // A writer keeps committing while the watchers are caught up.
    let writer = {
        let (ctx, hub) = (ctx.clone(), hub.clone());
        std::thread::spawn(move || {
            for i in 0..300 {
                put(&ctx, &hub, &format!("k{}", i % 5), "w");
            }
        })
    };
    while hub.sync_once(&*ctx) > 0 || !writer.is_finished() {
        hub.ack(s, usize::MAX);
    }
    writer.join().unwrap();
    hub.sync_once(&*ctx);
    assert_eq!(hub.counts(), (2, 0));
    let r = take(&ctx);
    assert_eq!(revs_of(&r, 0), (2..=501).collect::<Vec<_>>(), "no gap, no duplicate");
    let want3: Vec<i64> = (50..=501).filter(|rev| (rev - 2) % 5 == 3).collect();
    assert_eq!(revs_of(&r, 1), want3);
}

#[test]
fn watch_future_start_revision_waits() {
    let (ctx, hub) = setup(Limits::default());
    let s = 1;
    hub.open_stream(s);
    create(&hub, &ctx, s, watch_req("k", "", 4));
    let r = take(&ctx);
    assert!(r[0].1.created);
    assert_eq!(r[0].1.header.as_ref().unwrap().revision, 1);
    for _ in 0..5 {
        put(&ctx, &hub, "k", "v");
    }
    assert_eq!(revs_of(&take(&ctx), 0), vec![4, 5, 6]);
}

#[test]
fn watch_stalled_stream_becomes_victim_then_catches_up() {
    let limits = Limits { max_unacked: 10, ..Limits::default() };
    let (ctx, hub) = setup(limits);
    let slow = 1;
    hub.open_stream(slow);
    let fast = 2;
    hub.open_stream(fast);
    create(&hub, &ctx, slow, watch_req("k", "", 0));
    create(&hub, &ctx, fast, watch_req("k", "", 0));
    for _ in 0..100 {
        put(&ctx, &hub, "k", "v");
        hub.ack(fast, usize::MAX); // the fast client reads everything
    }
    let r = take(&ctx);
    let slow_got: Vec<_> = r.iter().filter(|(t, _)| *t == 1).collect();
    assert_eq!(slow_got.len(), 11, "created + 10 events: past the bound of 10, then nothing");
    assert_eq!(revs_of(&r, 0).len(), 100 + 10, "the fast stream got all 100");
    assert_eq!(hub.counts(), (1, 1), "the slow watcher is a victim");
    assert_eq!(hub.sync_once(&*ctx), 0, "a blocked stream is not caught up");
    assert!(take(&ctx).is_empty());
    hub.ack(slow, 11); // the client reads again
    while hub.sync_once(&*ctx) > 0 {}
    let r2 = take(&ctx);
    assert_eq!(hub.counts(), (2, 0));
    let mut all = r.into_iter().filter(|(t, _)| *t == 1).collect::<Vec<_>>();
    all.extend(r2);
    assert_eq!(revs_of(&all, 0), (2..=101).collect::<Vec<_>>(), "no gap, no duplicate");
}

#[test]
fn watch_compaction_cancels_an_unsynced_watcher() {
    let limits = Limits { max_unacked: 2, ..Limits::default() };
    let (ctx, hub) = setup(limits);
    for _ in 0..10 {
        put(&ctx, &hub, "k", "v");
    }
    write(&ctx, &hub, |w| {
        w.compact(&CompactionRequest { revision: 8, physical: false }).unwrap();
    });
    let s = 1;
    hub.open_stream(s);
    create(&hub, &ctx, s, watch_req("k", "", 5));
    create(&hub, &ctx, s, watch_req("k", "", 8));
    hub.ack(s, 2);
    while hub.sync_once(&*ctx) > 0 {
        hub.ack(s, usize::MAX);
    }
    let r = take(&ctx);
    let cancel = r.iter().find(|(_, r)| r.watch_id == 0 && r.canceled).expect("canceled");
    assert_eq!(cancel.1.compact_revision, 8);
    assert!(cancel.1.events.is_empty());
    assert_eq!(revs_of(&r, 1), vec![8, 9, 10, 11]);
    assert_eq!(hub.counts(), (1, 0));
    // A victim that compaction passes is canceled too.
    create(&hub, &ctx, s, watch_req("k", "", 0));
    take(&ctx);
    for _ in 0..5 {
        put(&ctx, &hub, "k", "v");
    }
    assert_eq!(hub.counts().1, 2, "both watchers fell behind");
    write(&ctx, &hub, |w| {
        w.compact(&CompactionRequest { revision: 15, physical: false }).unwrap();
    });
    hub.ack(s, usize::MAX);
    hub.sync_once(&*ctx);
    let r = take(&ctx);
    assert_eq!(r.iter().filter(|(_, r)| r.canceled && r.compact_revision == 15).count(), 2);
    assert_eq!(hub.counts(), (0, 0));
}

#[test]
fn watch_fragments_large_responses_for_watchers_that_ask() {
    let limits = Limits { max_request_bytes: 300, ..Limits::default() };
    let (ctx, hub) = setup(limits);
    let s = 1;
    hub.open_stream(s);
    create(&hub, &ctx, s, WatchCreateRequest { fragment: true, ..watch_req("k", "l", 0) });
    create(&hub, &ctx, s, watch_req("k", "l", 0));
    take(&ctx);
    let big = "x".repeat(100);
    write(&ctx, &hub, |w| {
        let ops = (0..10)
            .map(|i| crate::pb::etcdserverpb::RequestOp {
                request: Some(crate::pb::etcdserverpb::request_op::Request::RequestPut(PutRequest {
                    key: b(&format!("k{i}")),
                    value: b(&big),
                    ..Default::default()
                })),
            })
            .collect();
        w.txn(&crate::pb::etcdserverpb::TxnRequest { success: ops, ..Default::default() }, &NoLeases).unwrap();
    });
    let r = take(&ctx);
    let frag: Vec<_> = r.iter().filter(|(_, r)| r.watch_id == 0).map(|(_, r)| r).collect();
    assert!(frag.len() > 1);
    assert!(frag[..frag.len() - 1].iter().all(|r| r.fragment));
    assert!(!frag.last().unwrap().fragment);
    assert_eq!(frag.iter().map(|r| r.events.len()).sum::<usize>(), 10);
    let whole: Vec<_> = r.iter().filter(|(_, r)| r.watch_id == 1).collect();
    assert_eq!(whole.len(), 1);
    assert_eq!(whole[0].1.events.len(), 10);
}

#[test]
fn watch_progress_request_waits_for_sync_and_ticks() {
    let (ctx, hub) = setup(Limits::default());
    for _ in 0..3 {
        put(&ctx, &hub, "k", "v");
    }
    let s = 1;
    hub.open_stream(s);
    create(&hub, &ctx, s, WatchCreateRequest { progress_notify: true, ..watch_req("k", "", 2) });
    let progress = WatchRequest { request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})) };
    hub.request(&*ctx, s, &progress.encode_to_vec()).unwrap();
    assert_eq!(take(&ctx).len(), 1, "only created: the watcher is not synced yet");
    hub.sync_once(&*ctx);
    let r = take(&ctx);
    assert_eq!(revs_of(&r, 0), vec![2, 3, 4]);
    let p = r.last().unwrap();
    assert_eq!((p.1.watch_id, p.1.header.as_ref().unwrap().revision), (-1, 4));
    assert!(p.1.events.is_empty());
    // Ticks: events since the last tick elide one notification.
    hub.set_progress_interval(Duration::from_millis(1));
    let later = Instant::now() + Duration::from_secs(1);
    hub.progress_tick(&*ctx, later);
    assert!(take(&ctx).is_empty(), "events were sent since the last tick");
    hub.progress_tick(&*ctx, later + Duration::from_secs(1));
    let r = take(&ctx);
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].1.watch_id, r[0].1.header.as_ref().unwrap().revision), (0, 4));
}

#[test]
fn watch_many_watchers_see_their_events_in_order() {
    let (ctx, hub) = setup(Limits { max_unacked: usize::MAX, max_unacked_bytes: usize::MAX, ..Limits::default() });
    let streams: Vec<u64> = (0..4).collect();
    for &t in &streams {
        hub.open_stream(t);
    }
    for i in 0..1000 {
        create(&hub, &ctx, streams[i % 4], watch_req(&format!("key{i:04}"), "", 0));
    }
    create(&hub, &ctx, streams[0], watch_req("key", "kez", 0));
    take(&ctx);
    for round in 0..5 {
        write(&ctx, &hub, |w| {
            for i in 0..1000 {
                let key = format!("key{:04}", (i * 7 + round) % 1000);
                w.put(&PutRequest { key: b(&key), value: b("v"), ..Default::default() }, &NoLeases).unwrap();
            }
        });
    }
    let r = take(&ctx);
    assert_eq!(r.len(), 5000 + 5000);
    assert_eq!(hub.counts(), (1001, 0));
    let prefix = revs_of(&r.iter().filter(|(t, _)| *t == 0).cloned().collect::<Vec<_>>(), 250);
    assert_eq!(prefix, (2..=5001).collect::<Vec<_>>());
}

#[test]
fn watch_store_history_reads_puts_and_tombstones() {
    let (ctx, hub) = setup(Limits::default());
    put(&ctx, &hub, "a", "1");
    put(&ctx, &hub, "b", "1");
    del(&ctx, &hub, "a", "");
    let h = ctx.store.events(2, 4).unwrap();
    let got: Vec<_> = h.iter().map(|e| (e.r#type, e.kv.as_ref().unwrap().mod_revision)).collect();
    assert_eq!(got, vec![(PUT, 2), (PUT, 3), (DEL, 4)]);
    assert_eq!(ctx.store.events(3, 3).unwrap().len(), 1);
    write(&ctx, &hub, |w| {
        w.compact(&CompactionRequest { revision: 3, physical: false }).unwrap();
    });
    assert_eq!(ctx.store.events(2, 4), Err(EtcdError::Compacted));
    assert_eq!(ctx.store.events(3, 4).unwrap().len(), 2);
}
