//! The Cluster API's rules (etcd's membership package and the strict
//! reconfiguration checks of its server): which member changes are allowed,
//! the IDs of new members, the Raft entries a new cluster starts with, and
//! how an applied change alters the member list.
//!
//! Everything here is a pure function of the member list; the node thread
//! proposes and applies.

use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, Entry, EntryType};

use crate::error::EtcdError;
use crate::mvcc::Membership;
use crate::pb::etcdserverpb::{Member, MemberAddRequest, MemberUpdateRequest};
use crate::pb::ketchpb::ConfChangeContext;

/// What member changes etcd's flags allow: `strict` is --strict-reconfig-check
/// (the started voters must stay a quorum), `max_learners` is
/// --experimental-max-learners (1 by default, as etcd's membership.maxLearners).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reconfig {
    pub strict: bool,
    pub max_learners: usize,
}

impl Default for Reconfig {
    fn default() -> Self {
        Reconfig { strict: true, max_learners: 1 }
    }
}

/// etcd's promote rule: a learner is in sync when its log matches at least
/// this share of the leader's.
pub(crate) const LEARNER_READY_PERCENT: f64 = 0.9;

/// The ID etcd gives a member added at run time (membership.NewMember with
/// no name and no cluster token): the first 8 bytes, big-endian, of
/// sha1(sorted peer URLs joined, then the Unix time in seconds).
pub fn added_member_id(peer_urls: &[String], unix_seconds: u64) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut sha = sha1_smol::Sha1::new();
    sha.update(urls.concat().as_bytes());
    sha.update(unix_seconds.to_string().as_bytes());
    let digest = sha.digest().bytes();
    u64::from_be_bytes(digest[..8].try_into().expect("sha1 has 20 bytes"))
}

/// A new cluster's first Raft entries, as etcd's bootstrap writes them: one
/// AddNode per initial member, sorted by ID, all at term 1 and committed.
/// Every member starts with the same entries, so every member's list is the
/// same once they are applied.
pub(crate) fn bootstrap_entries(members: &[(u64, String, Vec<String>)]) -> Vec<Entry> {
    let mut members = members.to_vec();
    members.sort_by_key(|m| m.0);
    members
        .into_iter()
        .enumerate()
        .map(|(i, (id, name, peer_urls))| {
            let member = Member { id, name, peer_ur_ls: peer_urls, client_ur_ls: Vec::new(), is_learner: false };
            let cc = conf_change(ConfChangeType::AddNode, 0, member);
            let mut e = Entry::default();
            e.set_entry_type(EntryType::EntryConfChange);
            e.term = 1;
            e.index = i as u64 + 1;
            e.data = cc.write_to_bytes().expect("encoding a conf change cannot fail").into();
            e
        })
        .collect()
}

/// A Raft configuration change about `member`, carrying the proposer's request ID.
pub(crate) fn conf_change(kind: ConfChangeType, request_id: u64, member: Member) -> ConfChange {
    let mut cc = ConfChange::default();
    cc.set_change_type(kind);
    cc.node_id = member.id;
    cc.context = ConfChangeContext { request_id, member: Some(member) }.encode_to_vec().into();
    cc
}

fn started(m: &Member) -> bool {
    !m.name.is_empty()
}

fn voters(ms: &Membership) -> impl Iterator<Item = &Member> {
    ms.members.values().filter(|m| !m.is_learner)
}

fn peer_url_taken(ms: &Membership, urls: &[String], except: u64) -> bool {
    ms.members.values().any(|m| m.id != except && m.peer_ur_ls.iter().any(|u| urls.contains(u)))
}

/// etcd's types.NewURLs, which MemberAdd runs first: at
/// least one URL, each http(s) or unix(s), with a host:port and no path.
pub(crate) fn check_peer_urls(urls: &[String]) -> Result<(), EtcdError> {
    let valid = |u: &str| {
        let u = u.trim();
        let Some((scheme, rest)) = u.split_once("://") else {
            return false;
        };
        let (host_port, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
        let port_ok = host_port.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
        });
        matches!(scheme, "http" | "https" | "unix" | "unixs") && port_ok && path.is_empty()
    };
    if urls.is_empty() || !urls.iter().all(|u| valid(u)) {
        return Err(EtcdError::MemberBadUrls);
    }
    Ok(())
}

/// etcd's checks before proposing MemberAdd; the member to add.
pub(crate) fn check_add(
    ms: &Membership,
    req: &MemberAddRequest,
    id: u64,
    rules: Reconfig,
) -> Result<Member, EtcdError> {
    check_peer_urls(&req.peer_ur_ls)?;
    if ms.members.contains_key(&id) {
        return Err(EtcdError::MemberExists);
    }
    if ms.removed.contains(&id) {
        return Err(EtcdError::MemberNotFound);
    }
    if peer_url_taken(ms, &req.peer_ur_ls, 0) {
        return Err(EtcdError::PeerUrlExists);
    }
    if req.is_learner {
        if ms.members.values().filter(|m| m.is_learner).count() + 1 > rules.max_learners {
            return Err(EtcdError::TooManyLearners);
        }
    } else if rules.strict {
        // IsReadyToAddVotingMember: the started voters must still be a
        // quorum of the larger cluster (a one-member cluster may always grow).
        let n = voters(ms).count() + 1;
        let up = voters(ms).filter(|m| started(m)).count();
        if !(up == 1 && n == 2) && up < n / 2 + 1 {
            return Err(EtcdError::NotEnoughStartedMembers);
        }
    }
    Ok(Member {
        id,
        name: String::new(),
        peer_ur_ls: req.peer_ur_ls.clone(),
        client_ur_ls: Vec::new(),
        is_learner: req.is_learner,
    })
}

/// etcd's checks before proposing MemberRemove.
pub(crate) fn check_remove(ms: &Membership, id: u64, strict: bool) -> Result<&Member, EtcdError> {
    let member = ms.members.get(&id).ok_or(EtcdError::MemberNotFound)?;
    if strict && !member.is_learner {
        // IsReadyToRemoveVotingMember: the started voters left must be a quorum.
        let rest: Vec<&Member> = voters(ms).filter(|m| m.id != id).collect();
        let up = rest.iter().filter(|m| started(m)).count();
        if up < rest.len() / 2 + 1 {
            return Err(EtcdError::NotEnoughStartedMembers);
        }
    }
    Ok(member)
}

/// etcd's checks before proposing MemberUpdate.
/// (etcd's MemberUpdate does not check the URLs' form.)
pub(crate) fn check_update(ms: &Membership, req: &MemberUpdateRequest) -> Result<(), EtcdError> {
    if !ms.members.contains_key(&req.id) {
        return Err(EtcdError::MemberNotFound);
    }
    if peer_url_taken(ms, &req.peer_ur_ls, req.id) {
        return Err(EtcdError::PeerUrlExists);
    }
    Ok(())
}

/// etcd's checks before proposing MemberPromote (the leader checks that
/// the learner is in sync separately: only it knows the learner's progress).
pub(crate) fn check_promote(ms: &Membership, id: u64, strict: bool) -> Result<&Member, EtcdError> {
    let member = ms.members.get(&id).ok_or(EtcdError::MemberNotFound)?;
    if !member.is_learner {
        return Err(EtcdError::MemberNotLearner);
    }
    if !strict {
        return Ok(member);
    }
    // IsReadyToPromoteMember: the learner counts as started.
    let n = voters(ms).count() + 1;
    let up = voters(ms).filter(|m| started(m)).count() + 1;
    if up < n / 2 + 1 {
        return Err(EtcdError::NotEnoughStartedMembers);
    }
    Ok(member)
}

/// The member list as the Cluster API answers it: sorted by ID.
pub(crate) fn member_list(ms: &Membership) -> Vec<Member> {
    ms.members.values().cloned().collect()
}

/// What an applied configuration change did, for the proposer's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConfOutcome {
    Added,
    Promoted,
    Removed,
}

/// The member list change a committed ConfChange makes, checked again at
/// apply (two changes proposed at once may each have passed at propose).
/// Err leaves the membership and Raft's configuration as they were.
pub(crate) fn plan_conf_change(ms: &Membership, cc: &ConfChange) -> Result<(ConfOutcome, Member), EtcdError> {
    let ctx = ConfChangeContext::decode(&cc.context[..])
        .map_err(|e| EtcdError::Internal(format!("undecodable conf change context: {e}")))?;
    let member = ctx.member.unwrap_or(Member { id: cc.node_id, ..Member::default() });
    match cc.get_change_type() {
        ConfChangeType::AddNode => match ms.members.get(&cc.node_id) {
            Some(m) if m.is_learner => Ok((ConfOutcome::Promoted, Member { is_learner: false, ..m.clone() })),
            Some(_) => Err(EtcdError::MemberExists),
            None if ms.removed.contains(&cc.node_id) => Err(EtcdError::MemberNotFound),
            None => Ok((ConfOutcome::Added, Member { is_learner: false, ..member })),
        },
        ConfChangeType::AddLearnerNode => {
            if ms.members.contains_key(&cc.node_id) {
                return Err(EtcdError::MemberExists);
            }
            if ms.removed.contains(&cc.node_id) {
                return Err(EtcdError::MemberNotFound);
            }
            Ok((ConfOutcome::Added, Member { is_learner: true, ..member }))
        }
        ConfChangeType::RemoveNode => match ms.members.get(&cc.node_id) {
            Some(m) => Ok((ConfOutcome::Removed, m.clone())),
            None => Err(EtcdError::MemberNotFound),
        },
    }
}

/// The request ID in a ConfChange's context (0 if it has none).
pub(crate) fn request_id_of(cc: &ConfChange) -> u64 {
    ConfChangeContext::decode(&cc.context[..]).map_or(0, |c| c.request_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, name: &str, url: &str, learner: bool) -> Member {
        Member { id, name: name.into(), peer_ur_ls: vec![url.into()], client_ur_ls: vec![], is_learner: learner }
    }

    fn three() -> Membership {
        let mut ms = Membership::default();
        for (id, n) in [(1, "a"), (2, "b"), (3, "c")] {
            ms.members.insert(id, member(id, n, &format!("http://h:{id}"), false));
        }
        ms
    }

    #[test]
    fn added_ids_match_etcds_formula() {
        // etcd: NewMember("", ["http://127.0.0.1:2380"], "", time.Unix(1700000000, 0)).
        let a = added_member_id(&["http://127.0.0.1:2380".into()], 1_700_000_000);
        let b = added_member_id(&["http://127.0.0.1:2380".into()], 1_700_000_001);
        assert_ne!(a, b);
        let mut sha = sha1_smol::Sha1::new();
        sha.update(b"http://127.0.0.1:23801700000000");
        assert_eq!(a, u64::from_be_bytes(sha.digest().bytes()[..8].try_into().unwrap()));
    }

    #[test]
    fn bootstrap_is_one_committed_add_per_member_sorted_by_id() {
        let entries = bootstrap_entries(&[(9, "x".into(), vec!["u9".into()]), (4, "y".into(), vec!["u4".into()])]);
        assert_eq!(entries.len(), 2);
        let cc = ConfChange::parse_from_bytes(&entries[0].data).unwrap();
        assert_eq!((entries[0].index, entries[0].term, cc.node_id), (1, 1, 4));
        let (outcome, m) = plan_conf_change(&Membership::default(), &cc).unwrap();
        assert_eq!((outcome, m.name.as_str(), m.peer_ur_ls[0].as_str()), (ConfOutcome::Added, "y", "u4"));
    }

    #[test]
    fn add_rules() {
        let mut ms = three();
        let req = |url: &str, learner| MemberAddRequest { peer_ur_ls: vec![url.into()], is_learner: learner };
        assert_eq!(check_add(&ms, &req("http://h:1", false), 7, Reconfig::default()), Err(EtcdError::PeerUrlExists));
        assert_eq!(check_add(&ms, &req("http://h:7", false), 2, Reconfig::default()), Err(EtcdError::MemberExists));
        assert!(check_add(&ms, &req("http://h:7", true), 7, Reconfig::default()).unwrap().is_learner);
        ms.members.insert(7, member(7, "", "http://h:7", true));
        assert_eq!(check_add(&ms, &req("http://h:8", true), 8, Reconfig::default()), Err(EtcdError::TooManyLearners));
        // Two of three voters never started: a fourth voter would need three up.
        ms.members.get_mut(&2).unwrap().name.clear();
        ms.members.get_mut(&3).unwrap().name.clear();
        assert_eq!(
            check_add(&ms, &req("http://h:8", false), 8, Reconfig::default()),
            Err(EtcdError::NotEnoughStartedMembers)
        );
        // --strict-reconfig-check=false skips the started-voters rule; --experimental-max-learners=2 allows a second learner.
        let lax = Reconfig { strict: false, max_learners: 2 };
        assert_eq!(check_add(&ms, &req("http://h:8", false), 8, lax).map(|m| m.id), Ok(8));
        assert!(check_add(&ms, &req("http://h:8", true), 8, lax).unwrap().is_learner);
        ms.removed.insert(9);
        assert_eq!(check_add(&three(), &req("http://h:9", false), 9, Reconfig::default()).map(|m| m.id), Ok(9));
        assert_eq!(check_add(&ms, &req("http://h:9", true), 9, Reconfig::default()), Err(EtcdError::MemberNotFound));
    }

    #[test]
    fn peer_urls_are_checked_as_etcd_does() {
        let urls = |v: &[&str]| v.iter().map(std::string::ToString::to_string).collect::<Vec<_>>();
        assert_eq!(check_peer_urls(&urls(&["http://127.0.0.1:2380", "https://[::1]:7"])), Ok(()));
        for bad in [&[][..], &["127.0.0.1:2380"], &["ftp://h:1"], &["http://h"], &["http://h:1/path"], &["http://:1"]] {
            assert_eq!(check_peer_urls(&urls(bad)), Err(EtcdError::MemberBadUrls), "{bad:?}");
        }
    }

    #[test]
    fn remove_promote_update_rules() {
        let mut ms = three();
        assert_eq!(check_remove(&ms, 42, true).err(), Some(EtcdError::MemberNotFound));
        assert!(check_remove(&ms, 3, true).is_ok());
        ms.members.get_mut(&2).unwrap().name.clear();
        // Removing 3 leaves 1 (started) and 2 (not): one of two is no quorum.
        assert_eq!(check_remove(&ms, 3, true).err(), Some(EtcdError::NotEnoughStartedMembers));
        assert!(check_remove(&ms, 3, false).is_ok(), "not checked without --strict-reconfig-check");
        assert_eq!(check_promote(&ms, 1, true).err(), Some(EtcdError::MemberNotLearner));
        ms.members.insert(7, member(7, "", "http://h:7", true));
        assert!(check_remove(&ms, 7, true).is_ok(), "a learner can always go");
        let upd = MemberUpdateRequest { id: 1, peer_ur_ls: vec!["http://h:3".into()] };
        assert_eq!(check_update(&ms, &upd), Err(EtcdError::PeerUrlExists));
        let upd = MemberUpdateRequest { id: 1, peer_ur_ls: vec!["http://h:1".into(), "http://h:11".into()] };
        assert_eq!(check_update(&ms, &upd), Ok(()));
    }

    #[test]
    fn applying_adds_promotes_and_removes() {
        let mut ms = three();
        let cc = conf_change(ConfChangeType::AddLearnerNode, 5, member(7, "", "http://h:7", true));
        assert_eq!(request_id_of(&cc), 5);
        let (o, m) = plan_conf_change(&ms, &cc).unwrap();
        assert_eq!((o, m.is_learner), (ConfOutcome::Added, true));
        ms.members.insert(7, m);
        let promote = conf_change(ConfChangeType::AddNode, 6, Member { id: 7, ..Member::default() });
        let (o, m) = plan_conf_change(&ms, &promote).unwrap();
        assert_eq!((o, m.is_learner, m.peer_ur_ls.len()), (ConfOutcome::Promoted, false, 1));
        let again = conf_change(ConfChangeType::AddNode, 0, member(1, "a", "http://h:1", false));
        assert_eq!(plan_conf_change(&ms, &again).err(), Some(EtcdError::MemberExists));
        let rm = conf_change(ConfChangeType::RemoveNode, 0, Member { id: 3, ..Member::default() });
        assert_eq!(plan_conf_change(&ms, &rm).unwrap().0, ConfOutcome::Removed);
    }
}
