//! The cluster's member list (etcd's membership store), kept in the backend
//! so it is applied, snapshotted and restored with the data: a member that
//! catches up from a snapshot learns the membership with the keys.
//!
//! - table `members`: member ID (u64 big-endian) → `etcdserverpb.Member`.
//! - table `members_removed`: member ID → empty. etcd refuses to re-add or
//!   remove again an ID once removed.
//! - in memory: under the state lock like the key index (a dropped batch
//!   puts it back), and a copy published at commit for [`Store::membership`].

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;
use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{Store, WriteBatch};
use crate::error::EtcdError;
use crate::mvcc::backend::io;
use crate::pb::etcdserverpb::Member;

pub(crate) const MEMBER_TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("members");
pub(crate) const REMOVED_TABLE: TableDefinition<u64, ()> = TableDefinition::new("members_removed");

/// Members by ID, and the IDs removed for good.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Membership {
    pub members: BTreeMap<u64, Member>,
    pub removed: BTreeSet<u64>,
}

impl Membership {
    /// Voters and learners, as raft-rs's ConfState lists them.
    pub fn conf_state(&self) -> raft::eraftpb::ConfState {
        let (learners, voters): (Vec<&Member>, Vec<&Member>) = self.members.values().partition(|m| m.is_learner);
        raft::eraftpb::ConfState {
            voters: voters.iter().map(|m| m.id).collect(),
            learners: learners.iter().map(|m| m.id).collect(),
            ..Default::default()
        }
    }
}

pub(crate) fn load(tx: &WriteTransaction) -> Result<Membership, EtcdError> {
    let mut out = Membership::default();
    let members = tx.open_table(MEMBER_TABLE).map_err(io("open members table"))?;
    for entry in members.range::<u64>(..).map_err(io("scan members table"))? {
        let (id, bytes) = entry.map_err(io("scan members table"))?;
        let member = Member::decode(bytes.value())
            .map_err(|e| EtcdError::Internal(format!("mvcc: corrupt member record {:x}: {e}", id.value())))?;
        out.members.insert(id.value(), member);
    }
    let removed = tx.open_table(REMOVED_TABLE).map_err(io("open removed-members table"))?;
    for entry in removed.range::<u64>(..).map_err(io("scan removed-members table"))? {
        out.removed.insert(entry.map_err(io("scan removed-members table"))?.0.value());
    }
    Ok(out)
}

impl Store {
    /// The member list as of the last commit.
    pub fn membership(&self) -> Membership {
        self.membership.lock().clone()
    }
}

impl WriteBatch<'_> {
    /// The member list as this batch has it.
    pub fn membership(&self) -> &Membership {
        &self.st.membership
    }

    fn membership_mut(&mut self) -> &mut Membership {
        if self.undo.membership.is_none() {
            self.undo.membership = Some(self.st.membership.clone());
        }
        &mut self.st.membership
    }

    /// Adds or replaces a member.
    pub fn put_member(&mut self, member: &Member) -> Result<(), EtcdError> {
        let tx = self.tx.as_ref().expect("an open batch has a transaction");
        let mut table = tx.open_table(MEMBER_TABLE).map_err(io("open members table"))?;
        table.insert(member.id, member.encode_to_vec().as_slice()).map_err(io("write member"))?;
        drop(table);
        self.membership_mut().members.insert(member.id, member.clone());
        Ok(())
    }

    /// Removes a member for good (its ID can never come back).
    pub fn remove_member(&mut self, id: u64) -> Result<(), EtcdError> {
        let tx = self.tx.as_ref().expect("an open batch has a transaction");
        let mut table = tx.open_table(MEMBER_TABLE).map_err(io("open members table"))?;
        table.remove(id).map_err(io("delete member"))?;
        drop(table);
        let mut removed = tx.open_table(REMOVED_TABLE).map_err(io("open removed-members table"))?;
        removed.insert(id, ()).map_err(io("write removed member"))?;
        drop(removed);
        let m = self.membership_mut();
        m.members.remove(&id);
        m.removed.insert(id);
        Ok(())
    }
}
