//! Finished requests on their way back to the caller's event loop.
//!
//! Engine threads push answers here; the caller (Python's asyncio loop) waits
//! on one eventfd and takes every queued answer in one [`CompletionQueue::take`].
//! The eventfd is written only when the queue goes from empty to non-empty,
//! so a burst of a thousand answers costs the loop one wake-up and one GIL
//! acquisition, not a thousand.

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;

use crossbeam_channel::Sender;
use parking_lot::{Mutex, RwLock};

use crate::error::EtcdError;
use crate::eventfd::EventFd;

/// One answer: the caller's token and the encoded response, or the error.
pub struct Completion {
    pub token: u64,
    pub result: Result<Vec<u8>, EtcdError>,
}

/// Tokens carry their route in the top bits: 0 is this process's own
/// caller; any other value is a gRPC worker process connected over
/// [`crate::ipc`], whose answers go to that connection instead of the queue.
pub const ROUTE_SHIFT: u32 = 48;
pub const LOCAL_TOKEN_MASK: u64 = (1 << ROUTE_SHIFT) - 1;

pub struct CompletionQueue {
    queue: Mutex<Vec<Completion>>,
    eventfd: EventFd,
    routes: RwLock<HashMap<u16, Sender<Completion>>>,
}

impl CompletionQueue {
    pub fn new() -> io::Result<CompletionQueue> {
        Ok(CompletionQueue { queue: Mutex::new(Vec::new()), eventfd: EventFd::new()?, routes: RwLock::new(HashMap::new()) })
    }

    /// The fd to wait on for readability.
    pub fn fd(&self) -> RawFd {
        self.eventfd.fd()
    }

    /// Sends answers for tokens routed to `route` down `sink` from now on.
    pub fn add_route(&self, route: u16, sink: Sender<Completion>) {
        assert_ne!(route, 0, "route 0 is the local queue");
        self.routes.write().insert(route, sink);
    }

    /// Answers still arriving for a removed route are dropped: its caller is gone.
    pub fn remove_route(&self, route: u16) {
        self.routes.write().remove(&route);
    }

    pub fn push(&self, token: u64, result: Result<Vec<u8>, EtcdError>) {
        let route = (token >> ROUTE_SHIFT) as u16;
        if route != 0 {
            if let Some(sink) = self.routes.read().get(&route) {
                let _ = sink.send(Completion { token: token & LOCAL_TOKEN_MASK, result });
            }
            return;
        }
        let was_empty = {
            let mut q = self.queue.lock();
            q.push(Completion { token, result });
            q.len() == 1
        };
        if was_empty {
            self.wake();
        }
    }

    /// For a batch of answers all local to this process (the IPC client's reader).
    pub fn push_all(&self, completions: impl IntoIterator<Item = Completion>) {
        let was_empty = {
            let mut q = self.queue.lock();
            let before = q.len();
            q.extend(completions);
            before == 0 && !q.is_empty()
        };
        if was_empty {
            self.wake();
        }
    }

    /// Takes everything queued. Clears the eventfd first, so an answer pushed
    /// while we take is either taken now or wakes the loop again: never lost.
    pub fn take(&self) -> Vec<Completion> {
        self.eventfd.clear();
        std::mem::take(&mut *self.queue.lock())
    }

    fn wake(&self) {
        self.eventfd.ring();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: RawFd) -> bool {
        let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, zero timeout.
        unsafe { libc::poll(&raw mut pfd, 1, 0) == 1 }
    }

    #[test]
    fn wakes_once_per_burst_and_loses_nothing() {
        let q = CompletionQueue::new().unwrap();
        assert!(!readable(q.fd()));
        for token in 0..100 {
            q.push(token, Ok(vec![]));
        }
        assert!(readable(q.fd()));
        let got = q.take();
        assert_eq!(got.len(), 100);
        assert!(!readable(q.fd()), "take clears the eventfd");
        q.push(7, Err(EtcdError::EmptyKey));
        assert!(readable(q.fd()));
        let got = q.take();
        assert_eq!(got[0].token, 7);
        assert_eq!(got[0].result, Err(EtcdError::EmptyKey));
    }

    #[test]
    fn concurrent_producers() {
        let q = std::sync::Arc::new(CompletionQueue::new().unwrap());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let q = q.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        q.push(t * 1000 + i, Ok(vec![]));
                    }
                })
            })
            .collect();
        let mut seen = 0;
        while seen < 4000 {
            seen += q.take().len();
            std::thread::yield_now();
        }
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(seen, 4000);
    }
}
