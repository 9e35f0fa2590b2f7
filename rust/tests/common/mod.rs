//! What the single-engine integration tests share: a member's IDs and a
//! blocking client over the engine's one entry point (submit, then take the
//! completion queue until its answer comes).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ketch::{Engine, EtcdError, Method};
use prost::Message;

pub const MEMBER: u64 = 0x8e9e_05c5_2164_694d;
pub const CLUSTER: u64 = 0xcdf8_1819_4e3a_8c32;

pub struct Client {
    pub engine: Arc<Engine>,
    next_token: u64,
    /// Answers taken from the queue for tokens not asked about yet.
    stash: HashMap<u64, Result<Vec<u8>, EtcdError>>,
}

impl Client {
    pub fn new(engine: Arc<Engine>) -> Client {
        Client { engine, next_token: 1, stash: HashMap::new() }
    }

    /// One request, answered within 10 s (or the test fails).
    pub fn call<Req: Message, Resp: Message + Default>(
        &mut self,
        method: Method,
        req: &Req,
    ) -> Result<Resp, EtcdError> {
        self.call_raw(method, req.encode_to_vec())
            .map(|bytes| Resp::decode(bytes.as_slice()).expect("response decodes"))
    }

    /// One request as bytes (which need not decode), its answer as bytes.
    pub fn call_raw(&mut self, method: Method, request: Vec<u8>) -> Result<Vec<u8>, EtcdError> {
        let token = self.next_token;
        self.next_token += 1;
        self.engine.submit(method as u32, Bytes::from(request), token);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(r) = self.stash.remove(&token) {
                return r;
            }
            for c in self.engine.completions().take() {
                self.stash.insert(c.token, c.result);
            }
            assert!(Instant::now() < deadline, "no answer for token {token}");
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}
