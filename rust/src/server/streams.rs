//! The streaming calls: Watch (both ways, many responses per request),
//! LeaseKeepAlive (one renew answered per request, in order) and
//! Maintenance.Snapshot (etcd's bbolt backend in blobs, then its SHA-256).

use std::io::Read;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use prost::Message;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::UnboundedReceiver;
use tonic::Status;

use crate::auth::Caller;
use crate::completion::{Answer, Waiter};
use crate::engine::Method;
use crate::pb::etcdserverpb::SnapshotResponse;
use crate::server::calls::Calls;
use crate::server::status::status_of;

pub type ResponseStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send + 'static>>;
/// A bidi call's requests: gRPC's messages, or the JSON gateway's.
pub type RequestStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send + 'static>>;

/// Responses handed to gRPC are acknowledged to the hub at least this often
/// in a burst (the hub's flow control counts what is not yet acknowledged).
const ACK_EVERY: u64 = 64;

/// etcd's snapshotSendBufferSize.
const SNAPSHOT_CHUNK: usize = 32 * 1024;

/// Opens a watch stream in the engine's hub: the client's requests go in
/// from a task of their own, and the hub's responses come out of the
/// returned stream in the order the hub made them. A client that half-closes
/// keeps getting its events, as from etcd.
pub fn watch(calls: &Arc<Calls>, mut requests: RequestStream, caller: Caller) -> ResponseStream {
    let token = calls.token();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let engine = calls.engine.clone();
    engine.completions().add_waiter(token, Waiter::Stream(tx));
    engine.submit_method(Method::WatchOpen, Bytes::new(), token);
    let reader = {
        let engine = engine.clone();
        tokio::spawn(async move {
            // A request that does not arrive whole ends only the reading side.
            while let Some(Ok(request)) = requests.next().await {
                engine.submit_as(Method::WatchRequest, request, token, &caller);
            }
        })
    };
    Box::pin(WatchResponses { calls: calls.clone(), token, rx, unacked: 0, done: false, reader })
}

struct WatchResponses {
    calls: Arc<Calls>,
    token: u64,
    rx: UnboundedReceiver<Answer>,
    unacked: u64,
    done: bool,
    reader: tokio::task::JoinHandle<()>,
}

impl WatchResponses {
    fn ack(&mut self) {
        if self.unacked > 0 {
            let n = std::mem::take(&mut self.unacked);
            self.calls.engine.submit_method(Method::WatchAck, Bytes::copy_from_slice(&n.to_le_bytes()), self.token);
        }
    }
}

impl Stream for WatchResponses {
    type Item = Result<Bytes, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(response))) => {
                self.unacked += 1;
                if self.unacked >= ACK_EVERY {
                    self.ack();
                }
                Poll::Ready(Some(Ok(response.into())))
            }
            // A request the hub refused (it did not decode), or the server
            // stopping (`CompletionQueue::end_streams`): the stream ends with it.
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(status_of(&e))))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(Some(Err(status_of(&crate::error::EtcdError::Stopped))))
            }
            Poll::Pending => {
                // Everything waiting has been handed to gRPC.
                self.ack();
                Poll::Pending
            }
        }
    }
}

impl Drop for WatchResponses {
    fn drop(&mut self) {
        self.reader.abort();
        let engine = &self.calls.engine;
        engine.completions().remove_waiter(self.token);
        engine.submit_method(Method::WatchClose, Bytes::new(), self.token);
    }
}

/// LeaseKeepAlive: each request renews once and is answered in order
/// (etcd's leaseKeepAlive loop); on a follower each renew goes to the
/// leader. An error ends the stream with it.
pub fn keep_alive(calls: &Arc<Calls>, requests: RequestStream, caller: Caller) -> ResponseStream {
    const PATH: &str = "/etcdserverpb.Lease/LeaseKeepAlive";
    let state = (requests, calls.clone(), caller, false);
    Box::pin(futures_util::stream::unfold(state, |(mut requests, calls, caller, failed)| async move {
        if failed {
            return None;
        }
        match requests.next().await {
            Some(Ok(request)) => match calls.call_on_leader(Method::LeaseKeepAlive, PATH, request, &caller).await {
                Ok(response) => Some((Ok(response), (requests, calls, caller, false))),
                Err(status) => Some((Err(status), (requests, calls, caller, true))),
            },
            None => None,
            Some(Err(status)) => Some((Err(status), (requests, calls, caller, true))),
        }
    }))
}

/// Maintenance.Snapshot, as etcd's: the engine writes the store to a file
/// as etcd's bbolt backend (`crate::bbolt`, from one read view of the store:
/// writers go on meanwhile); this streams it in 32 KiB blobs,
/// each with the bytes still to come, then one more response whose blob is
/// the SHA-256 of everything sent (etcdctl keeps it at the end of the file
/// and `snapshot restore` checks it), and removes the file.
pub async fn snapshot(calls: &Arc<Calls>, request: Bytes, caller: Caller) -> Result<ResponseStream, Status> {
    let path = calls.call_as(Method::MaintenanceSnapshot, request, &caller).await.map_err(|e| status_of(&e))?;
    let copy = SnapshotCopy { path: PathBuf::from(String::from_utf8_lossy(&path).into_owned()) };
    let file = std::fs::File::open(&copy.path)
        .map_err(|e| Status::internal(format!("etcdserver: opening the snapshot copy: {e}")))?;
    let total = file.metadata().map_or(0, |m| m.len());
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Status>>(4);
    // File reads block: a thread of tokio's blocking pool reads ahead of the
    // sender, at most four blobs.
    tokio::task::spawn_blocking(move || {
        let _copy = copy; // removed when this ends, however it ends
        let mut file = file;
        let mut digest = Sha256::new();
        let mut sent = 0u64;
        let mut buf = vec![0u8; SNAPSHOT_CHUNK];
        while sent < total {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    let _ =
                        tx.blocking_send(Err(Status::internal(format!("etcdserver: reading the snapshot copy: {e}"))));
                    return;
                }
            };
            sent += n as u64;
            digest.update(&buf[..n]);
            let blob = SnapshotResponse {
                header: None,
                remaining_bytes: total - sent,
                blob: Bytes::copy_from_slice(&buf[..n]),
            };
            if tx.blocking_send(Ok(blob.encode_to_vec().into())).is_err() {
                return; // the client went away
            }
        }
        let last =
            SnapshotResponse { header: None, remaining_bytes: 0, blob: Bytes::copy_from_slice(&digest.finalize()) };
        let _ = tx.blocking_send(Ok(last.encode_to_vec().into()));
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}

/// The engine's bbolt file for one snapshot; removed on drop.
struct SnapshotCopy {
    path: PathBuf,
}

impl Drop for SnapshotCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
