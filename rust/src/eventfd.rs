//! A Linux eventfd used as a doorbell: engine threads ring it when a queue
//! goes from empty to non-empty; the caller's event loop waits for it to be
//! readable and clears it before taking the queue.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub struct EventFd(OwnedFd);

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes no pointers; a negative return is checked below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by eventfd and is owned by nobody else.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    pub fn ring(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64. The only failure for a
        // non-blocking eventfd is a saturated counter, which still wakes.
        unsafe { libc::write(self.fd(), (&raw const one).cast(), 8) };
    }

    pub fn clear(&self) {
        let mut buf = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a valid 8-byte buffer. EAGAIN
        // (nothing signalled) is expected and ignored.
        unsafe { libc::read(self.fd(), buf.as_mut_ptr().cast(), 8) };
    }
}
