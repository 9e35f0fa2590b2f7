//! Writes a fresh bbolt file in one pass: every bucket's B+tree bottom up
//! from its keys in order, then the root bucket naming them, then the
//! freelist and both meta pages. Nothing is ever freed, so the freelist is
//! empty and pages are handed out in file order from 3 on.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use super::page::{
    put_header, Meta, BRANCH_ELEMENT, BRANCH_PAGE, BUCKET_HEADER, BUCKET_LEAF, FREELIST_PAGE, LEAF_ELEMENT, LEAF_PAGE,
    MAGIC, META_PAGE, PAGE_HEADER, VERSION, WRITE_PAGE_SIZE,
};
use super::SnapshotError;

/// bbolt's minKeysPerPage: a branch holds at least two children (so the
/// tree always gets shorter going up).
const MIN_KEYS_PER_PAGE: usize = 2;

/// The file being written. Buckets must be added in name order.
pub struct BboltWriter {
    out: BufWriter<File>,
    page_size: usize,
    next_pgid: u64,
    /// (bucket name, its root pgid), in name order.
    buckets: Vec<(Vec<u8>, u64)>,
}

impl BboltWriter {
    /// Creates `path` (it must not exist).
    pub fn create(path: &Path) -> Result<BboltWriter, SnapshotError> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| SnapshotError::io(&format!("creating {}", path.display()), &e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        // Pages 0..3 (metas, freelist) are written last; pages from 3 on follow.
        let start = 3 * WRITE_PAGE_SIZE as u64;
        out.seek(SeekFrom::Start(start)).map_err(|e| SnapshotError::io("seeking", &e))?;
        Ok(BboltWriter { out, page_size: WRITE_PAGE_SIZE, next_pgid: 3, buckets: Vec::new() })
    }

    /// Starts the next bucket; its keys go in through the returned tree, in
    /// increasing byte order.
    pub fn bucket(&mut self, name: &[u8]) -> Result<TreeWriter<'_>, SnapshotError> {
        if let Some((last, _)) = self.buckets.last() {
            if last.as_slice() >= name {
                return Err(SnapshotError::new(format!(
                    "bbolt writer: bucket {:?} out of order",
                    String::from_utf8_lossy(name)
                )));
            }
        }
        self.buckets.push((name.to_vec(), 0));
        Ok(TreeWriter::new(self, 0))
    }

    /// Writes the root bucket, freelist and meta pages; syncs the file.
    /// Returns the file's size.
    pub fn finish(mut self) -> Result<u64, SnapshotError> {
        let buckets = std::mem::take(&mut self.buckets);
        let root = {
            let mut tree = TreeWriter::new(&mut self, BUCKET_LEAF);
            for (name, pgid) in &buckets {
                let mut header = [0u8; BUCKET_HEADER];
                header[..8].copy_from_slice(&pgid.to_le_bytes());
                tree.put(name, &header)?;
            }
            tree.finish()?
        };
        let hwm = self.next_pgid;
        let io = |what: &'static str| move |e: std::io::Error| SnapshotError::io(what, &e);
        self.out.flush().map_err(io("writing pages"))?;
        let mut head = vec![0u8; 3 * self.page_size];
        for txid in 0..2u64 {
            let at = txid as usize * self.page_size;
            put_header(&mut head[at..], txid, META_PAGE, 0, 0);
            let meta = Meta {
                magic: MAGIC,
                version: VERSION,
                page_size: self.page_size as u32,
                flags: 0,
                root,
                root_sequence: 0,
                freelist: 2,
                pgid: hwm,
                txid,
                checksum: 0,
            };
            head[at + PAGE_HEADER..at + PAGE_HEADER + 64].copy_from_slice(&meta.encode());
        }
        put_header(&mut head[2 * self.page_size..], 2, FREELIST_PAGE, 0, 0);
        let mut file = self.out.into_inner().map_err(|e| SnapshotError::io("writing pages", e.error()))?;
        file.seek(SeekFrom::Start(0)).map_err(io("seeking"))?;
        file.write_all(&head).map_err(io("writing the meta pages"))?;
        let size = hwm * self.page_size as u64;
        file.set_len(size).map_err(io("sizing the file"))?;
        file.sync_all().map_err(io("syncing"))?;
        Ok(size)
    }

    /// Writes one node (`elements` already laid out after the header) as
    /// page(s) of its own; returns its pgid.
    fn write_node(&mut self, flags: u16, count: usize, body: &[u8]) -> Result<u64, SnapshotError> {
        let pages = (PAGE_HEADER + body.len()).div_ceil(self.page_size);
        let pgid = self.next_pgid;
        let count =
            u16::try_from(count).map_err(|_| SnapshotError::new("bbolt writer: too many elements in a page".into()))?;
        let overflow =
            u32::try_from(pages - 1).map_err(|_| SnapshotError::new("bbolt writer: record too large".into()))?;
        let mut header = [0u8; PAGE_HEADER];
        put_header(&mut header, pgid, flags, count, overflow);
        let pad = pages * self.page_size - PAGE_HEADER - body.len();
        let io = |e: std::io::Error| SnapshotError::io("writing pages", &e);
        self.out.write_all(&header).map_err(io)?;
        self.out.write_all(body).map_err(io)?;
        self.out.write_all(&vec![0u8; pad]).map_err(io)?;
        self.next_pgid += pages as u64;
        Ok(pgid)
    }
}

/// One bucket's B+tree, written as its keys arrive.
pub struct TreeWriter<'w> {
    file: &'w mut BboltWriter,
    /// Leaf element flags for every key (BUCKET_LEAF for the root bucket).
    leaf_flags: u32,
    leaf: Node,
    /// (first key, pgid) of every leaf written so far.
    children: Vec<(Vec<u8>, u64)>,
    last: Option<Vec<u8>>,
}

/// Elements of the node being filled: (key, value).
#[derive(Default)]
struct Node {
    items: Vec<(Vec<u8>, Vec<u8>)>,
    size: usize,
}

impl<'w> TreeWriter<'w> {
    fn new(file: &'w mut BboltWriter, leaf_flags: u32) -> TreeWriter<'w> {
        TreeWriter {
            file,
            leaf_flags,
            leaf: Node { items: Vec::new(), size: PAGE_HEADER },
            children: Vec::new(),
            last: None,
        }
    }

    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), SnapshotError> {
        if key.is_empty() || self.last.as_deref().is_some_and(|l| l >= key) {
            return Err(SnapshotError::new(format!("bbolt writer: key {key:?} is empty or out of order")));
        }
        let grow = LEAF_ELEMENT + key.len() + value.len();
        if !self.leaf.items.is_empty() && self.leaf.size + grow > self.file.page_size {
            self.flush_leaf()?;
        }
        self.leaf.items.push((key.to_vec(), value.to_vec()));
        self.leaf.size += grow;
        self.last = Some(key.to_vec());
        Ok(())
    }

    fn flush_leaf(&mut self) -> Result<(), SnapshotError> {
        let items = std::mem::take(&mut self.leaf.items);
        self.leaf.size = PAGE_HEADER;
        let n = items.len();
        let mut body = vec![0u8; n * LEAF_ELEMENT];
        for (i, (k, v)) in items.iter().enumerate() {
            let at = i * LEAF_ELEMENT;
            // pos is from the element itself to its key.
            let pos = body.len() - at;
            body[at..at + 4].copy_from_slice(&self.leaf_flags.to_le_bytes());
            body[at + 4..at + 8].copy_from_slice(&(pos as u32).to_le_bytes());
            body[at + 8..at + 12].copy_from_slice(&(k.len() as u32).to_le_bytes());
            body[at + 12..at + 16].copy_from_slice(&(v.len() as u32).to_le_bytes());
            body.extend_from_slice(k);
            body.extend_from_slice(v);
        }
        let first = items.first().map(|(k, _)| k.clone()).unwrap_or_default();
        let pgid = self.file.write_node(LEAF_PAGE, n, &body)?;
        self.children.push((first, pgid));
        Ok(())
    }

    /// Writes what is left and the branch levels above; returns the root
    /// pgid (a bucket with no keys is one empty leaf).
    pub fn finish(mut self) -> Result<u64, SnapshotError> {
        if !self.leaf.items.is_empty() || self.children.is_empty() {
            self.flush_leaf()?;
        }
        let mut level = std::mem::take(&mut self.children);
        while level.len() > 1 {
            let mut next = Vec::new();
            let mut group: Vec<(Vec<u8>, u64)> = Vec::new();
            let mut size = PAGE_HEADER;
            let remaining = level.len();
            for (i, child) in level.into_iter().enumerate() {
                let grow = BRANCH_ELEMENT + child.0.len();
                // Keep two or more per page, and never leave one alone at the end.
                let left_after = remaining - i;
                if group.len() >= MIN_KEYS_PER_PAGE
                    && size + grow > self.file.page_size
                    && left_after >= MIN_KEYS_PER_PAGE
                {
                    next.push(self.write_branch(&std::mem::take(&mut group))?);
                    size = PAGE_HEADER;
                }
                size += grow;
                group.push(child);
            }
            next.push(self.write_branch(&group)?);
            level = next;
        }
        let root = level[0].1;
        if self.leaf_flags == 0 {
            if let Some(b) = self.file.buckets.last_mut() {
                b.1 = root;
            }
        }
        Ok(root)
    }

    fn write_branch(&mut self, children: &[(Vec<u8>, u64)]) -> Result<(Vec<u8>, u64), SnapshotError> {
        let n = children.len();
        let mut body = vec![0u8; n * BRANCH_ELEMENT];
        for (i, (k, pgid)) in children.iter().enumerate() {
            let at = i * BRANCH_ELEMENT;
            let pos = body.len() - at;
            body[at..at + 4].copy_from_slice(&(pos as u32).to_le_bytes());
            body[at + 4..at + 8].copy_from_slice(&(k.len() as u32).to_le_bytes());
            body[at + 8..at + 16].copy_from_slice(&pgid.to_le_bytes());
            body.extend_from_slice(k);
        }
        let first = children[0].0.clone();
        let pgid = self.file.write_node(BRANCH_PAGE, n, &body)?;
        Ok((first, pgid))
    }
}
