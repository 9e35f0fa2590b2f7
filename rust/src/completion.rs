//! Finished requests on their way back to the caller's event loop.
//!
//! Engine threads push answers here; the caller (Python's asyncio loop) waits
//! on one eventfd and takes every queued answer in one [`CompletionQueue::take`].
//! The eventfd is written only when the queue goes from empty to non-empty,
//! so a burst of a thousand answers costs the loop one wake-up and one GIL
//! acquisition, not a thousand.
//!
//! The Rust front door (`crate::server`) does not use the queue: each of its
//! calls registers a [`Waiter`] under its token, and the engine thread that
//! answers hands the answer straight to it (a oneshot, or a stream's channel).

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;

use parking_lot::Mutex;

use crate::error::EtcdError;
use crate::eventfd::EventFd;

/// An engine answer: the encoded response, or the error.
pub type Answer = Result<Vec<u8>, EtcdError>;

/// One answer: the caller's token and the encoded response, or the error.
pub struct Completion {
    pub token: u64,
    pub result: Answer,
}

/// Tokens with this bit set belong to a [`Waiter`] registered by the Rust
/// front door (`crate::server`): their answers go straight to that waiter,
/// never through the eventfd queue. Python's tokens are small counters.
pub const WAITER_BIT: u64 = 1 << 63;

/// Where a waiter's answers go: the one answer of a unary call, or every
/// response of a stream (a Watch), in the order the engine pushed them.
pub enum Waiter {
    Once(tokio::sync::oneshot::Sender<Answer>),
    Stream(tokio::sync::mpsc::UnboundedSender<Answer>),
}

/// Waiters are spread over shards by token so that the tokio threads
/// registering calls and the engine threads answering them rarely meet on
/// one lock.
const WAITER_SHARDS: usize = 16;

pub struct CompletionQueue {
    queue: Mutex<Vec<Completion>>,
    eventfd: EventFd,
    waiters: [Mutex<HashMap<u64, Waiter>>; WAITER_SHARDS],
    /// The next waiter token, for every caller that registers waiters.
    next_waiter: std::sync::atomic::AtomicU64,
}

impl CompletionQueue {
    pub fn new() -> io::Result<CompletionQueue> {
        Ok(CompletionQueue {
            queue: Mutex::new(Vec::new()),
            eventfd: EventFd::new()?,
            waiters: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            next_waiter: std::sync::atomic::AtomicU64::new(1),
        })
    }

    /// The fd to wait on for readability.
    pub fn fd(&self) -> RawFd {
        self.eventfd.fd()
    }

    fn shard(&self, token: u64) -> &Mutex<HashMap<u64, Waiter>> {
        // Tokens come from a counter, so the low bits spread evenly.
        &self.waiters[(token as usize) % WAITER_SHARDS]
    }

    /// A token no other waiter has, with [`WAITER_BIT`] set.
    pub fn waiter_token(&self) -> u64 {
        WAITER_BIT | self.next_waiter.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Sends the answers for `token` (which has [`WAITER_BIT`] set) to `waiter`.
    pub fn add_waiter(&self, token: u64, waiter: Waiter) {
        debug_assert!(token & WAITER_BIT != 0, "waiter tokens carry WAITER_BIT");
        self.shard(token).lock().insert(token, waiter);
    }

    /// A stream's caller went away: answers still arriving for it are dropped.
    pub fn remove_waiter(&self, token: u64) {
        self.shard(token).lock().remove(&token);
    }

    /// Ends every stream waiter with `error` (the server is stopping: its
    /// watch streams never end by themselves).
    pub fn end_streams(&self, error: &EtcdError) {
        for shard in &self.waiters {
            shard.lock().retain(|_, w| match w {
                Waiter::Stream(tx) => {
                    let _ = tx.send(Err(error.clone()));
                    false
                }
                Waiter::Once(_) => true,
            });
        }
    }

    pub fn push(&self, token: u64, result: Answer) {
        if token & WAITER_BIT != 0 {
            let mut shard = self.shard(token).lock();
            if let Some(Waiter::Stream(tx)) = shard.get(&token) {
                if tx.send(result).is_err() {
                    // The stream's reader is gone.
                    shard.remove(&token);
                }
                return;
            }
            if let Some(Waiter::Once(tx)) = shard.remove(&token) {
                drop(shard);
                // The caller may have given up (its client went away).
                let _ = tx.send(result);
            }
            // No waiter: answered after its caller left, nobody to tell.
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
