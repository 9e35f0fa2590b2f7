//! A revision and its byte form, the key of the backend's "key" table.
//!
//! ```text
//!   main (8 bytes, big-endian)   '_'   sub (8 bytes, big-endian)   ['t']
//!   00 00 00 00 00 00 00 05      5f    00 00 00 00 00 00 00 01     74
//!   └─ revision 5 ──────────┘          └─ 2nd write of that txn ┘  └ tombstone
//! ```
//!
//! Big-endian so that byte order is revision order: a scan of the table is a
//! replay of history, which is how the key index is rebuilt on open and how
//! compaction finds everything at or below its revision with one range.

/// Length of an encoded revision without the tombstone marker.
pub(crate) const REV_BYTES_LEN: usize = 8 + 1 + 8;
/// Appended to a revision's bytes when the record is a delete.
pub(crate) const TOMBSTONE_MARK: u8 = b't';

/// (main, sub): main is the store revision a client sees; sub orders the
/// writes of one txn, which all share a main revision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub(crate) const fn new(main: i64, sub: i64) -> Self {
        Revision { main, sub }
    }

    /// The record key for this revision; `tombstone` appends the marker.
    pub(crate) fn to_key(self, tombstone: bool) -> Vec<u8> {
        let mut b = Vec::with_capacity(REV_BYTES_LEN + 1);
        b.extend_from_slice(&self.main.to_be_bytes());
        b.push(b'_');
        b.extend_from_slice(&self.sub.to_be_bytes());
        if tombstone {
            b.push(TOMBSTONE_MARK);
        }
        b
    }

    /// Parses a record key; returns the revision and whether it is a tombstone.
    /// `None` for bytes that are not a record key (a corrupt backend).
    pub(crate) fn from_key(b: &[u8]) -> Option<(Revision, bool)> {
        let tombstone = match b.len() {
            REV_BYTES_LEN => false,
            n if n == REV_BYTES_LEN + 1 && b[REV_BYTES_LEN] == TOMBSTONE_MARK => true,
            _ => return None,
        };
        if b[8] != b'_' {
            return None;
        }
        let main = i64::from_be_bytes(b[0..8].try_into().ok()?);
        let sub = i64::from_be_bytes(b[9..17].try_into().ok()?);
        Some((Revision { main, sub }, tombstone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mvcc_revision_bytes_roundtrip_and_order() {
        let revs = [
            Revision::new(0, 0),
            Revision::new(1, 0),
            Revision::new(1, 1),
            Revision::new(1, 256),
            Revision::new(2, 0),
            Revision::new(256, 0),
            Revision::new(i64::MAX, i64::MAX),
        ];
        for w in revs.windows(2) {
            assert!(w[0].to_key(false) < w[1].to_key(false));
            // A tombstone sorts right after its own live form, still before the next revision.
            assert!(w[0].to_key(true) < w[1].to_key(false));
        }
        for r in revs {
            assert_eq!(Revision::from_key(&r.to_key(false)), Some((r, false)));
            assert_eq!(Revision::from_key(&r.to_key(true)), Some((r, true)));
        }
        assert_eq!(Revision::from_key(b"short"), None);
    }
}
