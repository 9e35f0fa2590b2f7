//! CRC-32C (Castagnoli), the hash `etcdctl snapshot status` prints.

const fn table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0x82F6_3B78 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static TABLE: [u32; 256] = table();

/// Go's hash/crc32 with the Castagnoli table: `update` as many times as
/// needed, then `sum`.
#[derive(Default)]
pub struct Crc32c(u32);

impl Crc32c {
    pub fn update(&mut self, data: &[u8]) {
        let mut c = !self.0;
        for &b in data {
            c = TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
        }
        self.0 = !c;
    }

    pub fn sum(&self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_the_published_check_value() {
        let mut h = super::Crc32c::default();
        h.update(b"1234");
        h.update(b"56789");
        assert_eq!(h.sum(), 0xE306_9283);
    }
}
