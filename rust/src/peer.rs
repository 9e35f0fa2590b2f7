//! Raft messages between members, as opaque bytes.
//!
//! The transport is `crate::server::transport` (gRPC streams per peer);
//! this module only turns raft-rs messages into the batches it carries and
//! back. A batch is a `ketchpb.RaftBatch`: the
//! messages of one Ready for one peer, in order, so a busy leader costs one
//! transport message per follower per Ready. A snapshot message always
//! travels alone, marked, so the transport can send it on its own stream
//! and heartbeats never wait behind it.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::RawFd;

use parking_lot::Mutex;
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};

use crate::eventfd::EventFd;
use crate::pb::ketchpb::RaftBatch;

/// One batch for one peer.
pub struct OutboundBatch {
    pub to: u64,
    pub is_snapshot: bool,
    pub bytes: Vec<u8>,
}

/// Batches waiting for the transport, with a doorbell for its event loop.
pub struct PeerOutbox {
    queue: Mutex<Vec<OutboundBatch>>,
    doorbell: EventFd,
}

impl PeerOutbox {
    pub fn new() -> io::Result<PeerOutbox> {
        Ok(PeerOutbox { queue: Mutex::new(Vec::new()), doorbell: EventFd::new()? })
    }

    /// Readable when [`PeerOutbox::take`] has batches.
    pub fn fd(&self) -> RawFd {
        self.doorbell.fd()
    }

    /// Takes every waiting batch; clears the doorbell first, so a batch
    /// queued meanwhile is taken now or rings again.
    pub fn take(&self) -> Vec<OutboundBatch> {
        self.doorbell.clear();
        std::mem::take(&mut *self.queue.lock())
    }

    /// Queues a Ready's messages, one batch per peer (snapshots alone).
    pub(crate) fn send(&self, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        let mut per_peer: BTreeMap<u64, RaftBatch> = BTreeMap::new();
        let mut batches = Vec::new();
        for m in messages {
            let bytes = m.write_to_bytes().expect("encoding a raft message cannot fail");
            if m.get_msg_type() == MessageType::MsgSnapshot {
                let batch = RaftBatch { messages: vec![bytes.into()] };
                batches.push(OutboundBatch { to: m.to, is_snapshot: true, bytes: batch.encode_to_vec() });
            } else {
                per_peer.entry(m.to).or_default().messages.push(bytes.into());
            }
        }
        batches.extend(per_peer.into_iter().map(|(to, batch)| OutboundBatch {
            to,
            is_snapshot: false,
            bytes: batch.encode_to_vec(),
        }));
        let was_empty = {
            let mut q = self.queue.lock();
            let empty = q.is_empty();
            q.extend(batches);
            empty
        };
        if was_empty {
            self.doorbell.ring();
        }
    }
}

/// Decodes a batch a peer sent.
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<Message>, String> {
    let batch = RaftBatch::decode(bytes).map_err(|e| format!("undecodable raft batch: {e}"))?;
    batch
        .messages
        .iter()
        .map(|m| Message::parse_from_bytes(m).map_err(|e| format!("undecodable raft message: {e}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(to: u64, t: MessageType) -> Message {
        let mut m = Message { to, from: 1, ..Message::default() };
        m.set_msg_type(t);
        m
    }

    #[test]
    fn one_batch_per_peer_in_order_and_snapshots_alone() {
        let out = PeerOutbox::new().unwrap();
        let mut a = msg(2, MessageType::MsgAppend);
        a.index = 7;
        let mut b = msg(2, MessageType::MsgHeartbeat);
        b.commit = 9;
        out.send(vec![a, msg(3, MessageType::MsgSnapshot), b, msg(3, MessageType::MsgHeartbeat)]);
        let batches = out.take();
        assert_eq!(batches.len(), 3);
        let snap = batches.iter().find(|b| b.is_snapshot).unwrap();
        assert_eq!(snap.to, 3);
        assert_eq!(decode_batch(&snap.bytes).unwrap()[0].get_msg_type(), MessageType::MsgSnapshot);
        let to2 = batches.iter().find(|b| b.to == 2).unwrap();
        let decoded = decode_batch(&to2.bytes).unwrap();
        assert_eq!((decoded[0].index, decoded[1].commit), (7, 9));
        assert!(out.take().is_empty());
        assert!(decode_batch(b"\xff\xff").is_err());
    }
}
