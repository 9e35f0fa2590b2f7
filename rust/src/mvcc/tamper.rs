//! Damage on purpose, for the corruption-check tests: rewrites the value of
//! a key's newest record in a stopped member's backend, out of band (no
//! Raft entry, no revision), as bit rot or a buggy apply would leave it.
//! The store still opens and serves; only its HashKV gives it away.

use std::path::Path;

use prost::Message;
use redb::{Durability, ReadableTable};

use super::backend::{decode_kv, io, is_chunked, open_database, KEY_TABLE};
use super::revision::Revision;
use crate::error::EtcdError;

/// Gives the newest live record of `key` the value `value` in the backend
/// file at `path` (which no process may have open). Returns that record's
/// revision.
pub fn tamper_value(path: &Path, key: &[u8], value: &[u8]) -> Result<i64, EtcdError> {
    let db = open_database(path, None)?;
    let mut tx = db.begin_write().map_err(io("begin write"))?;
    let rev = {
        let mut table = tx.open_table(KEY_TABLE).map_err(io("open key table"))?;
        let mut newest = None;
        for entry in table.range::<&[u8]>(..).map_err(io("scan key table"))? {
            let (k, v) = entry.map_err(io("scan key table"))?;
            let Some((rev, tombstone)) = Revision::from_key(k.value()) else { continue };
            if tombstone || is_chunked(v.value()) {
                continue;
            }
            let kv = decode_kv(v.value())?;
            if kv.key.as_ref() == key {
                newest = Some((k.value().to_vec(), kv, rev.main));
            }
        }
        let Some((rev_key, mut kv, main)) = newest else {
            return Err(EtcdError::Internal(format!("tamper: no live record of {key:?} in {}", path.display())));
        };
        kv.value = bytes::Bytes::copy_from_slice(value);
        table.insert(rev_key.as_slice(), kv.encode_to_vec().as_slice()).map_err(io("rewrite record"))?;
        main
    };
    tx.set_durability(Durability::Immediate).map_err(|e| EtcdError::Internal(format!("tamper: {e}")))?;
    tx.commit().map_err(io("commit"))?;
    Ok(rev)
}
