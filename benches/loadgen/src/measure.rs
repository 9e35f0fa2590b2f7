//! What every workload shares: a bounded budget of operations, a per-task
//! recorder (latency histogram plus error counts), and the report printed at
//! the end.
//!
//! Each client task owns its own `Recorder`, so the hot path takes no lock;
//! the recorders are merged once, after the tasks are joined.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use etcd_client::Error;
use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

/// Latencies are recorded in microseconds, 1 µs to 60 s, 3 significant digits.
const MAX_LATENCY_US: u64 = 60_000_000;

/// How many operations may still start. Stops at `--total` operations or at
/// the deadline, whichever comes first, or as soon as a task hits an error
/// that makes going on pointless (the server does not implement the call).
pub struct Budget {
    issued: AtomicU64,
    total: Option<u64>,
    duration: Duration,
    deadline: OnceLock<Instant>,
    stopped: AtomicBool,
}

impl Budget {
    pub fn new(total: Option<u64>, duration: Duration) -> Arc<Self> {
        Arc::new(Self {
            issued: AtomicU64::new(0),
            total,
            duration,
            deadline: OnceLock::new(),
            stopped: AtomicBool::new(false),
        })
    }

    /// Starts the clock; called once, right before the client tasks start.
    fn arm(&self) {
        let _ = self.deadline.set(Instant::now() + self.duration);
    }

    /// The sequence number of the next operation, or `None` when the run is over.
    pub fn next(&self) -> Option<u64> {
        if self.stopped.load(Ordering::Relaxed) {
            return None;
        }
        let deadline = self
            .deadline
            .get()
            .expect("budget used before it was armed");
        if Instant::now() >= *deadline {
            return None;
        }
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        match self.total {
            Some(total) if n >= total => None,
            _ => Some(n),
        }
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }
}

/// One task's results.
pub struct Recorder {
    hist: Histogram<u64>,
    pub errors: u64,
    /// Optimistic-concurrency retries (txn-put) or late events (watch-latency).
    pub retries: u64,
    first_error: Option<String>,
    /// Set when the server answered UNIMPLEMENTED: the run is aborted.
    fatal: Option<String>,
}

impl Recorder {
    pub fn new() -> Self {
        Self {
            hist: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds"),
            errors: 0,
            retries: 0,
            first_error: None,
            fatal: None,
        }
    }

    /// Records one successful operation that began at `started`.
    pub fn ok(&mut self, started: Instant) {
        self.ok_micros(u64::try_from(started.elapsed().as_micros()).unwrap_or(MAX_LATENCY_US));
    }

    pub fn ok_micros(&mut self, micros: u64) {
        self.hist.saturating_record(micros.clamp(1, MAX_LATENCY_US));
    }

    /// Records a failed operation. Returns true when the error is fatal for
    /// the whole run (the caller then stops the budget).
    pub fn err(&mut self, e: &Error) -> bool {
        let text = describe(e);
        if is_unimplemented(e) && self.fatal.is_none() {
            self.fatal = Some(text.clone());
        }
        self.fail(text);
        self.fatal.is_some()
    }

    /// Records a failure that is not a client error (a wrong answer, a timeout).
    pub fn fail(&mut self, text: String) {
        self.fail_n(1, text);
    }

    /// Records `n` failures that share one cause.
    pub fn fail_n(&mut self, n: u64, text: String) {
        self.errors += n;
        if self.first_error.is_none() {
            self.first_error = Some(text);
        }
    }

    pub fn merge(&mut self, other: Recorder) {
        self.hist.add(&other.hist).expect("histograms share bounds");
        self.errors += other.errors;
        self.retries += other.retries;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        if self.fatal.is_none() {
            self.fatal = other.fatal;
        }
    }
}

/// `UNIMPLEMENTED: unknown service etcdserverpb.Lease` for gRPC statuses
/// (the code spelled as in the gRPC spec), the client's own text otherwise.
pub fn describe(e: &Error) -> String {
    match e {
        Error::GRpcStatus(s) => format!("{}: {}", code_name(s.code()), s.message()),
        other => other.to_string(),
    }
}

fn is_unimplemented(e: &Error) -> bool {
    matches!(e, Error::GRpcStatus(s) if s.code() == tonic::Code::Unimplemented)
}

fn code_name(code: tonic::Code) -> String {
    // tonic's Debug is CamelCase ("DeadlineExceeded"); the spec says DEADLINE_EXCEEDED.
    let mut out = String::new();
    for (i, ch) in format!("{code:?}").chars().enumerate() {
        if ch.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

/// Runs the client tasks (already built, not yet started) against the
/// budget, and times them. Setup must be done before this: the markers on
/// stderr bracket exactly the measured interval, and compare.py samples the
/// server's CPU between them.
pub async fn measure<F>(budget: &Budget, tasks: Vec<F>) -> (Recorder, Duration)
where
    F: Future<Output = Recorder> + Send + 'static,
{
    eprintln!("loadgen: measure begin");
    budget.arm();
    let started = Instant::now();
    let handles: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
    let mut all = Recorder::new();
    for h in handles {
        match h.await {
            Ok(rec) => all.merge(rec),
            Err(e) => all.fail(format!("client task panicked: {e}")),
        }
    }
    let elapsed = started.elapsed();
    eprintln!("loadgen: measure end");
    (all, elapsed)
}

/// What a run prints: one human line, one JSON line.
pub struct Summary {
    pub workload: String,
    pub rec: Recorder,
    pub elapsed: Duration,
    pub extra: Map<String, Value>,
}

impl Summary {
    pub fn new(workload: &str, rec: Recorder, elapsed: Duration) -> Self {
        Self {
            workload: workload.to_owned(),
            rec,
            elapsed,
            extra: Map::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// The UNIMPLEMENTED status that aborted the run, if one did.
    pub fn fatal(&self) -> Option<&str> {
        self.rec.fatal.as_deref()
    }

    fn quantile_ms(&self, q: f64) -> f64 {
        if self.rec.hist.is_empty() {
            return 0.0;
        }
        self.rec.hist.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn json(&self) -> Value {
        let total = self.rec.hist.len();
        let secs = self.elapsed.as_secs_f64();
        let mut out = json!({
            "workload": self.workload,
            "qps": round2(if secs > 0.0 { total as f64 / secs } else { 0.0 }),
            "p50_ms": round3(self.quantile_ms(0.50)),
            "p90_ms": round3(self.quantile_ms(0.90)),
            "p99_ms": round3(self.quantile_ms(0.99)),
            "p999_ms": round3(self.quantile_ms(0.999)),
            "mean_ms": round3(self.rec.hist.mean() / 1000.0),
            "max_ms": round3(self.rec.hist.max() as f64 / 1000.0),
            "errors": self.rec.errors,
            "total": total,
            "elapsed_s": round3(secs),
        });
        let obj = out.as_object_mut().expect("object");
        if let Some(e) = &self.rec.first_error {
            obj.insert("first_error".into(), e.clone().into());
        }
        if let Some(e) = &self.rec.fatal {
            obj.insert("error".into(), e.clone().into());
        }
        obj.extend(self.extra.clone());
        out
    }

    pub fn human(&self) -> String {
        let total = self.rec.hist.len();
        let secs = self.elapsed.as_secs_f64();
        let qps = if secs > 0.0 { total as f64 / secs } else { 0.0 };
        let mut line = format!(
            "{}: {} ops in {:.2}s = {:.0} ops/s; p50 {} p90 {} p99 {} p99.9 {}; errors {}",
            self.workload,
            total,
            secs,
            qps,
            fmt_ms(self.quantile_ms(0.50)),
            fmt_ms(self.quantile_ms(0.90)),
            fmt_ms(self.quantile_ms(0.99)),
            fmt_ms(self.quantile_ms(0.999)),
            self.rec.errors,
        );
        if let Some(e) = &self.rec.first_error {
            line.push_str(&format!(" (first: {e})"));
        }
        line
    }
}

fn fmt_ms(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.2}ms")
    } else if ms < 100.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{ms:.0}ms")
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_are_spelled_as_in_the_spec() {
        let e = Error::GRpcStatus(tonic::Status::unimplemented(
            "unknown service etcdserverpb.Lease",
        ));
        assert_eq!(
            describe(&e),
            "UNIMPLEMENTED: unknown service etcdserverpb.Lease"
        );
        assert_eq!(
            code_name(tonic::Code::DeadlineExceeded),
            "DEADLINE_EXCEEDED"
        );
    }

    #[test]
    fn unimplemented_is_fatal_other_errors_are_counted() {
        let mut rec = Recorder::new();
        assert!(!rec.err(&Error::GRpcStatus(tonic::Status::unavailable("no leader"))));
        assert!(rec.err(&Error::GRpcStatus(tonic::Status::unimplemented("nope"))));
        assert_eq!(rec.errors, 2);
        let s = Summary::new("put", rec, Duration::from_secs(1));
        assert_eq!(s.fatal(), Some("UNIMPLEMENTED: nope"));
        assert_eq!(s.json()["first_error"], "UNAVAILABLE: no leader");
    }

    #[test]
    fn budget_stops_at_total() {
        let b = Budget::new(Some(3), Duration::from_secs(60));
        b.arm();
        assert_eq!(
            (0..5).filter_map(|_| b.next()).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
    }

    #[test]
    fn merged_quantiles() {
        let mut a = Recorder::new();
        let mut b = Recorder::new();
        for us in 1..=500 {
            a.ok_micros(us * 1000);
            b.ok_micros((us + 500) * 1000);
        }
        a.merge(b);
        let s = Summary::new("x", a, Duration::from_secs(2)).json();
        assert_eq!(s["total"], 1000);
        assert_eq!(s["qps"], 500.0);
        let p50 = s["p50_ms"].as_f64().unwrap();
        assert!((499.0..=501.0).contains(&p50), "p50 {p50}");
    }
}
