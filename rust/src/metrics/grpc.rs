//! go-grpc-prometheus' server metrics, as etcd registers them: per method
//! (`grpc_type`, `grpc_service`, `grpc_method`) how many calls started, how
//! many were handled with each status code (`grpc_code`), the messages each
//! way, and with `--metrics=extensive` the handling time.
//!
//! Every routed method has a fixed slot in [`METHODS`], so counting is an
//! index and an atomic add. As go-grpc-prometheus, every series exists
//! (at 0) from the start.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::Stream;

use super::text::{Series, Text};
use super::{Counter, Histogram, DEFAULT_BUCKETS};

/// Slots for the server's method table (server/mod.rs checks it fits).
pub const SLOTS: usize = 64;

/// grpc-go's codes by number, with the names go-grpc-prometheus prints.
pub const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// One method's counters.
pub struct MethodCounters {
    pub started: Counter,
    pub handled: [Counter; 17],
    pub received: Counter,
    pub sent: Counter,
    pub handling: Histogram<11>,
}

impl MethodCounters {
    const fn new() -> MethodCounters {
        MethodCounters {
            started: Counter::new(),
            handled: [const { Counter::new() }; 17],
            received: Counter::new(),
            sent: Counter::new(),
            handling: Histogram::new(DEFAULT_BUCKETS),
        }
    }

    /// The call ended with `code` (grpc-go's number); `started` is when it
    /// began if handling time is measured (`--metrics=extensive`).
    #[inline]
    pub fn handled(&self, code: usize, started: Option<Instant>) {
        self.handled[code.min(CODES.len() - 1)].inc();
        if let Some(t) = started {
            self.handling.since(t);
        }
    }
}

pub static METHODS: [MethodCounters; SLOTS] = [const { MethodCounters::new() }; SLOTS];

/// The labels of a slot: "/etcdserverpb.KV/Range" is service
/// "etcdserverpb.KV", method "Range"; `kind` is "unary", "server_stream",
/// "client_stream" or "bidi_stream".
#[derive(Clone, Copy)]
pub struct MethodName {
    pub service: &'static str,
    pub method: &'static str,
    pub kind: &'static str,
}

impl MethodName {
    pub fn of(path: &'static str, kind: &'static str) -> MethodName {
        let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or((path, ""));
        MethodName { service, method, kind }
    }

    fn labels(&self) -> [(&'static str, &'static str); 3] {
        [("grpc_method", self.method), ("grpc_service", self.service), ("grpc_type", self.kind)]
    }
}

/// Series sorted as Go's client sorts them: by label values in label-name order.
pub(super) fn render(t: &mut Text, names: &[MethodName]) {
    let mut slots: Vec<usize> = (0..names.len().min(SLOTS)).collect();
    slots.sort_by_key(|&i| (names[i].method, names[i].service, names[i].kind));
    let mut handled = Vec::new();
    for &code in &{
        let mut codes: Vec<usize> = (0..CODES.len()).collect();
        codes.sort_by_key(|&c| CODES[c]);
        codes
    } {
        for &i in &slots {
            let l = names[i].labels();
            handled.push((vec![("grpc_code", CODES[code]), l[0], l[1], l[2]], METHODS[i].handled[code].get()));
        }
    }
    t.counter_family(
        "grpc_server_handled_total",
        "Total number of RPCs completed on the server, regardless of success or failure.",
        &handled,
    );
    if super::extensive() {
        let labels: Vec<[(&str, &str); 3]> = slots.iter().map(|&i| names[i].labels()).collect();
        let series: Vec<Series<'_>> = slots
            .iter()
            .zip(&labels)
            .map(|(&i, l)| {
                (l.as_slice(), METHODS[i].handling.bounds.as_slice(), super::snapshot_dyn(&METHODS[i].handling))
            })
            .collect();
        t.histogram_family(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
            &series,
        );
    }
    let family = |t: &mut Text, name: &str, help: &str, get: fn(&MethodCounters) -> u64| {
        let samples: Vec<_> = slots.iter().map(|&i| (names[i].labels().to_vec(), get(&METHODS[i]))).collect();
        t.counter_family(name, help, &samples);
    };
    family(t, "grpc_server_msg_received_total", "Total number of RPC stream messages received on the server.", |m| {
        m.received.get()
    });
    family(t, "grpc_server_msg_sent_total", "Total number of gRPC stream messages sent by the server.", |m| {
        m.sent.get()
    });
    family(t, "grpc_server_started_total", "Total number of RPCs started on the server.", |m| m.started.get());
}

/// A streaming call's responses, counted as handled when the stream ends:
/// with the status of its last item, OK when it runs out, Canceled when it
/// is dropped first (the client went away).
pub struct Handled<S> {
    inner: S,
    counters: &'static MethodCounters,
    started: Option<Instant>,
    done: bool,
}

impl<S> Handled<S> {
    pub fn new(inner: S, counters: &'static MethodCounters, started: Option<Instant>) -> Handled<S> {
        Handled { inner, counters, started, done: false }
    }

    fn end(&mut self, code: usize) {
        if !self.done {
            self.done = true;
            self.counters.handled(code, self.started);
        }
    }
}

impl<S, T> Stream for Handled<S>
where
    S: Stream<Item = Result<T, tonic::Status>> + Unpin,
{
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = Pin::new(&mut self.inner).poll_next(cx);
        match &item {
            Poll::Ready(None) => self.end(0),
            Poll::Ready(Some(Err(status))) => self.end(status.code() as usize),
            _ => {}
        }
        item
    }
}

impl<S> Drop for Handled<S> {
    fn drop(&mut self) {
        self.end(1);
    }
}
