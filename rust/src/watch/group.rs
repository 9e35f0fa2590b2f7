//! Which watchers a key concerns: etcd's watcherGroup, for the synced set.
//!
//! Single-key watchers sit in a hash map by key (one lookup per event).
//! Range and from-key watchers sit in a list of spans sorted by start key;
//! an event's key stabs it with a binary search for the spans starting at or
//! before the key, then a check of each one's end. etcd uses an interval
//! tree; with the prefix watchers Kubernetes makes (a few hundred, nested
//! `/registry/...` prefixes) the sorted list is as fast and simpler.

use std::collections::HashMap;

use bytes::Bytes;

/// What a watcher watches, as etcd reads a WatchCreateRequest's key and
/// range_end (after the empty key became "\0").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRange {
    /// range_end empty: this key only.
    Single(Bytes),
    /// range_end "\0": every key >= the key.
    FromKey(Bytes),
    /// [key, range_end).
    Range(Bytes, Bytes),
}

impl KeyRange {
    pub fn new(key: Bytes, range_end: Bytes) -> KeyRange {
        let key = if key.is_empty() { Bytes::from_static(b"\0") } else { key };
        match &range_end[..] {
            [] => KeyRange::Single(key),
            [0] => KeyRange::FromKey(key),
            _ => KeyRange::Range(key, range_end),
        }
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        match self {
            KeyRange::Single(key) => k == &key[..],
            KeyRange::FromKey(key) => k >= &key[..],
            KeyRange::Range(key, end) => k >= &key[..] && k < &end[..],
        }
    }

    /// etcd refuses a range whose end is not above its key (ErrEmptyWatcherRange).
    pub fn is_empty(&self) -> bool {
        matches!(self, KeyRange::Range(key, end) if key >= end)
    }

    fn start(&self) -> &Bytes {
        match self {
            KeyRange::Single(k) | KeyRange::FromKey(k) | KeyRange::Range(k, _) => k,
        }
    }
}

/// A set of watchers (by hub-wide id) indexed by what they watch.
#[derive(Default)]
pub(crate) struct Group {
    by_key: HashMap<Bytes, Vec<u64>>,
    /// Range and from-key watchers, sorted by start key.
    spans: Vec<(Bytes, KeyRange, u64)>,
}

impl Group {
    pub(crate) fn add(&mut self, id: u64, range: &KeyRange) {
        match range {
            KeyRange::Single(k) => self.by_key.entry(k.clone()).or_default().push(id),
            r => {
                let start = r.start().clone();
                let at = self.spans.partition_point(|(s, _, _)| *s <= start);
                self.spans.insert(at, (start, r.clone(), id));
            }
        }
    }

    pub(crate) fn remove(&mut self, id: u64, range: &KeyRange) {
        match range {
            KeyRange::Single(k) => {
                if let Some(ids) = self.by_key.get_mut(k) {
                    ids.retain(|w| *w != id);
                    if ids.is_empty() {
                        self.by_key.remove(k);
                    }
                }
            }
            r => {
                let start = r.start();
                let from = self.spans.partition_point(|(s, _, _)| s < start);
                if let Some(i) = self.spans[from..].iter().position(|(_, _, w)| *w == id) {
                    self.spans.remove(from + i);
                }
            }
        }
    }

    /// Calls `f` with every watcher whose range holds `key`.
    pub(crate) fn for_each_matching(&self, key: &[u8], mut f: impl FnMut(u64)) {
        if let Some(ids) = self.by_key.get(key) {
            ids.iter().copied().for_each(&mut f);
        }
        let upto = self.spans.partition_point(|(s, _, _)| &s[..] <= key);
        for (_, r, id) in &self.spans[..upto] {
            if r.contains(key) {
                f(*id);
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_key.is_empty() && self.spans.is_empty()
    }
}
