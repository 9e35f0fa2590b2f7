//! etcd's Watch: many watchers per gRPC stream, fed from the apply path
//! (live) or from MVCC history (catch-up), never blocking a write.
//!
//! ```text
//!  node thread, after a batch commits        Python (grpc.aio), per stream
//!  notify(events) ──► synced group ──┐        request(bytes): create / cancel / progress
//!                     (by key)       │        ack(n): n responses handed to gRPC
//!                                    ▼
//!                      WatchResponse bytes ──► CompletionQueue under the stream's token
//!                                    ▲
//!  watch worker thread: unsynced ────┘  reads history (Store::events) outside
//!   (start rev in the past, victims)    the hub lock, delivers and promotes under it
//! ```
//!
//! # Synced and unsynced (etcd's watchableStore)
//!
//! A watcher is **synced** when everything up to the last notified revision
//! `last_rev` has been sent to it: `notify` then hands it each new revision as
//! one response. It is **unsynced** when it still needs revisions
//! `min_rev..=last_rev`: a new watcher with a start revision in the past, or a
//! *victim* whose stream had too many unacknowledged responses. The worker
//! thread reads history for unsynced watchers in windows of at most
//! [`Limits::window_revs`] revisions, and, under the hub lock, promotes a
//! watcher to synced only once its `min_rev == last_rev + 1`. Every move
//! between the groups happens under that lock, and every response is pushed
//! under it too, so a watcher sees each revision exactly once and in order.
//!
//! # Flow control
//!
//! Each stream counts responses pushed but not yet acknowledged by Python.
//! Past [`Limits::max_unacked`] (or `max_unacked_bytes`) the stream is
//! *blocked*: a live event for one of its watchers makes that watcher a
//! victim (unsynced, `min_rev` = the revision it missed) instead of queueing
//! more, and the worker skips its watchers. Acks below half the bound unblock
//! it and the worker catches the victims up from history, or cancels them
//! with `compact_revision` if compaction passed them meanwhile. So a client
//! that stops reading holds at most one bound's worth of responses in memory
//! and never slows the node thread.

mod group;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use prost::Message;

use group::Group;
pub use group::KeyRange;

use crate::error::EtcdError;
use crate::mvcc::Store;
use crate::pb::etcdserverpb::{
    watch_create_request::FilterType, watch_request::RequestUnion, RangeRequest, ResponseHeader, WatchCreateRequest,
    WatchRequest, WatchResponse,
};
use crate::pb::mvccpb::{event::EventType, Event, KeyValue};

/// clientv3.InvalidWatchID: the id of responses that belong to no watcher.
pub const INVALID_WATCH_ID: i64 = -1;
/// etcd's default --experimental-watch-progress-notify-interval.
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_mins(10);

// etcd's words (mvcc/watcher.go).
const ERR_EMPTY_RANGE: &str = "mvcc: watcher range is empty";
const ERR_DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";

/// What the hub needs from the engine around it. `Shared` implements it;
/// tests pass a store and a recording sink.
pub trait WatchCtx {
    fn store(&self) -> &Store;
    /// A header as etcd fills it (cluster, member, term) at `revision`.
    fn header(&self, revision: i64) -> ResponseHeader;
    /// Delivers encoded responses, each under its stream's token, in order.
    /// Called with the hub lock held, so it must not call back into the hub.
    fn send(&self, out: Vec<(u64, Vec<u8>)>);
}

/// Bounds; the defaults are etcd's where etcd has one.
#[derive(Clone, Debug)]
pub struct Limits {
    /// A stream with more unacknowledged responses than this is blocked.
    pub max_unacked: usize,
    pub max_unacked_bytes: usize,
    /// Most revisions read from history (and sent in one response) per
    /// catch-up round (etcd's watchBatchMaxRevs).
    pub window_revs: i64,
    /// Most unsynced watchers caught up per round (etcd's maxWatchersPerSync).
    pub watchers_per_sync: usize,
    /// Fragmenting watchers split responses at this size (--max-request-bytes).
    pub max_request_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_unacked: 2048,
            max_unacked_bytes: 8 << 20,
            window_revs: 1000,
            watchers_per_sync: 512,
            max_request_bytes: 1536 * 1024,
        }
    }
}

struct Watcher {
    stream: u64,
    id: i64,
    range: KeyRange,
    /// The next revision this watcher needs.
    min_rev: i64,
    synced: bool,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    fragment: bool,
    progress_notify: bool,
    /// No events were sent since the last progress tick (etcd elides the
    /// progress notification otherwise).
    progress_due: bool,
}

struct Stream {
    token: u64,
    next_id: i64,
    /// watch id → hub-wide watcher key
    ids: HashMap<i64, u64>,
    /// Sizes of the responses pushed and not yet acknowledged, oldest first.
    unacked: VecDeque<usize>,
    unacked_bytes: usize,
    blocked: bool,
    /// A WatchProgressRequest waits until every watcher of the stream is synced.
    progress_pending: bool,
    next_progress: Instant,
}

struct Inner {
    /// The last revision handed to `notify`: synced watchers have everything up to it.
    last_rev: i64,
    streams: HashMap<u64, Stream>,
    watchers: HashMap<u64, Watcher>,
    synced: Group,
    unsynced: BTreeSet<u64>,
    next_watcher: u64,
    /// Work for the worker: set with the condvar, cleared when it looks.
    dirty: bool,
    stopped: bool,
}

/// Every watch stream of one engine. See the module doc.
pub struct WatchHub {
    inner: Mutex<Inner>,
    wake: Condvar,
    limits: Limits,
    progress_interval_ms: AtomicU64,
}

/// A response being built for one stream, before it is encoded.
struct Out<'a> {
    items: &'a mut Vec<(u64, Vec<u8>)>,
    max_request_bytes: usize,
    limits: &'a Limits,
}

impl Out<'_> {
    /// Encodes (fragmenting if asked, as etcd's sendFragments) and counts it
    /// against the stream's bound.
    fn push(&mut self, stream: &mut Stream, resp: WatchResponse, fragment: bool) {
        let mut push_one = |r: &WatchResponse| {
            crate::metrics::WATCH_EVENTS.add(r.events.len() as u64);
            let bytes = r.encode_to_vec();
            stream.unacked_bytes += bytes.len();
            stream.unacked.push_back(bytes.len());
            self.items.push((stream.token, bytes));
        };
        if !fragment || resp.events.len() < 2 || resp.encoded_len() < self.max_request_bytes {
            push_one(&resp);
        } else {
            let mut events = resp.events.into_iter().peekable();
            let base = WatchResponse { events: Vec::new(), fragment: true, ..resp };
            while events.peek().is_some() {
                let mut cur = base.clone();
                while let Some(ev) = events.peek() {
                    cur.events.push(ev.clone());
                    if cur.events.len() > 1 && cur.encoded_len() >= self.max_request_bytes {
                        cur.events.pop();
                        break;
                    }
                    events.next();
                }
                cur.fragment = events.peek().is_some();
                push_one(&cur);
            }
        }
        if stream.unacked.len() > self.limits.max_unacked || stream.unacked_bytes > self.limits.max_unacked_bytes {
            stream.blocked = true;
        }
    }
}

impl WatchHub {
    /// A hub whose store is at `current_rev`.
    pub fn new(current_rev: i64, limits: Limits) -> WatchHub {
        WatchHub {
            inner: Mutex::new(Inner {
                last_rev: current_rev,
                streams: HashMap::new(),
                watchers: HashMap::new(),
                synced: Group::default(),
                unsynced: BTreeSet::new(),
                next_watcher: 1,
                dirty: false,
                stopped: false,
            }),
            wake: Condvar::new(),
            limits,
            progress_interval_ms: AtomicU64::new(DEFAULT_PROGRESS_INTERVAL.as_millis() as u64),
        }
    }

    /// etcd's --experimental-watch-progress-notify-interval.
    pub fn set_progress_interval(&self, interval: Duration) {
        let ms = (interval.as_millis() as u64).max(1);
        self.progress_interval_ms.store(ms, Ordering::Release);
        let now = Instant::now();
        let mut inner = self.inner.lock();
        for s in inner.streams.values_mut() {
            s.next_progress = now + interval;
        }
        self.poke(&mut inner);
    }

    fn progress_interval(&self) -> Duration {
        Duration::from_millis(self.progress_interval_ms.load(Ordering::Acquire))
    }

    /// A new stream named by `token`; its responses go out under it.
    /// Opening a token already open starts that stream afresh.
    pub fn open_stream(&self, token: u64) {
        self.close_stream(token);
        let mut inner = self.inner.lock();
        let id = token;
        inner.streams.insert(
            id,
            Stream {
                token,
                next_id: 0,
                ids: HashMap::new(),
                unacked: VecDeque::new(),
                unacked_bytes: 0,
                blocked: false,
                progress_pending: false,
                next_progress: Instant::now() + self.progress_interval(),
            },
        );
    }

    /// Drops a stream and all its watchers. Unknown ids are ignored.
    pub fn close_stream(&self, stream: u64) {
        let mut inner = self.inner.lock();
        let Some(s) = inner.streams.remove(&stream) else { return };
        for key in s.ids.into_values() {
            inner.remove_watcher(key);
        }
    }

    /// How many streams are open (for stats and tests).
    pub fn stream_count(&self) -> usize {
        self.inner.lock().streams.len()
    }

    /// The front door has handed `n` more responses of the stream to gRPC.
    pub fn ack(&self, stream: u64, n: usize) {
        let mut inner = self.inner.lock();
        let Some(s) = inner.streams.get_mut(&stream) else { return };
        for _ in 0..n {
            match s.unacked.pop_front() {
                Some(len) => s.unacked_bytes -= len,
                None => break,
            }
        }
        if s.blocked
            && s.unacked.len() <= self.limits.max_unacked / 2
            && s.unacked_bytes <= self.limits.max_unacked_bytes / 2
        {
            s.blocked = false;
            self.poke(&mut inner);
        }
    }

    /// One WatchRequest from the client, as bytes. Its answers (created,
    /// canceled, progress) are sent through `ctx` in stream order.
    pub fn request(&self, ctx: &dyn WatchCtx, stream: u64, request: &[u8]) -> Result<(), EtcdError> {
        self.request_as(ctx, stream, request, &|_, _| true)
    }

    /// [`WatchHub::request`] from a caller who may read only what `permitted` allows.
    pub fn request_as(
        &self,
        ctx: &dyn WatchCtx,
        stream: u64,
        request: &[u8],
        permitted: &dyn Fn(&[u8], &[u8]) -> bool,
    ) -> Result<(), EtcdError> {
        let req = WatchRequest::decode(request).map_err(|e| EtcdError::BadRequest(e.to_string()))?;
        let mut items = Vec::new();
        let mut inner = self.inner.lock();
        if !inner.streams.contains_key(&stream) {
            return Ok(());
        }
        match req.request_union {
            Some(RequestUnion::CreateRequest(c)) if !permitted(&c.key, &c.range_end) => {
                // etcd's answer: created and canceled at once, no watcher;
                // the reason is the gRPC status's text, as grpc-go prints it.
                let resp = WatchResponse {
                    header: Some(ctx.header(inner.last_rev)),
                    watch_id: INVALID_WATCH_ID,
                    created: true,
                    canceled: true,
                    cancel_reason: format!("rpc error: code = PermissionDenied desc = {}", EtcdError::PermissionDenied),
                    ..Default::default()
                };
                self.out(&mut items).push(inner.streams.get_mut(&stream).unwrap(), resp, false);
            }
            Some(RequestUnion::CreateRequest(c)) => self.create(ctx, &mut inner, stream, c, &mut items),
            Some(RequestUnion::CancelRequest(c)) => {
                let key = inner.streams[&stream].ids.get(&c.watch_id).copied();
                if let Some(key) = key {
                    inner.remove_watcher(key);
                    let resp = WatchResponse {
                        header: Some(ctx.header(inner.last_rev)),
                        watch_id: c.watch_id,
                        canceled: true,
                        ..Default::default()
                    };
                    self.out(&mut items).push(inner.streams.get_mut(&stream).unwrap(), resp, false);
                }
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                inner.streams.get_mut(&stream).unwrap().progress_pending = true;
                self.answer_progress_requests(ctx, &mut inner, Some(stream), &mut items);
            }
            None => {}
        }
        if !items.is_empty() {
            ctx.send(items);
        }
        Ok(())
    }

    fn out<'a>(&'a self, items: &'a mut Vec<(u64, Vec<u8>)>) -> Out<'a> {
        Out { items, max_request_bytes: self.limits.max_request_bytes, limits: &self.limits }
    }

    /// etcd's recvLoop create + watchStream.Watch + watchableStore.watch.
    fn create(
        &self,
        ctx: &dyn WatchCtx,
        inner: &mut Inner,
        stream: u64,
        c: WatchCreateRequest,
        items: &mut Vec<(u64, Vec<u8>)>,
    ) {
        let range = KeyRange::new(c.key, c.range_end);
        let rev = inner.last_rev;
        let key = inner.next_watcher;
        inner.next_watcher += 1;
        let s = inner.streams.get_mut(&stream).expect("checked by the caller");
        let refused = |reason: &str| WatchResponse {
            header: Some(ctx.header(rev)),
            watch_id: INVALID_WATCH_ID,
            created: true,
            canceled: true,
            cancel_reason: reason.to_owned(),
            ..Default::default()
        };
        if range.is_empty() {
            self.out(items).push(s, refused(ERR_EMPTY_RANGE), false);
            return;
        }
        let id = if c.watch_id == 0 {
            // clientv3.AutoWatchID: the next id not taken.
            while s.ids.contains_key(&s.next_id) {
                s.next_id += 1;
            }
            s.next_id += 1;
            s.next_id - 1
        } else if s.ids.contains_key(&c.watch_id) {
            self.out(items).push(s, refused(ERR_DUPLICATE_ID), false);
            return;
        } else {
            c.watch_id
        };
        let start = if c.start_revision == 0 { rev + 1 } else { c.start_revision };
        // Synced when nothing it asks for has happened yet (a future start
        // revision waits there until the store reaches it, as in etcd).
        let synced = start > rev;
        let mut w = Watcher {
            stream,
            id,
            range,
            min_rev: start,
            synced,
            prev_kv: c.prev_kv,
            no_put: false,
            no_delete: false,
            fragment: c.fragment,
            progress_notify: c.progress_notify,
            progress_due: true,
        };
        for f in c.filters {
            match FilterType::try_from(f) {
                Ok(FilterType::Noput) => w.no_put = true,
                Ok(FilterType::Nodelete) => w.no_delete = true,
                Err(_) => {}
            }
        }
        s.ids.insert(id, key);
        // Announced before any event can be queued for it: same lock, same order.
        let created =
            WatchResponse { header: Some(ctx.header(rev)), watch_id: id, created: true, ..Default::default() };
        self.out(items).push(s, created, false);
        if synced {
            inner.synced.add(key, &w.range);
        } else {
            inner.unsynced.insert(key);
            self.poke(inner);
        }
        inner.watchers.insert(key, w);
    }

    /// Events of newly committed revisions, in revision order (several
    /// revisions when one apply batch held several writes). Called by the
    /// node thread after the batch commits; costs a hash lookup per event
    /// plus the span stab, and an encode per watcher that matched.
    pub fn notify(&self, ctx: &dyn WatchCtx, events: &[Event]) {
        let Some(last) = events.last().and_then(|e| e.kv.as_ref()).map(|kv| kv.mod_revision) else {
            return;
        };
        let mut inner = self.inner.lock();
        if inner.synced.is_empty() {
            inner.last_rev = last;
            return;
        }
        let mut items = Vec::new();
        let mut matched: Vec<(u64, Vec<usize>)> = Vec::new();
        let mut slot: HashMap<u64, usize> = HashMap::new();
        let mut start = 0;
        while start < events.len() {
            let rev = rev_of(&events[start]);
            let end = start + events[start..].iter().take_while(|e| rev_of(e) == rev).count();
            matched.clear();
            slot.clear();
            for (i, ev) in events[start..end].iter().enumerate() {
                let key = &ev.kv.as_ref().expect("events carry a kv").key;
                inner.synced.for_each_matching(key, |w| {
                    let at = *slot.entry(w).or_insert_with(|| {
                        matched.push((w, Vec::new()));
                        matched.len() - 1
                    });
                    matched[at].1.push(start + i);
                });
            }
            let Inner { watchers, streams, synced, unsynced, dirty, .. } = &mut *inner;
            for (wkey, idx) in &matched {
                let w = watchers.get_mut(wkey).expect("a synced watcher exists");
                if w.min_rev > rev {
                    continue; // a future start revision not reached yet
                }
                let s = streams.get_mut(&w.stream).expect("a watcher's stream exists");
                if s.blocked {
                    // A victim: caught up from history once the client reads again.
                    synced.remove(*wkey, &w.range);
                    w.synced = false;
                    w.min_rev = rev;
                    unsynced.insert(*wkey);
                    *dirty = true;
                    continue;
                }
                let evs = Self::shape(ctx.store(), w, idx.iter().map(|&i| &events[i]));
                w.min_rev = rev + 1;
                if evs.is_empty() {
                    continue;
                }
                w.progress_due = false;
                let resp =
                    WatchResponse { header: Some(ctx.header(rev)), watch_id: w.id, events: evs, ..Default::default() };
                self.out(&mut items).push(s, resp, w.fragment);
            }
            inner.last_rev = rev;
            start = end;
        }
        if inner.dirty {
            self.wake.notify_one();
        }
        if !items.is_empty() {
            ctx.send(items);
        }
    }

    /// A watcher's view of some events: its filters applied, prev_kv looked
    /// up where it asked (etcd: range at mod_revision - 1, not for creates).
    fn shape<'e>(store: &Store, w: &Watcher, events: impl Iterator<Item = &'e Event>) -> Vec<Event> {
        let mut out = Vec::new();
        for ev in events {
            let put = ev.r#type == EventType::Put as i32;
            if (put && w.no_put) || (!put && w.no_delete) {
                continue;
            }
            let mut ev = ev.clone();
            if w.prev_kv {
                ev.prev_kv = prev_kv(store, &ev);
            }
            out.push(ev);
        }
        out
    }

    /// One catch-up round (etcd's syncWatchers): cancels watchers compaction
    /// passed, reads one window of history for up to `watchers_per_sync`
    /// unsynced watchers of unblocked streams, sends it, and promotes those
    /// that reached `last_rev`. Returns how many watchers are still unsynced
    /// on unblocked streams (work for another round).
    pub fn sync_once(&self, ctx: &dyn WatchCtx) -> usize {
        let mut items = Vec::new();
        // 1. Choose, under the lock.
        let (last, chosen, lo) = {
            let mut inner = self.inner.lock();
            inner.dirty = false;
            let last = inner.last_rev;
            let compact = ctx.store().compact_revision();
            let mut chosen = Vec::new();
            let mut compacted = Vec::new();
            let mut lo = i64::MAX;
            for &key in &inner.unsynced {
                if chosen.len() >= self.limits.watchers_per_sync {
                    break;
                }
                let w = &inner.watchers[&key];
                if inner.streams[&w.stream].blocked {
                    continue;
                }
                if w.min_rev < compact {
                    compacted.push(key);
                    continue;
                }
                lo = lo.min(w.min_rev);
                chosen.push((key, w.min_rev));
            }
            for key in compacted {
                let w = inner.remove_watcher(key).expect("listed just above");
                // etcd: canceled with the compact revision and an empty header revision.
                let resp = WatchResponse {
                    header: Some(ctx.header(0)),
                    watch_id: w.id,
                    canceled: true,
                    compact_revision: compact,
                    ..Default::default()
                };
                let s = inner.streams.get_mut(&w.stream).expect("a watcher's stream exists");
                self.out(&mut items).push(s, resp, false);
            }
            if !items.is_empty() {
                ctx.send(std::mem::take(&mut items));
            }
            (last, chosen, lo)
        };
        if chosen.is_empty() {
            return 0;
        }
        // 2. Read history without the lock: writes and other streams go on.
        let hi = last.min(lo.saturating_add(self.limits.window_revs - 1));
        let history = match ctx.store().events(lo, hi) {
            Ok(h) => h,
            // Compacted meanwhile: the next round cancels who needs it.
            Err(EtcdError::Compacted) => return chosen.len(),
            Err(e) => {
                crate::log_warn!("watch: reading history {lo}..={hi}: {e}");
                return 0;
            }
        };
        // 3. Deliver and promote, under the lock.
        let mut inner = self.inner.lock();
        let Inner { watchers, streams, synced, unsynced, last_rev, .. } = &mut *inner;
        for (key, min_rev) in chosen {
            let Some(w) = watchers.get_mut(&key) else { continue }; // canceled meanwhile
            if w.synced || w.min_rev != min_rev {
                continue;
            }
            let s = streams.get_mut(&w.stream).expect("a watcher's stream exists");
            if s.blocked {
                continue;
            }
            if min_rev <= hi {
                let evs = Self::shape(
                    ctx.store(),
                    w,
                    history.iter().filter(|e| {
                        let kv = e.kv.as_ref().expect("events carry a kv");
                        kv.mod_revision >= min_rev && w.range.contains(&kv.key)
                    }),
                );
                w.min_rev = hi + 1;
                if !evs.is_empty() {
                    w.progress_due = false;
                    let resp = WatchResponse {
                        header: Some(ctx.header(last)),
                        watch_id: w.id,
                        events: evs,
                        ..Default::default()
                    };
                    self.out(&mut items).push(s, resp, w.fragment);
                }
            }
            if w.min_rev == *last_rev + 1 {
                unsynced.remove(&key);
                w.synced = true;
                synced.add(key, &w.range);
            }
        }
        let remaining = unsynced.iter().filter(|k| !streams[&watchers[k].stream].blocked).count();
        self.answer_progress_requests(ctx, &mut inner, None, &mut items);
        if !items.is_empty() {
            ctx.send(items);
        }
        remaining
    }

    /// Answers WatchProgressRequests of `only` (or of every stream) whose
    /// watchers are all synced: the header revision then promises that every
    /// event up to it was sent (etcd 3.5's rule; 3.4 answered at once).
    fn answer_progress_requests(
        &self,
        ctx: &dyn WatchCtx,
        inner: &mut Inner,
        only: Option<u64>,
        items: &mut Vec<(u64, Vec<u8>)>,
    ) {
        let Inner { watchers, streams, last_rev, .. } = inner;
        for (sid, s) in streams.iter_mut() {
            if !s.progress_pending || only.is_some_and(|o| o != *sid) {
                continue;
            }
            if s.ids.values().any(|k| !watchers[k].synced) {
                continue;
            }
            s.progress_pending = false;
            let resp =
                WatchResponse { header: Some(ctx.header(*last_rev)), watch_id: INVALID_WATCH_ID, ..Default::default() };
            self.out(items).push(s, resp, false);
        }
    }

    /// Progress notifications due at `now` (etcd's sendLoop ticker): each
    /// synced progress_notify watcher that got no events since the last tick
    /// gets an empty response at the current revision.
    pub fn progress_tick(&self, ctx: &dyn WatchCtx, now: Instant) {
        let interval = self.progress_interval();
        let mut items = Vec::new();
        let mut inner = self.inner.lock();
        let Inner { watchers, streams, last_rev, .. } = &mut *inner;
        for s in streams.values_mut() {
            if now < s.next_progress {
                continue;
            }
            s.next_progress = now + interval;
            for key in s.ids.values() {
                let w = watchers.get_mut(key).expect("a stream's watcher exists");
                if !w.progress_notify {
                    continue;
                }
                if w.progress_due && w.synced && !s.blocked {
                    let resp =
                        WatchResponse { header: Some(ctx.header(*last_rev)), watch_id: w.id, ..Default::default() };
                    // Borrow dance: push needs the stream mutably.
                    let bytes = resp.encode_to_vec();
                    s.unacked_bytes += bytes.len();
                    s.unacked.push_back(bytes.len());
                    items.push((s.token, bytes));
                }
                w.progress_due = true;
            }
        }
        if !items.is_empty() {
            ctx.send(items);
        }
    }

    /// The worker thread's loop: catch-up rounds, progress ticks, and sleep
    /// until there is work (a new unsynced watcher, an unblocked stream) or
    /// 100 ms pass. Returns after [`WatchHub::stop`].
    pub fn run(&self, ctx: &dyn WatchCtx) {
        loop {
            let remaining = self.sync_once(ctx);
            let now = Instant::now();
            self.progress_tick(ctx, now);
            let mut inner = self.inner.lock();
            if inner.stopped {
                return;
            }
            if remaining > 0 || inner.dirty {
                continue;
            }
            let next_progress = inner.streams.values().map(|s| s.next_progress).min();
            let wait = next_progress
                .map_or(Duration::from_millis(100), |t| t.saturating_duration_since(now))
                .min(Duration::from_millis(100));
            self.wake.wait_for(&mut inner, wait);
        }
    }

    pub fn stop(&self) {
        let mut inner = self.inner.lock();
        inner.stopped = true;
        self.poke(&mut inner);
    }

    fn poke(&self, inner: &mut Inner) {
        inner.dirty = true;
        self.wake.notify_one();
    }

    /// The store was replaced by a Raft snapshot and is now at `current_rev`:
    /// the revisions in between never came through [`WatchHub::notify`], so
    /// every synced watcher goes back to catching up from history (or is
    /// cancelled as compacted if the snapshot's history starts later).
    pub fn restored(&self, current_rev: i64) {
        let mut inner = self.inner.lock();
        let Inner { watchers, synced, unsynced, last_rev, dirty, .. } = &mut *inner;
        for (key, w) in watchers.iter_mut() {
            if w.synced {
                synced.remove(*key, &w.range);
                w.synced = false;
                unsynced.insert(*key);
            }
        }
        *last_rev = current_rev;
        *dirty = true;
        self.poke(&mut inner);
    }

    /// (synced, unsynced) watcher counts, for stats and tests.
    pub fn counts(&self) -> (usize, usize) {
        let inner = self.inner.lock();
        (inner.watchers.len() - inner.unsynced.len(), inner.unsynced.len())
    }
}

impl Inner {
    fn remove_watcher(&mut self, key: u64) -> Option<Watcher> {
        let w = self.watchers.remove(&key)?;
        if w.synced {
            self.synced.remove(key, &w.range);
        } else {
            self.unsynced.remove(&key);
        }
        if let Some(s) = self.streams.get_mut(&w.stream) {
            s.ids.remove(&w.id);
        }
        Some(w)
    }
}

fn rev_of(e: &Event) -> i64 {
    e.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

/// etcd's sendLoop: the key as it was at mod_revision - 1; none for a
/// create (a put whose create and mod revisions are equal).
fn prev_kv(store: &Store, ev: &Event) -> Option<KeyValue> {
    let kv = ev.kv.as_ref()?;
    if ev.r#type == EventType::Put as i32 && kv.create_revision == kv.mod_revision {
        return None;
    }
    let req = RangeRequest { key: kv.key.clone(), revision: kv.mod_revision - 1, ..Default::default() };
    store.range(&req).ok()?.kvs.into_iter().next()
}

/// The engine is the hub's context: its store, its header, its completion queue.
impl WatchCtx for crate::engine::Shared {
    fn store(&self) -> &Store {
        &self.store
    }

    fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.identity.cluster_id,
            member_id: self.identity.member_id,
            revision,
            raft_term: self.raft.term.load(Ordering::Acquire),
        }
    }

    fn send(&self, out: Vec<(u64, Vec<u8>)>) {
        for (token, bytes) in out {
            self.completions.push(token, Ok(bytes));
        }
    }
}

pub(crate) fn is_watch_method(m: crate::engine::Method) -> bool {
    use crate::engine::Method as M;
    matches!(m, M::WatchOpen | M::WatchRequest | M::WatchAck | M::WatchClose)
}

/// The engine's submit for the watch methods: the token is the stream.
/// `permitted`: may the stream's caller read this key range (etcd's isWatchPermitted).
pub(crate) fn submit(
    shared: &crate::engine::Shared,
    method: crate::engine::Method,
    request: &[u8],
    token: u64,
    permitted: &dyn Fn(&[u8], &[u8]) -> bool,
) {
    use crate::engine::Method as M;
    let hub = &shared.watch;
    match method {
        M::WatchOpen => hub.open_stream(token),
        M::WatchRequest => {
            if let Err(e) = hub.request_as(shared, token, request, permitted) {
                shared.completions.push(token, Err(e));
            }
        }
        M::WatchAck => {
            let n = request.get(..8).map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
            hub.ack(token, usize::try_from(n).unwrap_or(usize::MAX));
        }
        M::WatchClose => hub.close_stream(token),
        _ => unreachable!("not a watch method"),
    }
}
