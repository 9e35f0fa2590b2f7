//! A gRPC codec that moves message bytes untouched.
//!
//! The engine decodes every request itself (prost, on the thread that runs
//! it) and answers with encoded bytes, so the front door never builds a
//! message: it checks the size and passes the bytes through.

use bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

use crate::metrics::{self, grpc::MethodCounters};

/// Raw bytes both ways; refuses a request larger than `max_receive` in
/// grpc-go's words, which etcd's clients show.
#[derive(Clone, Copy)]
pub struct RawCodec {
    pub max_receive: usize,
}

impl RawCodec {
    /// Refuses a request of `n` bytes over the limit (the JSON gateway's requests meet it too).
    pub fn check_size(&self, n: usize) -> Result<(), Status> {
        if n > self.max_receive {
            return Err(Status::resource_exhausted(format!(
                "grpc: received message larger than max ({n} vs. {})",
                self.max_receive
            )));
        }
        Ok(())
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder { max_receive: self.max_receive }
    }
}

pub struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

pub struct RawDecoder {
    max_receive: usize,
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let n = src.remaining();
        RawCodec { max_receive: self.max_receive }.check_size(n)?;
        Ok(Some(src.copy_to_bytes(n)))
    }
}

/// [`RawCodec`] for the client port: also counts each message and its bytes
/// for `/metrics` (etcd counts bytes in its gRPC codec; go-grpc-prometheus
/// counts messages per method).
#[derive(Clone, Copy)]
pub struct CountedCodec {
    pub max_receive: usize,
    pub counters: &'static MethodCounters,
}

impl Codec for CountedCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = CountedEncoder;
    type Decoder = CountedDecoder;

    fn encoder(&mut self) -> CountedEncoder {
        CountedEncoder { counters: self.counters }
    }

    fn decoder(&mut self) -> CountedDecoder {
        CountedDecoder { raw: RawDecoder { max_receive: self.max_receive }, counters: self.counters }
    }
}

pub struct CountedEncoder {
    counters: &'static MethodCounters,
}

impl Encoder for CountedEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        metrics::GRPC_SENT_BYTES.add(item.len() as u64);
        self.counters.sent.inc();
        dst.put(item);
        Ok(())
    }
}

pub struct CountedDecoder {
    raw: RawDecoder,
    counters: &'static MethodCounters,
}

impl Decoder for CountedDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let message = self.raw.decode(src)?;
        if let Some(m) = &message {
            metrics::GRPC_RECEIVED_BYTES.add(m.len() as u64);
            self.counters.received.inc();
        }
        Ok(message)
    }
}
