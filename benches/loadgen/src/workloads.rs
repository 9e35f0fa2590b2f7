//! The workloads. Each one does its setup (preload, watchers, leases) first,
//! then builds one future per client and hands them to `measure`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, GetOptions, KvClient, Permission, Txn, TxnOp, TxnOpResponse,
};
use tokio::sync::{watch, Notify};

use crate::measure::{describe, measure, Budget, Recorder, Summary};
use crate::{Consistency, Global};

/// How long a watch-latency round waits for every watcher's event.
const WATCH_EVENT_TIMEOUT: Duration = Duration::from_secs(10);
/// A txn-put operation that loses the race this many times counts as an error.
const MAX_TXN_ATTEMPTS: u32 = 100;

/// Key number `k`, zero-padded to --key-size bytes.
fn key(g: &Global, k: u64) -> Vec<u8> {
    format!("{k:0width$}", width = g.key_size).into_bytes()
}

/// The k-th key of this operation: sequential, or uniform over the key space.
fn pick(g: &Global, rng: &mut fastrand::Rng, seq: u64) -> u64 {
    if g.sequential_keys {
        seq % g.key_space_size
    } else {
        rng.u64(0..g.key_space_size)
    }
}

fn value(g: &Global) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(0x6b_6574_6368);
    (0..g.val_size).map(|_| rng.alphanumeric() as u8).collect()
}

fn conn(conns: &[Client], i: usize) -> &Client {
    &conns[i % conns.len()]
}

pub async fn put(g: &Global, conns: Vec<Client>) -> Result<Summary, String> {
    let budget = Budget::new(g.total, g.duration);
    let val = value(g);
    let tasks: Vec<_> = (0..g.clients)
        .map(|i| {
            let (g, budget, val) = (g.clone(), budget.clone(), val.clone());
            let mut kv = conn(&conns, i).kv_client();
            async move {
                let mut rec = Recorder::new();
                let mut rng = fastrand::Rng::with_seed(i as u64);
                while let Some(seq) = budget.next() {
                    let k = key(&g, pick(&g, &mut rng, seq));
                    let t = Instant::now();
                    match kv.put(k, val.clone(), None).await {
                        Ok(_) => rec.ok(t),
                        Err(e) if rec.err(&e) => budget.stop(),
                        Err(_) => {}
                    }
                }
                rec
            }
        })
        .collect();
    let (rec, elapsed) = measure(&budget, tasks).await;
    Ok(Summary::new("put", rec, elapsed)
        .with("clients", g.clients)
        .with("conns", g.conns)
        .with("key_space_size", g.key_space_size))
}

/// Preloads `keys` (as (key, value) pairs) over the connections, 16 at a time each.
async fn preload(conns: &[Client], keys: Vec<Vec<u8>>, val: &[u8]) -> Result<(), String> {
    let lanes = (conns.len() * 16).min(keys.len()).max(1);
    let keys = Arc::new(keys);
    let mut handles = Vec::new();
    for lane in 0..lanes {
        let (keys, val) = (keys.clone(), val.to_vec());
        let mut kv = conn(conns, lane).kv_client();
        handles.push(tokio::spawn(async move {
            for k in keys.iter().skip(lane).step_by(lanes) {
                kv.put(k.clone(), val.clone(), None)
                    .await
                    .map_err(|e| format!("preload: {}", describe(&e)))?;
            }
            Ok::<(), String>(())
        }));
    }
    for h in handles {
        h.await.map_err(|e| format!("preload task: {e}"))??;
    }
    Ok(())
}

pub async fn range(
    g: &Global,
    conns: Vec<Client>,
    consistency: Consistency,
    prefix_keys: u64,
) -> Result<Summary, String> {
    let val = value(g);
    // One key "range/<key>", or N keys "range/p/<key>" ranged as the prefix "range/p/".
    let (target, loaded, expect) = if prefix_keys == 0 {
        let k = [b"range/".as_slice(), &key(g, 0)].concat();
        (k.clone(), vec![k], 1)
    } else {
        let keys = (0..prefix_keys)
            .map(|i| [b"range/p/".as_slice(), &key(g, i)].concat())
            .collect();
        (b"range/p/".to_vec(), keys, prefix_keys as i64)
    };
    preload(&conns, loaded, &val).await?;

    let mut opts = GetOptions::new();
    if let Consistency::S = consistency {
        opts = opts.with_serializable();
    }
    if prefix_keys > 0 {
        opts = opts.with_prefix();
    }
    let budget = Budget::new(g.total, g.duration);
    let tasks: Vec<_> = (0..g.clients)
        .map(|i| {
            let (budget, target, opts) = (budget.clone(), target.clone(), opts.clone());
            let mut kv = conn(&conns, i).kv_client();
            async move {
                let mut rec = Recorder::new();
                while budget.next().is_some() {
                    let t = Instant::now();
                    match kv.get(target.clone(), Some(opts.clone())).await {
                        // A wrong answer is not a result: count it as an error.
                        Ok(r) if r.count() != expect || r.kvs().len() as i64 != expect => {
                            rec.fail(format!(
                                "range returned count {} with {} kvs, want {expect}",
                                r.count(),
                                r.kvs().len()
                            ));
                        }
                        Ok(_) => rec.ok(t),
                        Err(e) if rec.err(&e) => budget.stop(),
                        Err(_) => {}
                    }
                }
                rec
            }
        })
        .collect();
    let (rec, elapsed) = measure(&budget, tasks).await;
    let c = match consistency {
        Consistency::L => "l",
        Consistency::S => "s",
    };
    let name = if prefix_keys == 0 {
        format!("range-{c}")
    } else {
        format!("range-{c}/{prefix_keys}")
    };
    Ok(Summary::new(&name, rec, elapsed)
        .with("clients", g.clients)
        .with("conns", g.conns)
        .with("consistency", c)
        .with("prefix_keys", prefix_keys))
}

/// The mod_revision of the first kv in a get, 0 when the key does not exist
/// (which is also what a Compare on a missing key's mod_revision sees).
fn first_mod_revision(kvs: &[etcd_client::KeyValue]) -> i64 {
    kvs.first().map_or(0, etcd_client::KeyValue::mod_revision)
}

enum CasError {
    Rpc(etcd_client::Error),
    Other(String),
}

/// One optimistic update: read, then compare-and-put until it wins.
/// Returns the number of lost races.
async fn cas_update(kv: &mut KvClient, k: &[u8], val: &[u8]) -> Result<u32, CasError> {
    let got = kv.get(k, None).await.map_err(CasError::Rpc)?;
    let mut rev = first_mod_revision(got.kvs());
    for attempt in 0..MAX_TXN_ATTEMPTS {
        let txn = Txn::new()
            .when([Compare::mod_revision(k, CompareOp::Equal, rev)])
            .and_then([TxnOp::put(k, val, None)])
            .or_else([TxnOp::get(k, None)]);
        let resp = kv.txn(txn).await.map_err(CasError::Rpc)?;
        if resp.succeeded() {
            return Ok(attempt);
        }
        // Lost the race: the else branch brought the current revision back.
        rev = match resp.op_responses().first() {
            Some(TxnOpResponse::Get(g)) => first_mod_revision(g.kvs()),
            _ => {
                return Err(CasError::Other(
                    "txn failed without the else branch's get response".into(),
                ))
            }
        };
    }
    Err(CasError::Other(format!(
        "txn-put lost the race {MAX_TXN_ATTEMPTS} times in a row"
    )))
}

pub async fn txn_put(g: &Global, conns: Vec<Client>) -> Result<Summary, String> {
    let budget = Budget::new(g.total, g.duration);
    let val = value(g);
    let tasks: Vec<_> = (0..g.clients)
        .map(|i| {
            let (g, budget, val) = (g.clone(), budget.clone(), val.clone());
            let mut kv = conn(&conns, i).kv_client();
            async move {
                let mut rec = Recorder::new();
                let mut rng = fastrand::Rng::with_seed(i as u64);
                while let Some(seq) = budget.next() {
                    let k = key(&g, pick(&g, &mut rng, seq));
                    let t = Instant::now();
                    match cas_update(&mut kv, &k, &val).await {
                        Ok(lost) => {
                            rec.retries += u64::from(lost);
                            rec.ok(t);
                        }
                        Err(CasError::Rpc(e)) if rec.err(&e) => budget.stop(),
                        Err(CasError::Rpc(_)) => {}
                        Err(CasError::Other(e)) => rec.fail(e),
                    }
                }
                rec
            }
        })
        .collect();
    let (rec, elapsed) = measure(&budget, tasks).await;
    let retries = rec.retries;
    Ok(Summary::new("txn-put", rec, elapsed)
        .with("clients", g.clients)
        .with("conns", g.conns)
        .with("key_space_size", g.key_space_size)
        .with("retries", retries))
}

/// The state one watch-latency round shares between the putter and the
/// stream readers. Only one put is in flight at a time; the readers match
/// events to it by the sequence number written at the front of the value.
struct Round {
    seq: AtomicU64,
    start_ns: AtomicU64,
    received: AtomicU64,
    done: Notify,
}

fn seq_of(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value.get(..16)?).ok()?.parse().ok()
}

pub async fn watch_latency(
    g: &Global,
    conns: Vec<Client>,
    watchers: usize,
    streams: usize,
    put_rate: u32,
) -> Result<Summary, String> {
    let streams = streams.clamp(1, watchers.max(1));
    let wkey = [b"watch-latency/".as_slice(), &key(g, 0)].concat();
    let base = Instant::now();
    let round = Arc::new(Round {
        seq: AtomicU64::new(0),
        start_ns: AtomicU64::new(0),
        received: AtomicU64::new(0),
        done: Notify::new(),
    });
    let want = watchers as u64;
    let (stop_tx, stop_rx) = watch::channel(false);

    // Setup: open the streams, create the watchers, wait for every "created".
    let mut senders = Vec::with_capacity(streams);
    let mut readers = Vec::with_capacity(streams);
    for s in 0..streams {
        let n = watchers / streams + usize::from(s < watchers % streams);
        let mut wc = conn(&conns, s).watch_client();
        let ws = wc
            .watch(wkey.clone(), None)
            .await
            .map_err(|e| format!("watch: {}", describe(&e)))?;
        let (mut tx, mut rx) = ws.split();
        for _ in 1..n {
            tx.watch(wkey.clone(), None)
                .await
                .map_err(|e| format!("watch: {}", describe(&e)))?;
        }
        let mut created = 0;
        while created < n {
            let msg = tokio::time::timeout(WATCH_EVENT_TIMEOUT, rx.message())
                .await
                .map_err(|_| format!("stream {s}: {created} of {n} watchers created in time"))?
                .map_err(|e| format!("watch: {}", describe(&e)))?
                .ok_or_else(|| format!("stream {s} closed while creating watchers"))?;
            if msg.canceled() {
                return Err(format!("watch canceled: {}", msg.cancel_reason()));
            }
            created += usize::from(msg.created());
        }
        senders.push(tx);
        let (round, mut stop_rx) = (round.clone(), stop_rx.clone());
        readers.push(tokio::spawn(async move {
            let mut rec = Recorder::new();
            loop {
                let msg = tokio::select! {
                    m = rx.message() => m,
                    _ = stop_rx.changed() => break,
                };
                let resp = match msg {
                    Ok(Some(resp)) => resp,
                    Ok(None) => {
                        rec.fail("watch stream closed by the server".into());
                        break;
                    }
                    Err(e) => {
                        rec.err(&e);
                        break;
                    }
                };
                let now = base.elapsed().as_nanos() as u64;
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    if seq_of(kv.value()) != Some(round.seq.load(Ordering::SeqCst)) {
                        rec.retries += 1; // late: its round already timed out
                        continue;
                    }
                    let start = round.start_ns.load(Ordering::SeqCst);
                    rec.ok_micros(now.saturating_sub(start) / 1000);
                    if round.received.fetch_add(1, Ordering::SeqCst) + 1 == want {
                        round.done.notify_one();
                    }
                }
            }
            rec
        }));
    }

    // The putter: one put at a time, at most --put-rate a second, each one
    // awaited until every watcher has its event (or the round times out).
    let budget = Budget::new(g.total, g.duration);
    let interval = (put_rate > 0).then(|| Duration::from_secs_f64(1.0 / f64::from(put_rate)));
    let mut kv = conns[0].kv_client();
    let (g2, round2, budget2) = (g.clone(), round.clone(), budget.clone());
    let putter = async move {
        let mut rec = Recorder::new();
        let mut next_at = tokio::time::Instant::now();
        let mut puts = 0u64;
        while let Some(seq) = budget2.next() {
            if let Some(iv) = interval {
                tokio::time::sleep_until(next_at).await;
                next_at = (next_at + iv).max(tokio::time::Instant::now());
            }
            let seq = seq + 1; // 0 never matches
            let mut val = format!("{seq:016}").into_bytes();
            val.resize(g2.val_size.max(16), b'v');
            round2.received.store(0, Ordering::SeqCst);
            round2.seq.store(seq, Ordering::SeqCst);
            round2
                .start_ns
                .store(base.elapsed().as_nanos() as u64, Ordering::SeqCst);
            if let Err(e) = kv.put(wkey.clone(), val, None).await {
                if rec.err(&e) {
                    budget2.stop();
                }
                continue;
            }
            puts += 1;
            let deadline = tokio::time::Instant::now() + WATCH_EVENT_TIMEOUT;
            while round2.received.load(Ordering::SeqCst) < want {
                if tokio::time::timeout_at(deadline, round2.done.notified())
                    .await
                    .is_err()
                {
                    let missing = want - round2.received.load(Ordering::SeqCst).min(want);
                    rec.fail_n(
                        missing,
                        format!("{missing} of {want} watchers got no event within {WATCH_EVENT_TIMEOUT:?}"),
                    );
                    break;
                }
            }
        }
        rec.retries = puts; // carried out as "puts" below
        rec
    };
    let (putter_rec, elapsed) = measure(&budget, vec![putter]).await;
    let _ = stop_tx.send(true);
    let mut rec = Recorder::new();
    let mut late = 0;
    for r in readers {
        let r = r.await.map_err(|e| format!("watch reader: {e}"))?;
        late += r.retries;
        rec.merge(r);
    }
    drop(senders);
    let puts = putter_rec.retries;
    rec.merge(putter_rec);
    rec.retries = late;
    Ok(
        Summary::new(&format!("watch-latency/{watchers}"), rec, elapsed)
            .with("watchers", watchers)
            .with("streams", streams)
            .with("conns", g.conns)
            .with("puts", puts)
            .with("late_events", late),
    )
}

pub async fn lease_keepalive(g: &Global, conns: Vec<Client>) -> Result<Summary, String> {
    // Setup: one lease and one keepalive stream per client.
    let mut streams = Vec::with_capacity(g.clients);
    for i in 0..g.clients {
        let mut lc = conn(&conns, i).lease_client();
        let lease = lc
            .grant(60, None)
            .await
            .map_err(|e| format!("lease grant: {}", describe(&e)))?;
        let ka = lc
            .keep_alive(lease.id())
            .await
            .map_err(|e| format!("lease keepalive: {}", describe(&e)))?;
        streams.push(ka);
    }
    let budget = Budget::new(g.total, g.duration);
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|(mut keeper, mut stream)| {
            let budget = budget.clone();
            async move {
                let mut rec = Recorder::new();
                while budget.next().is_some() {
                    let t = Instant::now();
                    if let Err(e) = keeper.keep_alive().await {
                        rec.err(&e);
                        break;
                    }
                    match stream.message().await {
                        Ok(Some(r)) if r.ttl() > 0 => rec.ok(t),
                        Ok(Some(_)) => rec.fail("lease expired (ttl 0)".into()),
                        Ok(None) => {
                            rec.fail("keepalive stream closed by the server".into());
                            break;
                        }
                        Err(e) if rec.err(&e) => budget.stop(),
                        Err(_) => break,
                    }
                }
                rec
            }
        })
        .collect();
    let (rec, elapsed) = measure(&budget, tasks).await;
    Ok(Summary::new("lease-keepalive", rec, elapsed)
        .with("clients", g.clients)
        .with("conns", g.conns))
}

/// Polls every connection with a linearizable get until all answer.
pub async fn wait_ready(
    g: &Global,
    conns: Vec<Client>,
    timeout: Duration,
) -> Result<Summary, String> {
    let started = Instant::now();
    let probe = b"wait-ready".to_vec();
    for (i, c) in conns.iter().enumerate() {
        let mut kv = c.kv_client();
        loop {
            match tokio::time::timeout(Duration::from_secs(2), kv.get(probe.clone(), None)).await {
                Ok(Ok(_)) => break,
                Ok(Err(e)) if started.elapsed() > timeout => {
                    return Err(format!(
                        "{}: not ready after {timeout:?}: {}",
                        g.endpoints[i % g.endpoints.len()],
                        describe(&e)
                    ))
                }
                Err(_) if started.elapsed() > timeout => {
                    return Err(format!(
                        "{}: not ready after {timeout:?}",
                        g.endpoints[i % g.endpoints.len()]
                    ))
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    let mut rec = Recorder::new();
    rec.ok(started);
    Ok(Summary::new("wait-ready", rec, started.elapsed()))
}

/// The measured user's setup, as an administrator would do it with etcdctl:
/// user add root, role add root, user grant-role root root, role add,
/// role grant-permission --prefix NAME readwrite PREFIX, user add NAME,
/// user grant-role NAME NAME, auth enable.
pub async fn enable_auth(
    g: &Global,
    conns: Vec<Client>,
    prefix: &str,
    root_password: &str,
) -> Result<Summary, String> {
    let (name, password) = g
        .user
        .clone()
        .ok_or("enable-auth needs --user NAME:PASSWORD")?;
    let started = Instant::now();
    let mut c = conns
        .into_iter()
        .next()
        .ok_or("enable-auth: no connection")?;
    let step =
        |what: &'static str| move |e: etcd_client::Error| format!("{what}: {}", describe(&e));
    c.user_add("root", root_password, None)
        .await
        .map_err(step("user add root"))?;
    c.role_add("root").await.map_err(step("role add root"))?;
    c.user_grant_role("root", "root")
        .await
        .map_err(step("user grant-role root root"))?;
    c.role_add(name.as_str()).await.map_err(step("role add"))?;
    c.role_grant_permission(name.as_str(), Permission::read_write(prefix).with_prefix())
        .await
        .map_err(step("role grant-permission"))?;
    c.user_add(name.as_str(), password, None)
        .await
        .map_err(step("user add"))?;
    c.user_grant_role(name.as_str(), name.as_str())
        .await
        .map_err(step("user grant-role"))?;
    c.auth_enable().await.map_err(step("auth enable"))?;
    let mut rec = Recorder::new();
    rec.ok(started);
    Ok(Summary::new("enable-auth", rec, started.elapsed()).with("prefix", prefix))
}

#[cfg(test)]
mod tests {
    use super::seq_of;

    #[test]
    fn watch_values_carry_their_put() {
        let mut v = format!("{:016}", 42).into_bytes();
        v.resize(256, b'v');
        assert_eq!(seq_of(&v), Some(42));
        assert_eq!(seq_of(b"short"), None);
    }
}
