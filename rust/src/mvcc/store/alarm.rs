//! Alarms (etcd's alarm store): which member raised which alarm, kept in the
//! backend so they outlive a restart, and written in the same transaction as
//! the Raft entry that raised or cleared them.
//!
//! - table `alarm`: member ID (u64 big-endian) then alarm type (i32
//!   big-endian), 12 bytes → empty value. etcd keys its "alarm" bucket by the
//!   marshaled `AlarmMember`; the pair is all there is to keep either way.
//! - in memory: the set, in (type, member) order, under the state lock like
//!   the key index (a dropped batch puts it back), and a copy published at
//!   commit for [`Store::alarms`].

use std::collections::BTreeSet;

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{Store, WriteBatch};
use crate::error::EtcdError;
use crate::mvcc::backend::io;

pub(crate) const ALARM_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("alarm");

/// Alarm types as etcd numbers them (`etcdserverpb.AlarmType`).
pub const ALARM_NOSPACE: i32 = 1;
pub const ALARM_CORRUPT: i32 = 2;

/// (alarm type, member ID).
pub(crate) type Alarms = BTreeSet<(i32, u64)>;

fn key(member: u64, alarm: i32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&member.to_be_bytes());
    k[8..].copy_from_slice(&alarm.to_be_bytes());
    k
}

pub(crate) fn load(tx: &WriteTransaction) -> Result<Alarms, EtcdError> {
    let table = tx.open_table(ALARM_TABLE).map_err(io("open alarm table"))?;
    let mut out = Alarms::new();
    for entry in table.range::<&[u8]>(..).map_err(io("scan alarm table"))? {
        let (k, _) = entry.map_err(io("scan alarm table"))?;
        let k: [u8; 12] = k.value().try_into().map_err(|_| EtcdError::Internal("mvcc: corrupt alarm record".into()))?;
        let member = u64::from_be_bytes(k[..8].try_into().expect("8 bytes"));
        let alarm = i32::from_be_bytes(k[8..].try_into().expect("4 bytes"));
        out.insert((alarm, member));
    }
    Ok(out)
}

impl Store {
    /// Active alarms as (alarm type, member ID), as of the last commit.
    pub fn alarms(&self) -> Vec<(i32, u64)> {
        self.alarms.lock().clone()
    }
}

impl WriteBatch<'_> {
    /// Active alarms as this batch has them.
    pub fn alarms(&self) -> Vec<(i32, u64)> {
        self.st.alarms.iter().copied().collect()
    }

    pub fn has_alarm(&self, alarm: i32) -> bool {
        self.st.alarms.iter().any(|(a, _)| *a == alarm)
    }

    /// etcd's AlarmStore.Activate: true if the alarm was not active already.
    pub fn activate_alarm(&mut self, member: u64, alarm: i32) -> Result<bool, EtcdError> {
        if self.st.alarms.contains(&(alarm, member)) {
            return Ok(false);
        }
        let tx = self.tx.as_ref().expect("an open batch has a transaction");
        let mut table = tx.open_table(ALARM_TABLE).map_err(io("open alarm table"))?;
        table.insert(key(member, alarm).as_slice(), [].as_slice()).map_err(io("write alarm"))?;
        self.st.alarms.insert((alarm, member));
        Ok(true)
    }

    /// etcd's AlarmStore.Deactivate: true if the alarm was active.
    pub fn deactivate_alarm(&mut self, member: u64, alarm: i32) -> Result<bool, EtcdError> {
        if !self.st.alarms.contains(&(alarm, member)) {
            return Ok(false);
        }
        let tx = self.tx.as_ref().expect("an open batch has a transaction");
        let mut table = tx.open_table(ALARM_TABLE).map_err(io("open alarm table"))?;
        table.remove(key(member, alarm).as_slice()).map_err(io("delete alarm"))?;
        self.st.alarms.remove(&(alarm, member));
        Ok(true)
    }
}
