//! Record framing: how one record is laid out in a segment, and how it is
//! checked on the way back in. The layout is drawn in the module doc of
//! [`super`]; the constants here are the single source of the numbers.

/// Bytes before the payload: length (4), crc (4), type (1), reserved (3).
pub(crate) const HEADER_LEN: usize = 12;
/// Every record starts at a multiple of this. Replay only has to look for a
/// record at aligned offsets when it asks "does anything valid follow?".
pub(crate) const ALIGN: usize = 8;

/// The kind of a record, stored in its type byte. Zero is never a valid
/// type, so a zero-filled region never decodes as a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum RecordType {
    /// Opaque bytes given at create; first record of every segment.
    Metadata = 1,
    /// One `eraftpb::Entry`, protobuf-encoded.
    Entry = 2,
    /// One `eraftpb::HardState`, protobuf-encoded.
    HardState = 3,
    /// One snapshot mark as an `eraftpb::SnapshotMetadata`, protobuf-encoded.
    SnapshotMark = 4,
}

impl RecordType {
    fn from_u8(b: u8) -> Option<RecordType> {
        match b {
            1 => Some(RecordType::Metadata),
            2 => Some(RecordType::Entry),
            3 => Some(RecordType::HardState),
            4 => Some(RecordType::SnapshotMark),
            _ => None,
        }
    }
}

/// Total bytes a record with a `payload_len`-byte payload takes on disk.
pub(crate) fn frame_len(payload_len: usize) -> usize {
    (HEADER_LEN + payload_len).next_multiple_of(ALIGN)
}

/// The checksum binds the record to the place it was written: the segment's
/// sequence number and the record's byte offset go in first. A stale record
/// left from another file or an earlier life of this one, or a valid-looking
/// frame inside an entry's payload, then fails the check where it is found.
fn checksum(seq: u64, offset: u64, len_and_type: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(&offset.to_le_bytes());
    h.update(len_and_type);
    h.update(payload);
    h.finalize()
}

/// Appends one framed record to `buf`. `offset` is the file offset at which
/// the end of `buf` will land; `write_payload` appends the payload bytes.
/// Returns `Err(len)` if the payload does not fit the 32-bit length field
/// (`buf` is then left as it was).
pub(crate) fn encode<E>(
    buf: &mut Vec<u8>,
    seq: u64,
    offset: u64,
    ty: RecordType,
    write_payload: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<Result<(), usize>, E> {
    debug_assert_eq!(offset % ALIGN as u64, 0, "records start aligned");
    let start = buf.len();
    buf.resize(start + HEADER_LEN, 0);
    if let Err(e) = write_payload(buf) {
        buf.truncate(start);
        return Err(e);
    }
    let payload_len = buf.len() - start - HEADER_LEN;
    let Ok(len32) = u32::try_from(payload_len) else {
        buf.truncate(start);
        return Ok(Err(payload_len));
    };
    let (head, payload) = buf[start..].split_at_mut(HEADER_LEN);
    head[0..4].copy_from_slice(&len32.to_le_bytes());
    head[8] = ty as u8;
    // head[9..12] stay zero (reserved).
    let mut len_and_type = [0u8; 8];
    len_and_type[0..4].copy_from_slice(&head[0..4]);
    len_and_type[4..8].copy_from_slice(&head[8..12]);
    let crc = checksum(seq, offset, &len_and_type, payload);
    head[4..8].copy_from_slice(&crc.to_le_bytes());
    buf.resize(start + frame_len(payload_len), 0);
    Ok(Ok(()))
}

/// One record read back.
#[derive(Debug)]
pub(crate) struct Frame<'a> {
    pub ty: RecordType,
    pub payload: &'a [u8],
    /// Offset of the next record.
    pub next: usize,
}

/// Decodes the record at `off` of a segment whose sequence number is `seq`.
/// The error is the reason it is not a valid record, for the message.
pub(crate) fn decode(data: &[u8], seq: u64, off: usize) -> Result<Frame<'_>, String> {
    let rest = &data[off..];
    if rest.len() < HEADER_LEN {
        return Err(format!("record header cut short ({} of {HEADER_LEN} bytes)", rest.len()));
    }
    let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    // Cheap header checks first: replay's forward scan calls this at every
    // aligned offset of a damaged tail, and must not checksum megabytes of
    // garbage each time a random length happens to fit.
    let Some(ty) = RecordType::from_u8(rest[8]) else {
        return Err(format!("invalid record type {}", rest[8]));
    };
    if rest[9..12] != [0, 0, 0] {
        return Err("nonzero reserved header bytes".to_owned());
    }
    let total = frame_len(len);
    if total > rest.len() {
        return Err(format!("record of {total} bytes runs past the end of the file ({} bytes left)", rest.len()));
    }
    let payload = &rest[HEADER_LEN..HEADER_LEN + len];
    let mut len_and_type = [0u8; 8];
    len_and_type[0..4].copy_from_slice(&rest[0..4]);
    len_and_type[4..8].copy_from_slice(&rest[8..12]);
    if checksum(seq, off as u64, &len_and_type, payload) != crc {
        return Err("checksum mismatch".to_owned());
    }
    Ok(Frame { ty, payload, next: off + total })
}

/// True if a valid record starts at any aligned offset after `off`. Used to
/// tell a torn tail (nothing valid after the bad record) from corruption.
pub(crate) fn valid_record_after(data: &[u8], seq: u64, off: usize) -> bool {
    (off + ALIGN..data.len()).step_by(ALIGN).any(|o| decode(data, seq, o).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(seq: u64, offset: u64, ty: RecordType, payload: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        encode::<()>(&mut buf, seq, offset, ty, |b| {
            b.extend_from_slice(payload);
            Ok(())
        })
        .unwrap()
        .unwrap();
        buf
    }

    #[test]
    fn wal_record_layout_is_little_endian_and_aligned() {
        let buf = one(7, 0, RecordType::Entry, b"abc");
        assert_eq!(buf.len(), 16);
        assert_eq!(&buf[0..4], &[3, 0, 0, 0]);
        assert_eq!(buf[8], RecordType::Entry as u8);
        assert_eq!(&buf[9..12], &[0, 0, 0]);
        assert_eq!(&buf[12..15], b"abc");
        assert_eq!(buf[15], 0);
        let f = decode(&buf, 7, 0).unwrap();
        assert_eq!((f.ty, f.payload, f.next), (RecordType::Entry, &b"abc"[..], 16));
    }

    #[test]
    fn wal_record_is_bound_to_its_segment_and_offset() {
        let buf = one(7, 0, RecordType::Entry, b"abc");
        assert!(decode(&buf, 8, 0).is_err(), "same bytes in another segment");
        let mut shifted = vec![0u8; 8];
        shifted.extend_from_slice(&buf);
        assert!(decode(&shifted, 7, 8).is_err(), "same bytes at another offset");
    }

    #[test]
    fn wal_record_zeros_never_decode() {
        let zeros = vec![0u8; 64];
        assert!(decode(&zeros, 0, 0).is_err());
        assert!(!valid_record_after(&zeros, 0, 0));
    }
}
