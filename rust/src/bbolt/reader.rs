//! Reads a bbolt file, trusting nothing in it: every page reference is
//! checked against the high-water mark and the file's length, every page
//! is used once, every element lies inside its page, keys ascend, and every
//! page is either in the tree or on the freelist (bbolt's `tx.Check`). A
//! file that fails any of these is refused whole, before anything is used.

use super::page::{
    u16_at, u32_at, u64_at, Meta, BRANCH_ELEMENT, BRANCH_PAGE, BUCKET_HEADER, BUCKET_LEAF, FREELIST_COUNT_IN_BODY,
    FREELIST_PAGE, LEAF_ELEMENT, LEAF_PAGE, META_PAGE, NO_FREELIST, PAGE_HEADER,
};
use super::SnapshotError;

/// Deeper than any real tree (a 4 KiB-page tree of 2^64 keys is shorter):
/// a cycle or a forged chain of branches stops here.
const MAX_DEPTH: usize = 64;

/// Called with each key and value of a bucket, in key order.
pub type Visit<'v> = dyn FnMut(&[u8], &[u8]) -> Result<(), SnapshotError> + 'v;
/// Called by the checking walk with each leaf element: key, value span, flags.
type Check<'v> = dyn FnMut(&[u8], Span, u32) -> Result<(), SnapshotError> + 'v;

/// A bbolt file whose structure has been checked.
pub struct BboltFile<'a> {
    data: &'a [u8],
    page_size: usize,
    meta: Meta,
    /// Top-level buckets: (name, where its content is).
    buckets: Vec<(Vec<u8>, BucketAt)>,
}

/// Where a bucket's tree is: a root page, or a leaf inline in its parent.
#[derive(Clone, Copy, Debug)]
enum BucketAt {
    Page(u64),
    /// Byte range of the inline page within the file.
    Inline(usize, usize),
}

fn bad(msg: impl std::fmt::Display) -> SnapshotError {
    SnapshotError::new(format!("bad bbolt file: {msg}"))
}

impl<'a> BboltFile<'a> {
    /// Checks `data` (the database bytes, without etcd's hash trailer).
    pub fn open(data: &'a [u8]) -> Result<BboltFile<'a>, SnapshotError> {
        let (meta, page_size) = pick_meta(data)?;
        let needed = meta.pgid.checked_mul(page_size as u64).ok_or_else(|| bad("page count overflows"))?;
        if needed > data.len() as u64 {
            return Err(bad(format!(
                "truncated: the meta page counts {} pages of {page_size} bytes ({needed} bytes) but the file has {} bytes",
                meta.pgid,
                data.len()
            )));
        }
        let mut file = BboltFile { data, page_size, meta, buckets: Vec::new() };
        let mut used = vec![false; usize::try_from(meta.pgid).map_err(|_| bad("too many pages"))?];
        used[0] = true;
        used[1] = true;
        let mut check = Walk { file: &file, used: &mut used };
        // The root bucket holds only buckets.
        let mut top = Vec::new();
        check.tree(BucketAt::Page(meta.root), 0, None, None, &mut |k, v, flags| {
            if flags & BUCKET_LEAF == 0 {
                return Err(bad(format!("the root bucket holds a plain key {:?}", String::from_utf8_lossy(k))));
            }
            top.push((k.to_vec(), v));
            Ok(())
        })?;
        let mut buckets = Vec::new();
        for (name, (start, len)) in top {
            let at = check.bucket_at(start, len)?;
            let label = String::from_utf8_lossy(&name).into_owned();
            check.tree(at, 0, None, None, &mut |k, _, flags| {
                if flags & BUCKET_LEAF != 0 {
                    return Err(bad(format!(
                        "bucket {label:?} holds a nested bucket {:?}",
                        String::from_utf8_lossy(k)
                    )));
                }
                Ok(())
            })?;
            buckets.push((name, at));
        }
        check.freelist()?;
        if let Some(p) = used.iter().position(|u| !u) {
            if meta.freelist != NO_FREELIST {
                return Err(bad(format!("page {p} is neither reachable nor free")));
            }
        }
        file.buckets = buckets;
        Ok(file)
    }

    /// bbolt's tx.Size(): the high-water mark in bytes.
    pub fn size(&self) -> u64 {
        self.meta.pgid * self.page_size as u64
    }

    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// The top-level bucket names, in byte order.
    pub fn bucket_names(&self) -> impl Iterator<Item = &[u8]> {
        self.buckets.iter().map(|(n, _)| n.as_slice())
    }

    /// Every key and value of bucket `name` in key order (nothing if there
    /// is no such bucket). The structure was checked at open.
    pub fn for_each(&self, name: &[u8], f: &mut Visit<'_>) -> Result<(), SnapshotError> {
        let Some((_, at)) = self.buckets.iter().find(|(n, _)| n == name) else { return Ok(()) };
        let mut used = Vec::new();
        let walk = Walk { file: self, used: &mut used };
        walk.visit(*at, f)
    }

    pub fn has_bucket(&self, name: &[u8]) -> bool {
        self.buckets.iter().any(|(n, _)| n == name)
    }
}

/// bbolt's choice of meta page: page size from page 0 (or, when page 0 is
/// bad, the common sizes tried for page 1), then the valid meta with the
/// higher transaction ID.
fn pick_meta(data: &[u8]) -> Result<(Meta, usize), SnapshotError> {
    if data.len() < PAGE_HEADER + 64 {
        return Err(bad(format!("{} bytes is too short for a bbolt file", data.len())));
    }
    let read = |at: usize| -> Option<(Meta, &[u8])> {
        let raw = data.get(at + PAGE_HEADER..at + PAGE_HEADER + 64)?;
        Some((Meta::decode(raw)?, raw))
    };
    let (m0, raw0) = read(0).ok_or_else(|| bad("no meta page"))?;
    let first = m0.validate(raw0).and_then(|()| check_meta_page(data, 0));
    let mut sizes = vec![];
    if first.is_ok() {
        sizes.push(m0.page_size as usize);
    } else {
        sizes.extend([4096usize, 8192, 16384, 65536, 1024, 2048, 32768]);
    }
    let mut best: Option<(Meta, usize)> = first.is_ok().then_some((m0, m0.page_size as usize));
    let mut errors = vec![first.err().unwrap_or("")];
    for size in sizes {
        if let Some((m1, raw1)) = read(size) {
            let ok = m1.validate(raw1).and_then(|()| check_meta_page(data, size));
            match ok {
                Ok(()) if m1.page_size as usize == size => {
                    if best.is_none_or(|(b, _)| m1.txid > b.txid) {
                        best = Some((m1, size));
                    }
                }
                Ok(()) => errors.push("meta page size disagrees with its place"),
                Err(e) => errors.push(e),
            }
        }
    }
    let (meta, page_size) =
        best.ok_or_else(|| bad(errors.iter().find(|e| !e.is_empty()).copied().unwrap_or("no valid meta page")))?;
    if !(512..=1 << 20).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(bad(format!("page size {page_size} is not a power of two between 512 and 1 MiB")));
    }
    if meta.pgid < 2 || meta.root < 2 || meta.root >= meta.pgid {
        return Err(bad(format!("root page {} is outside the {} pages", meta.root, meta.pgid)));
    }
    if meta.freelist != NO_FREELIST && (meta.freelist < 2 || meta.freelist >= meta.pgid) {
        return Err(bad(format!("freelist page {} is outside the {} pages", meta.freelist, meta.pgid)));
    }
    Ok((meta, page_size))
}

fn check_meta_page(data: &[u8], at: usize) -> Result<(), &'static str> {
    if u16_at(data, at + 8) != META_PAGE {
        return Err("meta page has the wrong page type");
    }
    Ok(())
}

/// One checking walk: `used` marks the pages seen so far (empty: no marking).
struct Walk<'f, 'a> {
    file: &'f BboltFile<'a>,
    used: &'f mut Vec<bool>,
}

/// A value's byte range in the file, for the caller to look at later.
type Span = (usize, usize);

impl<'a> Walk<'_, 'a> {
    /// The bytes of page `pgid` and its overflow pages, checked and marked.
    fn page(&mut self, pgid: u64, flags_ok: &[u16]) -> Result<&'a [u8], SnapshotError> {
        let data: &'a [u8] = self.file.data;
        let hwm = self.file.meta.pgid;
        if pgid < 2 || pgid >= hwm {
            return Err(bad(format!("page {pgid} is outside the {hwm} pages")));
        }
        let ps = self.file.page_size;
        let at = pgid as usize * ps;
        let head = &data[at..at + PAGE_HEADER];
        if u64_at(head, 0) != pgid {
            return Err(bad(format!("page {pgid} says it is page {}", u64_at(head, 0))));
        }
        let flags = u16_at(head, 8);
        if !flags_ok.contains(&flags) {
            return Err(bad(format!("page {pgid} has unexpected type {flags:#x}")));
        }
        let overflow = u64::from(u32_at(head, 12));
        let last = pgid + overflow;
        if last >= hwm {
            return Err(bad(format!("page {pgid} overflows past the last page ({overflow} more)")));
        }
        if !self.used.is_empty() {
            for p in pgid..=last {
                let slot = &mut self.used[p as usize];
                if *slot {
                    return Err(bad(format!("page {p} is used twice")));
                }
                *slot = true;
            }
        }
        Ok(&data[at..(last as usize + 1) * ps])
    }

    /// Walks a tree checking everything; calls `leaf` for every element with
    /// (key, value span, element flags).
    fn tree(
        &mut self,
        at: BucketAt,
        depth: usize,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
        leaf: &mut Check<'_>,
    ) -> Result<(), SnapshotError> {
        if depth > MAX_DEPTH {
            return Err(bad("the tree is deeper than any bbolt tree"));
        }
        let data: &'a [u8] = self.file.data;
        let (base, page): (usize, &'a [u8]) = match at {
            BucketAt::Page(pgid) => {
                let p = self.page(pgid, &[BRANCH_PAGE, LEAF_PAGE])?;
                (pgid as usize * self.file.page_size, p)
            }
            BucketAt::Inline(start, len) => {
                let p = &data[start..start + len];
                if p.len() < PAGE_HEADER || u16_at(p, 8) != LEAF_PAGE {
                    return Err(bad("an inline bucket is not a leaf page"));
                }
                (start, p)
            }
        };
        let flags = u16_at(page, 8);
        let count = usize::from(u16_at(page, 10));
        let elem = if flags == BRANCH_PAGE { BRANCH_ELEMENT } else { LEAF_ELEMENT };
        if PAGE_HEADER + count * elem > page.len() {
            return Err(bad(format!("page at byte {base} lists {count} elements, more than fit")));
        }
        let mut prev: Option<&[u8]> = None;
        if flags == BRANCH_PAGE {
            if count == 0 {
                return Err(bad(format!("branch page at byte {base} is empty")));
            }
            let mut children = Vec::with_capacity(count);
            for i in 0..count {
                let e = PAGE_HEADER + i * elem;
                let pos = u32_at(page, e) as usize;
                let ksize = u32_at(page, e + 4) as usize;
                let child = u64_at(page, e + 8);
                let key = slice(page, e, pos, ksize, 0)
                    .ok_or_else(|| bad(format!("branch element at byte {} points outside its page", base + e)))?;
                check_order(prev, key, lo, hi, base)?;
                prev = Some(key);
                children.push((key, child));
            }
            for (i, &(key, child)) in children.iter().enumerate() {
                // Keys under child i are at least its key (the first child
                // also takes anything smaller) and below the next child's.
                let clo = if i == 0 { lo } else { Some(key) };
                let chi = children.get(i + 1).map(|c| c.0).or(hi);
                self.tree(BucketAt::Page(child), depth + 1, clo, chi, leaf)?;
            }
            return Ok(());
        }
        for i in 0..count {
            let e = PAGE_HEADER + i * elem;
            let eflags = u32_at(page, e);
            let pos = u32_at(page, e + 4) as usize;
            let ksize = u32_at(page, e + 8) as usize;
            let vsize = u32_at(page, e + 12) as usize;
            let outside = || bad(format!("leaf element at byte {} points outside its page", base + e));
            let key = slice(page, e, pos, ksize, 0).ok_or_else(outside)?;
            slice(page, e, pos, ksize, vsize).ok_or_else(outside)?;
            if key.is_empty() {
                return Err(bad(format!("leaf element at byte {} has an empty key", base + e)));
            }
            check_order(prev, key, lo, hi, base)?;
            prev = Some(key);
            leaf(key, (base + e + pos + ksize, vsize), eflags)?;
        }
        Ok(())
    }

    /// A bucket header at `start` (in the file), checked: its root page, or
    /// the inline leaf page after it.
    fn bucket_at(&self, start: usize, len: usize) -> Result<BucketAt, SnapshotError> {
        if len < BUCKET_HEADER {
            return Err(bad(format!("bucket header at byte {start} is {len} bytes")));
        }
        let root = u64_at(self.file.data, start);
        if root != 0 {
            return Ok(BucketAt::Page(root));
        }
        Ok(BucketAt::Inline(start + BUCKET_HEADER, len - BUCKET_HEADER))
    }

    /// Walks a checked tree without checking again.
    fn visit(&self, at: BucketAt, f: &mut Visit<'_>) -> Result<(), SnapshotError> {
        let data = self.file.data;
        let page: &[u8] = match at {
            BucketAt::Page(pgid) => {
                let ps = self.file.page_size;
                let at = pgid as usize * ps;
                let overflow = u32_at(data, at + 12) as usize;
                &data[at..at + (overflow + 1) * ps]
            }
            BucketAt::Inline(start, len) => &data[start..start + len],
        };
        let count = usize::from(u16_at(page, 10));
        if u16_at(page, 8) == BRANCH_PAGE {
            for i in 0..count {
                let e = PAGE_HEADER + i * BRANCH_ELEMENT;
                self.visit(BucketAt::Page(u64_at(page, e + 8)), f)?;
            }
            return Ok(());
        }
        for i in 0..count {
            let e = PAGE_HEADER + i * LEAF_ELEMENT;
            let pos = u32_at(page, e + 4) as usize;
            let ksize = u32_at(page, e + 8) as usize;
            let vsize = u32_at(page, e + 12) as usize;
            let k = &page[e + pos..e + pos + ksize];
            let v = &page[e + pos + ksize..e + pos + ksize + vsize];
            f(k, v)?;
        }
        Ok(())
    }

    /// The freelist page: its IDs are pages no tree uses.
    fn freelist(&mut self) -> Result<(), SnapshotError> {
        let pgid = self.file.meta.freelist;
        if pgid == NO_FREELIST {
            return Ok(());
        }
        let page = self.page(pgid, &[FREELIST_PAGE])?.to_vec();
        let mut count = usize::from(u16_at(&page, 10));
        let mut at = PAGE_HEADER;
        if count == usize::from(FREELIST_COUNT_IN_BODY) {
            if page.len() < PAGE_HEADER + 8 {
                return Err(bad("freelist page is cut short"));
            }
            count = usize::try_from(u64_at(&page, PAGE_HEADER)).map_err(|_| bad("freelist count overflows"))?;
            at += 8;
        }
        if count.checked_mul(8).and_then(|n| n.checked_add(at)).is_none_or(|end| end > page.len()) {
            return Err(bad(format!("freelist lists {count} pages, more than its page holds")));
        }
        for i in 0..count {
            let id = u64_at(&page, at + i * 8);
            if id < 2 || id >= self.file.meta.pgid {
                return Err(bad(format!("freelist names page {id}, outside the {} pages", self.file.meta.pgid)));
            }
            let slot = &mut self.used[id as usize];
            if *slot {
                return Err(bad(format!("page {id} is both in use and free")));
            }
            *slot = true;
        }
        Ok(())
    }
}

/// The key at `page[e + pos..][..ksize]`, if it and the `vsize` bytes of
/// value after it lie inside the page.
fn slice(page: &[u8], e: usize, pos: usize, ksize: usize, vsize: usize) -> Option<&[u8]> {
    let start = e.checked_add(pos)?;
    let end = start.checked_add(ksize)?.checked_add(vsize)?;
    if end > page.len() {
        return None;
    }
    Some(&page[start..start + ksize])
}

fn check_order(
    prev: Option<&[u8]>,
    key: &[u8],
    lo: Option<&[u8]>,
    hi: Option<&[u8]>,
    base: usize,
) -> Result<(), SnapshotError> {
    if prev.is_some_and(|p| p >= key) || lo.is_some_and(|l| key < l) || hi.is_some_and(|h| key >= h) {
        return Err(bad(format!("keys out of order in the page at byte {base}")));
    }
    Ok(())
}
