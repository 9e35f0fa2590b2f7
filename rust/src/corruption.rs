//! Corruption checks between members (etcd 3.5's `corruptionChecker`,
//! `server/etcdserver/corrupt.go`): members compare their HashKV at a
//! common revision.
//!
//! - **Initial check** (`--experimental-initial-corrupt-check`): a member
//!   that already has data, before it serves peers or clients, hashes its
//!   store at its current revision and asks every peer for its hash at that
//!   revision. A peer with the same compact revision and another hash is a
//!   mismatch, and the member refuses to start ("<id> found data
//!   inconsistency with peers"). A peer that cannot answer (down, behind,
//!   compacted past the revision) is logged and left out, as in etcd.
//! - **Periodic check** (`--experimental-corrupt-check-time`): the leader,
//!   every interval, hashes (h1 at rev), asks the peers for their hash at
//!   rev, waits until it has applied what was committed (etcd's
//!   linearizable read notify), hashes again (h2), and raises the CORRUPT
//!   alarm through Raft (member ID 0, as etcd 3.5: which side is wrong is
//!   not known) when its own hash moved at an unmoved revision, or a peer
//!   is ahead of it, or a peer at the same compact revision differs. The
//!   log line names the member that differs.
//!
//! The peer hashes travel on the peer port (`/ketchpeer.Raft/HashKV` in
//! `server/transport.rs`, etcd's `/members/hashkv`); this module only
//! judges the answers and writes etcd's log lines.

use crate::pb::etcdserverpb::HashKvResponse;

/// This member's HashKV: (hash, revision, compact revision).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalHash {
    pub hash: u32,
    pub revision: i64,
    pub compact_revision: i64,
}

impl From<(u32, i64, i64)> for LocalHash {
    fn from((hash, revision, compact_revision): (u32, i64, i64)) -> Self {
        LocalHash { hash, revision, compact_revision }
    }
}

/// Why a peer gave no hash (etcd's peerHashKVResp.err).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerHashError {
    /// The peer has not reached the revision yet.
    FutureRev,
    /// The peer has compacted past the revision.
    Compacted,
    ClusterIdMismatch,
    /// Unreachable, timed out, or anything else: the text says what.
    Other(String),
}

/// One peer's answer (etcd's peerHashKVResp).
#[derive(Debug, Clone)]
pub struct PeerHash {
    pub id: u64,
    pub urls: Vec<String>,
    pub answer: Result<HashKvResponse, PeerHashError>,
}

fn log(level: crate::logging::Level, msg: &str, fields: &[(&str, String)]) {
    crate::logging::write(level, "corruption.rs", msg, fields);
}

fn id(v: u64) -> String {
    crate::logging::json_str(&format!("{v:x}"))
}

fn urls(v: &[String]) -> String {
    format!("[{}]", v.iter().map(|u| crate::logging::json_str(u)).collect::<Vec<_>>().join(","))
}

/// etcd's InitialCheck over the peers' answers: Err with etcd's message
/// when a peer at the same compact revision has another hash.
pub fn judge_initial(member: u64, local: LocalHash, peers: &[PeerHash]) -> Result<(), String> {
    use crate::logging::Level::{Info, Warn};
    let mut mismatch = 0;
    let mine = |fields: &mut Vec<(&str, String)>| {
        fields.push(("local-member-id", id(member)));
        fields.push(("local-member-revision", local.revision.to_string()));
        fields.push(("local-member-compact-revision", local.compact_revision.to_string()));
        fields.push(("local-member-hash", local.hash.to_string()));
    };
    for p in peers {
        let mut fields = Vec::new();
        mine(&mut fields);
        match &p.answer {
            Ok(resp) => {
                let peer_rev = resp.header.as_ref().map_or(0, |h| h.revision);
                let peer_id = resp.header.as_ref().map_or(p.id, |h| h.member_id);
                fields.push(("remote-peer-id", id(peer_id)));
                fields.push(("remote-peer-endpoints", urls(&p.urls)));
                fields.push(("remote-peer-revision", peer_rev.to_string()));
                fields.push(("remote-peer-compact-revision", resp.compact_revision.to_string()));
                fields.push(("remote-peer-hash", resp.hash.to_string()));
                if resp.hash != local.hash {
                    if resp.compact_revision == local.compact_revision {
                        log(Warn, "found different hash values from remote peer", &fields);
                        mismatch += 1;
                    } else {
                        log(Warn, "found different compact revision values from remote peer", &fields);
                    }
                }
            }
            Err(e) => {
                fields.push(("remote-peer-id", id(p.id)));
                fields.push(("remote-peer-endpoints", urls(&p.urls)));
                let msg = match e {
                    PeerHashError::FutureRev => "cannot fetch hash from slow remote peer",
                    PeerHashError::Compacted => "cannot fetch hash from remote peer; local member is behind",
                    PeerHashError::ClusterIdMismatch => "cluster ID mismatch",
                    // Logged already where the call failed ("failed hash kv request").
                    PeerHashError::Other(_) => continue,
                };
                log(Warn, msg, &fields);
            }
        }
    }
    if mismatch > 0 {
        return Err(format!("{member:x} found data inconsistency with peers"));
    }
    log(Info, "initial corruption checking passed; no corruption", &[("local-member-id", id(member))]);
    Ok(())
}

/// etcd's PeriodicCheck over the leader's two hashes (before and after
/// the peers answered) and the peers' answers: the members that differ,
/// in the order found (this member's own ID when its hash moved at the
/// same revision). Empty: no corruption seen. Each finding is logged.
pub fn judge_periodic(member: u64, h1: LocalHash, h2: LocalHash, peers: &[PeerHash]) -> Vec<u64> {
    use crate::logging::Level::{Info, Warn};
    let mut differ = Vec::new();
    if h2.hash != h1.hash && h2.revision == h1.revision && h2.compact_revision == h1.compact_revision {
        log(
            Warn,
            "found hash mismatch",
            &[
                ("revision-1", h1.revision.to_string()),
                ("compact-revision-1", h1.compact_revision.to_string()),
                ("hash-1", h1.hash.to_string()),
                ("revision-2", h2.revision.to_string()),
                ("compact-revision-2", h2.compact_revision.to_string()),
                ("hash-2", h2.hash.to_string()),
            ],
        );
        differ.push(member);
    }
    let mut checked = 0;
    for p in peers {
        let Ok(resp) = &p.answer else { continue };
        checked += 1;
        let peer_rev = resp.header.as_ref().map_or(0, |h| h.revision);
        if peer_rev > h2.revision {
            log(
                Warn,
                "revision from follower must be less than or equal to leader's",
                &[
                    ("leader-revision", h2.revision.to_string()),
                    ("follower-revision", peer_rev.to_string()),
                    ("follower-peer-id", id(p.id)),
                ],
            );
            differ.push(p.id);
        }
        if resp.compact_revision > h2.compact_revision {
            log(
                Warn,
                "compact revision from follower must be less than or equal to leader's",
                &[
                    ("leader-compact-revision", h2.compact_revision.to_string()),
                    ("follower-compact-revision", resp.compact_revision.to_string()),
                    ("follower-peer-id", id(p.id)),
                ],
            );
            differ.push(p.id);
        }
        if resp.compact_revision == h1.compact_revision && resp.hash != h1.hash {
            log(
                Warn,
                "same compact revision then hashes must match",
                &[
                    ("leader-compact-revision", h2.compact_revision.to_string()),
                    ("leader-hash", h1.hash.to_string()),
                    ("follower-compact-revision", resp.compact_revision.to_string()),
                    ("follower-hash", resp.hash.to_string()),
                    ("follower-peer-id", id(p.id)),
                ],
            );
            differ.push(p.id);
        }
    }
    log(Info, "finished peer corruption check", &[("number-of-peers-checked", checked.to_string())]);
    differ
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::etcdserverpb::ResponseHeader;

    fn local(hash: u32, revision: i64, compact_revision: i64) -> LocalHash {
        LocalHash { hash, revision, compact_revision }
    }

    fn peer(id: u64, hash: u32, revision: i64, compact_revision: i64) -> PeerHash {
        let header = Some(ResponseHeader { member_id: id, revision, ..ResponseHeader::default() });
        PeerHash {
            id,
            urls: vec!["http://127.0.0.1:1".into()],
            answer: Ok(HashKvResponse { header, hash, compact_revision }),
        }
    }

    fn failed(id: u64, e: PeerHashError) -> PeerHash {
        PeerHash { id, urls: vec![], answer: Err(e) }
    }

    #[test]
    fn initial_check_refuses_a_different_hash_at_the_same_compact_revision() {
        let me = local(7, 10, 3);
        assert_eq!(judge_initial(0xa, me, &[peer(0xb, 7, 12, 3), peer(0xc, 7, 10, 3)]), Ok(()));
        assert_eq!(
            judge_initial(0xa, me, &[peer(0xb, 7, 12, 3), peer(0xc, 8, 10, 3)]),
            Err("a found data inconsistency with peers".to_owned())
        );
        // Another compact revision, or no answer: logged, not a mismatch.
        let others =
            [peer(0xb, 8, 12, 5), failed(0xc, PeerHashError::Compacted), failed(0xd, PeerHashError::Other("x".into()))];
        assert_eq!(judge_initial(0xa, me, &others), Ok(()));
    }

    #[test]
    fn periodic_check_names_the_member_that_differs() {
        let h = local(7, 10, 3);
        assert!(judge_periodic(0xa, h, h, &[peer(0xb, 7, 10, 3), failed(0xc, PeerHashError::FutureRev)]).is_empty());
        assert_eq!(judge_periodic(0xa, h, h, &[peer(0xb, 7, 10, 3), peer(0xc, 9, 10, 3)]), vec![0xc]);
        // A follower ahead of the leader, or compacted further.
        assert_eq!(judge_periodic(0xa, h, h, &[peer(0xb, 7, 11, 3)]), vec![0xb]);
        assert_eq!(judge_periodic(0xa, h, h, &[peer(0xb, 1, 10, 4)]), vec![0xb]);
        // The leader's own hash moved while its revision did not.
        assert_eq!(judge_periodic(0xa, h, local(8, 10, 3), &[]), vec![0xa]);
        // Moved on with new writes: not a mismatch.
        assert!(judge_periodic(0xa, h, local(8, 11, 3), &[peer(0xb, 7, 10, 3)]).is_empty());
    }
}
