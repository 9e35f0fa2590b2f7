//! The in-memory index: for every key, the revisions of its versions,
//! grouped into generations. The backend is keyed by revision only, so this
//! is the one place that knows which revision holds a key at a given time.
//!
//! A generation is one life of a key, from the put that creates it to the
//! delete that ends it. The delete's tombstone is the generation's last
//! revision, and an empty generation is then opened for the next life.
//!
//! `put(1.0); put(2.0); delete(3.0); put(4.0); delete(5.0)` on "foo":
//!
//! ```text
//!   key "foo", modified 5.0
//!   generations:
//!     {empty}                   ← the current (next) life; empty = deleted now
//!     {4.0, 5.0(t)}             created 4, ver 2 (5.0 is the tombstone)
//!     {1.0, 2.0, 3.0(t)}        created 1, ver 3
//! ```
//!
//! Compaction at `rev` drops every revision `<= rev` except the newest one
//! of the generation alive at `rev`, so a read at `rev` still finds it; a
//! generation whose tombstone is `<= rev` goes entirely (nobody can read the
//! key between its tombstone and `rev`). A key left with only the empty
//! generation leaves the index.
//!
//! ```text
//!   compact(2)   {empty} {4.0, 5.0(t)} {2.0, 3.0(t)}     keep 2.0
//!   compact(4)   {empty} {4.0, 5.0(t)}                   keep 4.0
//!   compact(5)   {empty}                                  key removed
//! ```
//!
//! After compaction a generation's first revision need no longer be its
//! creation, so each generation remembers `created` and `ver` (the version
//! of its newest revision) instead of deriving them from position.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

use bytes::Bytes;

use super::revision::Revision;

/// One life of a key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Generation {
    /// Version of the newest revision in `revs` (a tombstone counts too).
    pub ver: i64,
    /// Revision of the put that began this life.
    pub created: Revision,
    /// Ascending; the last one is a tombstone if this is not the last generation.
    pub revs: Vec<Revision>,
}

impl Generation {
    fn is_empty(&self) -> bool {
        self.revs.is_empty()
    }
}

/// What the index knows of one version found by [`KeyIndex::get`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Found {
    pub modified: Revision,
    pub created: Revision,
    pub version: i64,
}

/// All generations of one key; never empty (at least one, possibly empty, generation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyIndex {
    pub modified: Revision,
    pub generations: Vec<Generation>,
}

impl Default for KeyIndex {
    fn default() -> Self {
        KeyIndex { modified: Revision::default(), generations: vec![Generation::default()] }
    }
}

impl KeyIndex {
    /// Appends a put at `rev`; an empty current generation starts a new life.
    pub(crate) fn put(&mut self, rev: Revision) {
        debug_assert!(rev > self.modified, "put {rev:?} not after {:?}", self.modified);
        let g = self.generations.last_mut().expect("a key index always has a generation");
        if g.revs.is_empty() {
            g.created = rev;
            g.ver = 0;
        }
        g.revs.push(rev);
        g.ver += 1;
        self.modified = rev;
    }

    /// Rebuild-time form of the first put seen for a key: the stored KeyValue
    /// says when its life began and which version it is, which the (possibly
    /// compacted) history before it can no longer tell.
    pub(crate) fn restore(created: Revision, modified: Revision, ver: i64) -> KeyIndex {
        KeyIndex { modified, generations: vec![Generation { ver, created, revs: vec![modified] }] }
    }

    /// Ends the current life with a tombstone at `rev`. Returns false (and
    /// changes nothing) if the key is not alive.
    pub(crate) fn tombstone(&mut self, rev: Revision) -> bool {
        if self.generations.last().is_none_or(Generation::is_empty) {
            return false;
        }
        self.put(rev);
        self.generations.push(Generation::default());
        true
    }

    /// True when the key has no revisions at all (only the empty generation).
    pub(crate) fn is_empty(&self) -> bool {
        self.generations.len() == 1 && self.generations[0].is_empty()
    }

    /// The generation the key was alive in at `at`, if it was alive.
    fn find_generation(&self, at: i64) -> Option<&Generation> {
        let last = self.generations.len() - 1;
        for (i, g) in self.generations.iter().enumerate().rev() {
            let Some(first) = g.revs.first() else { continue };
            if i != last {
                // Deleted at or before `at`: the key is in the gap after this life.
                if g.revs.last().expect("non-empty").main <= at {
                    return None;
                }
            }
            if first.main <= at {
                return Some(g);
            }
        }
        None
    }

    /// The version of the key visible at main revision `at`, if alive then.
    pub(crate) fn get(&self, at: i64) -> Option<Found> {
        let g = self.find_generation(at)?;
        let n = g.revs.iter().rposition(|r| r.main <= at)?;
        Some(Found { modified: g.revs[n], created: g.created, version: g.ver - (g.revs.len() - 1 - n) as i64 })
    }

    /// Drops the revisions compaction at `at` no longer needs (see the module
    /// doc), adding the ones that must stay in the backend to `keep`.
    pub(crate) fn compact(&mut self, at: i64, keep: &mut HashSet<Revision>) {
        // The first generation that was still alive after `at` (its tombstone
        // is newer), or the last generation.
        let mut gi = 0;
        while gi < self.generations.len() - 1 {
            let g = &self.generations[gi];
            if g.revs.last().expect("non-last generations end in a tombstone").main > at {
                break;
            }
            gi += 1;
        }
        let last = self.generations.len() - 1;
        let g = &mut self.generations[gi];
        if let Some(n) = g.revs.iter().rposition(|r| r.main <= at) {
            keep.insert(g.revs[n]);
            g.revs.drain(..n);
            // A generation reduced to its tombstone holds nothing readable.
            if g.revs.len() == 1 && gi != last {
                keep.remove(&g.revs[0]);
                gi += 1;
            }
        }
        self.generations.drain(..gi);
    }

    /// The revision compaction at `at` would keep for this key, if any,
    /// without compacting: etcd's keyIndex.keep (what HashKV counts below
    /// the compact revision while the backend is still being compacted).
    pub(crate) fn keep(&self, at: i64, keep: &mut HashSet<Revision>) {
        let last = self.generations.len() - 1;
        let gi = self.generations[..last]
            .iter()
            .position(|g| g.revs.last().expect("non-last generations end in a tombstone").main > at)
            .unwrap_or(last);
        let g = &self.generations[gi];
        if let Some(n) = g.revs.iter().rposition(|r| r.main <= at) {
            // A generation's tombstone alone holds nothing readable.
            if !(gi != last && n == g.revs.len() - 1) {
                keep.insert(g.revs[n]);
            }
        }
    }
}

/// Which keys a request names, from its `key` / `range_end` pair as etcd reads them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KeySpan<'a> {
    /// `range_end` empty: just `key`.
    Single(&'a [u8]),
    /// `range_end` is "\0": every key `>= key` (so key "\0" means all keys).
    From(&'a [u8]),
    /// `[key, range_end)`; empty when `range_end <= key`.
    Range(&'a [u8], &'a [u8]),
}

impl<'a> KeySpan<'a> {
    pub(crate) fn new(key: &'a [u8], range_end: &'a [u8]) -> Self {
        match range_end {
            [] => KeySpan::Single(key),
            [0] => KeySpan::From(key),
            end => KeySpan::Range(key, end),
        }
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, k: &[u8]) -> bool {
        match *self {
            KeySpan::Single(key) => k == key,
            KeySpan::From(key) => k >= key,
            KeySpan::Range(key, end) => k >= key && k < end,
        }
    }
}

/// The index over all keys, in key order (range results come out sorted by key).
#[derive(Clone, Debug, Default)]
pub(crate) struct KeyTree {
    pub keys: BTreeMap<Bytes, KeyIndex>,
}

impl KeyTree {
    /// Each key in `span` alive at `at`, with what the index knows of its version then.
    pub(crate) fn range(&self, span: &KeySpan<'_>, at: i64) -> Vec<(Bytes, Found)> {
        let mut out = Vec::new();
        let mut visit = |k: &Bytes, ki: &KeyIndex| {
            if let Some(f) = ki.get(at) {
                out.push((k.clone(), f));
            }
        };
        match *span {
            KeySpan::Single(key) => {
                if let Some((k, ki)) = self.keys.get_key_value(key) {
                    visit(k, ki);
                }
            }
            KeySpan::From(key) => {
                for (k, ki) in self.keys.range::<[u8], _>((Bound::Included(key), Bound::Unbounded)) {
                    visit(k, ki);
                }
            }
            KeySpan::Range(key, end) => {
                // BTreeMap::range panics on an inverted range; etcd answers nothing.
                if key < end {
                    for (k, ki) in self.keys.range::<[u8], _>((Bound::Included(key), Bound::Excluded(end))) {
                        visit(k, ki);
                    }
                }
            }
        }
        out
    }

    pub(crate) fn get(&self, key: &[u8], at: i64) -> Option<Found> {
        self.keys.get(key).and_then(|ki| ki.get(at))
    }

    /// The revisions `<= at` that compacting at `at` would keep (see [`KeyIndex::keep`]).
    pub(crate) fn keep(&self, at: i64) -> HashSet<Revision> {
        let mut keep = HashSet::new();
        for ki in self.keys.values() {
            ki.keep(at, &mut keep);
        }
        keep
    }

    /// Compacts every key at `at`; returns the revisions `<= at` still needed.
    pub(crate) fn compact(&mut self, at: i64) -> HashSet<Revision> {
        let mut keep = HashSet::new();
        self.keys.retain(|_, ki| {
            ki.compact(at, &mut keep);
            !ki.is_empty()
        });
        keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    /// The module doc's example: put 1, put 2, delete 3, put 4, delete 5.
    fn foo() -> KeyIndex {
        let mut ki = KeyIndex::default();
        ki.put(r(1));
        ki.put(r(2));
        assert!(ki.tombstone(r(3)));
        ki.put(r(4));
        assert!(ki.tombstone(r(5)));
        ki
    }

    #[test]
    fn mvcc_key_index_get_across_generations() {
        let ki = foo();
        assert_eq!(ki.generations.len(), 3);
        assert_eq!(ki.get(0), None);
        let f1 = ki.get(1).unwrap();
        assert_eq!((f1.modified, f1.created, f1.version), (r(1), r(1), 1));
        let f2 = ki.get(2).unwrap();
        assert_eq!((f2.modified, f2.created, f2.version), (r(2), r(1), 2));
        assert_eq!(ki.get(3), None);
        let f4 = ki.get(4).unwrap();
        assert_eq!((f4.modified, f4.created, f4.version), (r(4), r(4), 1));
        assert_eq!(ki.get(5), None);
        assert_eq!(ki.get(100), None);
    }

    #[test]
    fn mvcc_key_index_tombstone_needs_a_live_key() {
        let mut ki = foo();
        assert!(!ki.tombstone(r(6)));
        assert_eq!(ki, foo());
    }

    #[test]
    fn mvcc_key_index_compact_as_drawn() {
        let mut keep = HashSet::new();
        let mut ki = foo();
        ki.compact(1, &mut keep);
        assert_eq!(keep, HashSet::from([r(1)]));
        assert_eq!(ki, foo());

        let mut ki = foo();
        keep.clear();
        ki.compact(2, &mut keep);
        assert_eq!(keep, HashSet::from([r(2)]));
        assert_eq!(ki.generations[0].revs, vec![r(2), r(3)]);
        assert_eq!(ki.get(2).unwrap().version, 2);

        let mut ki = foo();
        keep.clear();
        ki.compact(3, &mut keep);
        assert!(keep.is_empty());
        assert_eq!(ki.generations.len(), 2);
        assert_eq!(ki.generations[0].revs, vec![r(4), r(5)]);

        let mut ki = foo();
        keep.clear();
        ki.compact(4, &mut keep);
        assert_eq!(keep, HashSet::from([r(4)]));
        assert_eq!(ki.generations.len(), 2);

        for at in [5, 6] {
            let mut ki = foo();
            keep.clear();
            ki.compact(at, &mut keep);
            assert!(keep.is_empty());
            assert!(ki.is_empty());
        }
    }

    #[test]
    fn mvcc_key_index_keep_is_what_compact_keeps() {
        for at in 0..8 {
            let mut ki = foo();
            let mut kept = HashSet::new();
            ki.keep(at, &mut kept);
            let mut compacted = HashSet::new();
            ki.compact(at, &mut compacted);
            assert_eq!(kept, compacted, "at {at}");
        }
    }

    #[test]
    fn mvcc_key_index_compact_keeps_live_key_latest() {
        let mut ki = KeyIndex::default();
        for m in 2..=6 {
            ki.put(r(m));
        }
        let mut keep = HashSet::new();
        ki.compact(4, &mut keep);
        assert_eq!(keep, HashSet::from([r(4)]));
        assert_eq!(ki.generations[0].revs, vec![r(4), r(5), r(6)]);
        let f = ki.get(6).unwrap();
        assert_eq!((f.created, f.version), (r(2), 5));
        ki.compact(10, &mut keep);
        assert_eq!(ki.generations[0].revs, vec![r(6)]);
        assert!(!ki.is_empty());
    }

    #[test]
    fn mvcc_key_span_forms() {
        assert_eq!(KeySpan::new(b"a", b""), KeySpan::Single(b"a"));
        assert_eq!(KeySpan::new(b"a", b"\0"), KeySpan::From(b"a"));
        assert_eq!(KeySpan::new(b"a", b"b"), KeySpan::Range(b"a", b"b"));
        let mut t = KeyTree::default();
        for (i, k) in [&b"a"[..], b"ab", b"b", b"c"].iter().enumerate() {
            t.keys.entry(Bytes::copy_from_slice(k)).or_default().put(r(i as i64 + 2));
        }
        let keys = |s: KeySpan<'_>| t.range(&s, 10).into_iter().map(|(k, _)| k.to_vec()).collect::<Vec<_>>();
        assert_eq!(keys(KeySpan::Single(b"ab")), vec![b"ab".to_vec()]);
        assert_eq!(keys(KeySpan::Range(b"a", b"b")), vec![b"a".to_vec(), b"ab".to_vec()]);
        assert_eq!(keys(KeySpan::Range(b"c", b"a")), Vec::<Vec<u8>>::new());
        assert_eq!(keys(KeySpan::From(b"b")), vec![b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(keys(KeySpan::From(b"\0")).len(), 4);
        // At revision 3 only "a" (2) and "ab" (3) exist.
        assert_eq!(t.range(&KeySpan::From(b"\0"), 3).len(), 2);
    }
}
