//! A user's permitted keys for one kind of access: half-open byte ranges,
//! merged so that one containment test answers whether a whole range is
//! covered (etcd keeps an interval tree and asks it the same question).
//!
//! ```text
//!  grant key "a", range_end ""      → [a, a\0)         one key
//!  grant key "a", range_end "b"     → [a, b)           prefix "a" (etcdctl --prefix)
//!  grant key "a", range_end "\0"    → [a, ∞)           every key from "a" (--from-key)
//!  merged: [a, a\0) + [a\0, c) → [a, c)
//! ```

/// The end of a range; `None` is past every key.
type End = Option<Vec<u8>>;

#[derive(Clone, Debug, Default)]
pub struct Ranges {
    /// Sorted by start, disjoint and not touching once [`Ranges::normalize`] ran.
    spans: Vec<(Vec<u8>, End)>,
}

fn end_of(key: &[u8], range_end: &[u8]) -> End {
    match range_end {
        [] => {
            let mut next = key.to_vec();
            next.push(0);
            Some(next)
        }
        [0] => None,
        end => Some(end.to_vec()),
    }
}

/// a ≥ b for range ends, with None the largest.
fn end_ge(a: &End, b: &End) -> bool {
    match (a, b) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => a >= b,
    }
}

impl Ranges {
    pub fn insert(&mut self, key: &[u8], range_end: &[u8]) {
        self.spans.push((key.to_vec(), end_of(key, range_end)));
    }

    /// Sorts and merges overlapping or touching spans.
    pub fn normalize(&mut self) {
        self.spans.sort_by(|a, b| a.0.cmp(&b.0));
        let mut merged: Vec<(Vec<u8>, End)> = Vec::with_capacity(self.spans.len());
        for (start, end) in self.spans.drain(..) {
            if let Some(last) = merged.last_mut() {
                let touches = match &last.1 {
                    None => true,
                    Some(last_end) => start <= *last_end,
                };
                if touches {
                    if !end_ge(&last.1, &end) {
                        last.1 = end;
                    }
                    continue;
                }
            }
            merged.push((start, end));
        }
        self.spans = merged;
    }

    /// The span that starts at or before `key`, if any.
    fn span_at(&self, key: &[u8]) -> Option<&(Vec<u8>, End)> {
        let i = self.spans.partition_point(|(start, _)| start.as_slice() <= key);
        i.checked_sub(1).map(|i| &self.spans[i])
    }

    /// One key is permitted.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.span_at(key).is_some_and(|(_, end)| match end {
            None => true,
            Some(end) => key < end.as_slice(),
        })
    }

    /// Every key of [key, range_end) is permitted; range_end "\0" is open-ended.
    pub fn covers(&self, key: &[u8], range_end: &[u8]) -> bool {
        let wanted = if range_end == [0] { None } else { Some(range_end.to_vec()) };
        self.span_at(key).is_some_and(|(_, end)| end_ge(end, &wanted))
    }
}
