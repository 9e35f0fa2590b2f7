//! Finished requests on their way back to the caller's event loop.
//!
//! Engine threads push answers here; the caller (Python's asyncio loop) waits
//! on one eventfd and takes every queued answer in one [`CompletionQueue::take`].
//! The eventfd is written only when the queue goes from empty to non-empty,
//! so a burst of a thousand answers costs the loop one wake-up and one GIL
//! acquisition, not a thousand.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use parking_lot::Mutex;

use crate::error::EtcdError;

/// One answer: the caller's token and the encoded response, or the error.
pub struct Completion {
    pub token: u64,
    pub result: Result<Vec<u8>, EtcdError>,
}

pub struct CompletionQueue {
    queue: Mutex<Vec<Completion>>,
    eventfd: OwnedFd,
}

impl CompletionQueue {
    pub fn new() -> io::Result<CompletionQueue> {
        // SAFETY: eventfd takes no pointers; a negative return is checked below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by eventfd and is owned by nobody else.
        let eventfd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(CompletionQueue { queue: Mutex::new(Vec::new()), eventfd })
    }

    /// The fd to wait on for readability.
    pub fn fd(&self) -> RawFd {
        self.eventfd.as_raw_fd()
    }

    pub fn push(&self, token: u64, result: Result<Vec<u8>, EtcdError>) {
        let was_empty = {
            let mut q = self.queue.lock();
            q.push(Completion { token, result });
            q.len() == 1
        };
        if was_empty {
            self.wake();
        }
    }

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
        let mut buf = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a valid 8-byte buffer. EAGAIN
        // (nothing signalled) is expected and ignored.
        unsafe { libc::read(self.fd(), buf.as_mut_ptr().cast(), 8) };
        std::mem::take(&mut *self.queue.lock())
    }

    fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64. The only failure for a
        // non-blocking eventfd is a saturated counter, which still wakes.
        unsafe { libc::write(self.fd(), (&raw const one).cast(), 8) };
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
