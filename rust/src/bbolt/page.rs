//! bbolt's on-disk structures, byte for byte (little-endian, as bbolt
//! writes them on every platform etcd runs on). See the module doc.

/// Page header: id u64, flags u16, count u16, overflow u32.
pub const PAGE_HEADER: usize = 16;
/// Leaf element: flags u32, pos u32, ksize u32, vsize u32.
pub const LEAF_ELEMENT: usize = 16;
/// Branch element: pos u32, ksize u32, pgid u64.
pub const BRANCH_ELEMENT: usize = 16;
/// A bucket's value in its parent: root pgid u64, sequence u64.
pub const BUCKET_HEADER: usize = 16;

pub const BRANCH_PAGE: u16 = 0x01;
pub const LEAF_PAGE: u16 = 0x02;
pub const META_PAGE: u16 = 0x04;
pub const FREELIST_PAGE: u16 = 0x10;
/// Leaf element flag: the value is a bucket header (and maybe an inline page).
pub const BUCKET_LEAF: u32 = 0x01;

pub const MAGIC: u32 = 0xED0C_DAED;
pub const VERSION: u32 = 2;
/// The meta field the checksum covers up to: magic, version, page size,
/// flags, root bucket (16), freelist, pgid, txid.
pub const META_CHECKSUMMED: usize = 56;
/// A meta's freelist pgid when the freelist is not kept in the file.
pub const NO_FREELIST: u64 = u64::MAX;
/// A freelist page's count at or above this is in its first u64.
pub const FREELIST_COUNT_IN_BODY: u16 = 0xFFFF;

/// The page size ketch writes (bbolt takes the OS page size: 4 KiB here).
pub const WRITE_PAGE_SIZE: usize = 4096;

/// A meta page's content after the page header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub magic: u32,
    pub version: u32,
    pub page_size: u32,
    pub flags: u32,
    pub root: u64,
    pub root_sequence: u64,
    pub freelist: u64,
    /// High-water mark: pages 0..pgid make the database.
    pub pgid: u64,
    pub txid: u64,
    pub checksum: u64,
}

impl Meta {
    pub fn encode(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0..4].copy_from_slice(&self.magic.to_le_bytes());
        b[4..8].copy_from_slice(&self.version.to_le_bytes());
        b[8..12].copy_from_slice(&self.page_size.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.root.to_le_bytes());
        b[24..32].copy_from_slice(&self.root_sequence.to_le_bytes());
        b[32..40].copy_from_slice(&self.freelist.to_le_bytes());
        b[40..48].copy_from_slice(&self.pgid.to_le_bytes());
        b[48..56].copy_from_slice(&self.txid.to_le_bytes());
        let sum = fnv1a64(&b[..META_CHECKSUMMED]);
        b[56..64].copy_from_slice(&sum.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Meta> {
        let b: &[u8; 64] = b.get(..64)?.try_into().ok()?;
        Some(Meta {
            magic: u32_at(b, 0),
            version: u32_at(b, 4),
            page_size: u32_at(b, 8),
            flags: u32_at(b, 12),
            root: u64_at(b, 16),
            root_sequence: u64_at(b, 24),
            freelist: u64_at(b, 32),
            pgid: u64_at(b, 40),
            txid: u64_at(b, 48),
            checksum: u64_at(b, 56),
        })
    }

    /// bbolt's Validate, with its three answers.
    pub fn validate(&self, raw: &[u8]) -> Result<(), &'static str> {
        if self.magic != MAGIC {
            return Err("invalid database (wrong magic: not a bbolt file)");
        }
        if self.version != VERSION {
            return Err("version mismatch");
        }
        if self.checksum != fnv1a64(&raw[..META_CHECKSUMMED]) {
            return Err("checksum error");
        }
        Ok(())
    }
}

/// FNV-1a, 64 bits: the meta page checksum.
pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

pub fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

pub fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

pub fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Writes a page header at the start of `page`.
pub fn put_header(page: &mut [u8], id: u64, flags: u16, count: u16, overflow: u32) {
    page[0..8].copy_from_slice(&id.to_le_bytes());
    page[8..10].copy_from_slice(&flags.to_le_bytes());
    page[10..12].copy_from_slice(&count.to_le_bytes());
    page[12..16].copy_from_slice(&overflow.to_le_bytes());
}
