//! The auth store's records (etcd's auth, authUsers and authRoles buckets),
//! kept in the backend so they are applied, snapshotted and restored with
//! the keys: a member that catches up from a snapshot has the same users.
//!
//! - table `auth`: "authEnabled" → 1 byte (1 on, 0 off); "authRevision" →
//!   u64 big-endian. A new backend starts at revision 1, as etcd's does.
//! - table `auth_users`: name → `authpb.User`; `auth_roles`: name → `authpb.Role`.
//! - in memory: an [`AuthData`] under the state lock (a dropped batch puts
//!   it back), published at commit for [`Store::auth`].

use std::collections::BTreeMap;
use std::sync::Arc;

use prost::Message;
use redb::{ReadableTable, WriteTransaction};

use super::{Store, WriteBatch};
use crate::auth::AuthData;
use crate::error::EtcdError;
use crate::mvcc::backend::{io, AUTH_ROLES_TABLE, AUTH_TABLE, AUTH_USERS_TABLE};
use crate::pb::authpb::{Role, User};

pub(super) const ENABLED_KEY: &[u8] = b"authEnabled";
pub(super) const REVISION_KEY: &[u8] = b"authRevision";

fn corrupt(what: &str, e: impl std::fmt::Display) -> EtcdError {
    EtcdError::Internal(format!("mvcc: corrupt auth record ({what}): {e}"))
}

pub(crate) fn load(tx: &WriteTransaction) -> Result<AuthData, EtcdError> {
    let mut meta = tx.open_table(AUTH_TABLE).map_err(io("open auth table"))?;
    let enabled = meta.get(ENABLED_KEY).map_err(io("read auth table"))?.is_some_and(|v| v.value() == [1]);
    let revision = match meta.get(REVISION_KEY).map_err(io("read auth table"))? {
        Some(v) => u64::from_be_bytes(v.value().try_into().map_err(|_| corrupt("authRevision", "not 8 bytes"))?),
        None => 0,
    };
    // etcd's NewAuthStore commits revision 1 into a new backend.
    let revision = if revision == 0 {
        meta.insert(REVISION_KEY, 1u64.to_be_bytes().as_slice()).map_err(io("write auth revision"))?;
        1
    } else {
        revision
    };
    drop(meta);
    let mut users = BTreeMap::new();
    let table = tx.open_table(AUTH_USERS_TABLE).map_err(io("open auth_users table"))?;
    for entry in table.range::<&[u8]>(..).map_err(io("scan auth_users table"))? {
        let (k, v) = entry.map_err(io("scan auth_users table"))?;
        let user = User::decode(v.value()).map_err(|e| corrupt("user", e))?;
        users.insert(String::from_utf8_lossy(k.value()).into_owned(), user);
    }
    let mut roles = BTreeMap::new();
    let table = tx.open_table(AUTH_ROLES_TABLE).map_err(io("open auth_roles table"))?;
    for entry in table.range::<&[u8]>(..).map_err(io("scan auth_roles table"))? {
        let (k, v) = entry.map_err(io("scan auth_roles table"))?;
        let role = Role::decode(v.value()).map_err(|e| corrupt("role", e))?;
        roles.insert(String::from_utf8_lossy(k.value()).into_owned(), role);
    }
    Ok(AuthData::new(enabled, revision, users, roles))
}

impl Store {
    /// The auth store as of the last commit.
    pub fn auth(&self) -> Arc<AuthData> {
        self.auth.lock().clone()
    }
}

impl WriteBatch<'_> {
    /// The auth store as this batch has it.
    pub fn auth(&self) -> &AuthData {
        &self.st.auth
    }

    fn auth_mut(&mut self) -> &mut AuthData {
        if self.undo.auth.is_none() {
            self.undo.auth = Some(self.st.auth.clone());
        }
        Arc::make_mut(&mut self.st.auth)
    }

    pub fn put_auth_user(&mut self, user: User) -> Result<(), EtcdError> {
        let tx = self.tx.as_ref().expect("an open batch has a transaction");
        let mut table = tx.open_table(AUTH_USERS_TABLE).map_err(io("open auth_users table"))?;
        table.insert(&user.name[..], user.encode_to_vec().as_slice()).map_err(io("write user"))?;
        drop(table);
        let name = String::from_utf8_lossy(&user.name).into_owned();
        self.auth_mut().users.insert(name, user);
        Ok(())
    }

    pub fn delete_auth_user(&mut self, name: &str) -> Result<(), EtcdError> {
        let tx = self.tx.as_ref().expect("an open batch has a transaction");
        let mut table = tx.open_table(AUTH_USERS_TABLE).map_err(io("open auth_users table"))?;
        table.remove(name.as_bytes()).map_err(io("delete user"))?;
        drop(table);
        self.auth_mut().users.remove(name);
        Ok(())
    }

    pub fn put_auth_role(&mut self, role: Role) -> Result<(), EtcdError> {
        let tx = self.tx.as_ref().expect("an open batch has a transaction");
        let mut table = tx.open_table(AUTH_ROLES_TABLE).map_err(io("open auth_roles table"))?;
        table.insert(&role.name[..], role.encode_to_vec().as_slice()).map_err(io("write role"))?;
        drop(table);
        let name = String::from_utf8_lossy(&role.name).into_owned();
        self.auth_mut().roles.insert(name, role);
        Ok(())
    }

    pub fn delete_auth_role(&mut self, name: &str) -> Result<(), EtcdError> {
        let tx = self.tx.as_ref().expect("an open batch has a transaction");
        let mut table = tx.open_table(AUTH_ROLES_TABLE).map_err(io("open auth_roles table"))?;
        table.remove(name.as_bytes()).map_err(io("delete role"))?;
        drop(table);
        self.auth_mut().roles.remove(name);
        Ok(())
    }

    pub fn set_auth_enabled(&mut self, enabled: bool) -> Result<(), EtcdError> {
        let tx = self.tx.as_ref().expect("an open batch has a transaction");
        let mut table = tx.open_table(AUTH_TABLE).map_err(io("open auth table"))?;
        table.insert(ENABLED_KEY, [u8::from(enabled)].as_slice()).map_err(io("write auth flag"))?;
        drop(table);
        self.auth_mut().enabled = enabled;
        Ok(())
    }

    /// etcd's commitRevision, then refreshRangePermCache: every change of
    /// the auth store ends here.
    pub fn commit_auth_revision(&mut self) -> Result<(), EtcdError> {
        let revision = self.st.auth.revision + 1;
        let tx = self.tx.as_ref().expect("an open batch has a transaction");
        let mut table = tx.open_table(AUTH_TABLE).map_err(io("open auth table"))?;
        table.insert(REVISION_KEY, revision.to_be_bytes().as_slice()).map_err(io("write auth revision"))?;
        drop(table);
        let auth = self.auth_mut();
        auth.revision = revision;
        auth.refresh_perms();
        Ok(())
    }
}
