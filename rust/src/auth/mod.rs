//! etcd's auth: users, roles, key-range permissions, the auth revision and
//! the enabled flag (etcd's `server/auth/store.go`), and the tokens that
//! name a user on later calls (`tokens`).
//!
//! ```text
//!  Auth RPC ─► engine ─► (auth worker: bcrypt hash / check, off the node thread)
//!           ─► node: proposed as an InternalRequest ─► every member applies it
//!              (`apply`) to its write batch: auth_users / auth_roles / auth
//!              tables and the in-memory [`AuthData`], in one transaction
//!  any RPC with a token ─► engine resolves it to an [`AuthInfo`]
//!     reads:  checked on the reader before the store is read (`check_*`)
//!     writes: the AuthInfo rides in the entry's header; every member checks
//!             it at apply against the auth store as of that entry
//! ```
//!
//! The store's data is small (users and roles), so each change builds a new
//! [`AuthData`] with its merged permissions and publishes it whole; checks
//! read an `Arc` of the last published one and never wait for an apply.

pub mod api;
pub mod apply;
mod perms;
pub mod tokens;
pub mod worker;

use std::collections::{BTreeMap, HashMap};

use crate::error::EtcdError;
use crate::pb::authpb::{permission::Type as PermType, Role, User};
use crate::pb::etcdserverpb::{request_op, TxnRequest};

pub use perms::Ranges;

/// etcd's names for the administrator (rootUser, rootRole).
pub const ROOT_USER: &str = "root";
pub const ROOT_ROLE: &str = "root";

/// Who a request runs as (etcd's AuthInfo): the user and the auth revision
/// at which their token was issued.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthInfo {
    pub username: String,
    pub revision: u64,
}

/// What a caller presented: a token from the `token` metadata, the common
/// name of a verified TLS client certificate, both or neither.
#[derive(Clone, Debug, Default)]
pub struct Caller {
    pub token: Option<String>,
    pub common_name: Option<String>,
    /// A leader-only call a follower forwarded over the peer port, after it
    /// checked its own caller: served unchecked, as etcd's leader serves the
    /// lease renewals, TTL look-ups and promotions its followers send to its
    /// peer URL (leasehttp, /members/promote) with no user at all.
    pub checked_by_member: bool,
}

/// A user's merged permissions over all their roles (etcd's
/// unifiedRangePermissions).
#[derive(Clone, Debug, Default)]
struct UserPerms {
    read: Ranges,
    write: Ranges,
}

/// The auth store as of one applied entry.
#[derive(Clone, Debug, Default)]
pub struct AuthData {
    pub enabled: bool,
    /// etcd's auth revision: bumped by every change of users, roles or the
    /// enabled flag (AuthDisable included), never by a read.
    pub revision: u64,
    pub users: BTreeMap<String, User>,
    pub roles: BTreeMap<String, Role>,
    perms: HashMap<String, UserPerms>,
}

impl AuthData {
    pub fn new(enabled: bool, revision: u64, users: BTreeMap<String, User>, roles: BTreeMap<String, Role>) -> AuthData {
        let mut data = AuthData { enabled, revision, users, roles, perms: HashMap::new() };
        data.refresh_perms();
        data
    }

    /// Rebuilds every user's merged permissions (etcd's refreshRangePermCache).
    pub(crate) fn refresh_perms(&mut self) {
        let mut perms = HashMap::with_capacity(self.users.len());
        for (name, user) in &self.users {
            let mut merged = UserPerms::default();
            for role in user.roles.iter().filter_map(|r| self.roles.get(r)) {
                for p in &role.key_permission {
                    let (read, write) = match PermType::try_from(p.perm_type) {
                        Ok(PermType::Read) => (true, false),
                        Ok(PermType::Write) => (false, true),
                        Ok(PermType::Readwrite) => (true, true),
                        Err(_) => (false, false),
                    };
                    if read {
                        merged.read.insert(&p.key, &p.range_end);
                    }
                    if write {
                        merged.write.insert(&p.key, &p.range_end);
                    }
                }
            }
            merged.read.normalize();
            merged.write.normalize();
            perms.insert(name.clone(), merged);
        }
        self.perms = perms;
    }

    fn has_root_role(&self, username: &str) -> bool {
        self.users.get(username).is_some_and(|u| u.roles.binary_search_by(|r| r.as_str().cmp(ROOT_ROLE)).is_ok())
    }

    /// etcd's isOpPermitted: read or write on a key (`range_end` empty) or a range.
    fn is_op_permitted(
        &self,
        info: Option<&AuthInfo>,
        key: &[u8],
        range_end: &[u8],
        write: bool,
    ) -> Result<(), EtcdError> {
        if !self.enabled {
            return Ok(());
        }
        // Revision 0: no token at all (etcd passes an empty AuthInfo).
        let info = match info {
            Some(i) if i.revision != 0 => i,
            _ => return Err(EtcdError::UserEmpty),
        };
        if info.revision < self.revision {
            return Err(EtcdError::AuthOldRevision);
        }
        if !self.users.contains_key(&info.username) {
            return Err(EtcdError::PermissionDenied);
        }
        if self.has_root_role(&info.username) {
            return Ok(());
        }
        let Some(perms) = self.perms.get(&info.username) else {
            return Err(EtcdError::PermissionDenied);
        };
        let ranges = if write { &perms.write } else { &perms.read };
        let allowed = if range_end.is_empty() { ranges.contains_key(key) } else { ranges.covers(key, range_end) };
        if allowed {
            Ok(())
        } else {
            Err(EtcdError::PermissionDenied)
        }
    }

    pub fn check_read(&self, info: Option<&AuthInfo>, key: &[u8], range_end: &[u8]) -> Result<(), EtcdError> {
        self.is_op_permitted(info, key, range_end, false)
    }

    pub fn check_write(&self, info: Option<&AuthInfo>, key: &[u8], range_end: &[u8]) -> Result<(), EtcdError> {
        self.is_op_permitted(info, key, range_end, true)
    }

    /// etcd's IsAdminPermitted: the root role.
    pub fn check_admin(&self, info: Option<&AuthInfo>) -> Result<(), EtcdError> {
        if !self.enabled {
            return Ok(());
        }
        let Some(info) = info.filter(|i| !i.username.is_empty()) else {
            return Err(EtcdError::UserEmpty);
        };
        if !self.users.contains_key(&info.username) {
            return Err(EtcdError::UserNotFound);
        }
        if !self.has_root_role(&info.username) {
            return Err(EtcdError::PermissionDenied);
        }
        Ok(())
    }

    /// etcd's requireAuthInfo: any authenticated user.
    pub fn check_authenticated(&self, info: Option<&AuthInfo>) -> Result<(), EtcdError> {
        if self.enabled && info.is_none() {
            return Err(EtcdError::UserEmpty);
        }
        Ok(())
    }

    pub fn has_role(&self, username: &str, role: &str) -> bool {
        self.users.get(username).is_some_and(|u| u.roles.iter().any(|r| r == role))
    }

    /// etcd's checkTxnAuth: every compare and every op of both branches,
    /// nested txns included; a put or delete with prev_kv needs read too.
    pub fn check_txn(
        &self,
        info: Option<&AuthInfo>,
        txn: &TxnRequest,
        lease_keys: &dyn Fn(i64) -> Vec<bytes::Bytes>,
    ) -> Result<(), EtcdError> {
        for c in &txn.compare {
            self.check_read(info, &c.key, &c.range_end)?;
        }
        for op in txn.success.iter().chain(&txn.failure) {
            match &op.request {
                Some(request_op::Request::RequestRange(r)) => self.check_read(info, &r.key, &r.range_end)?,
                Some(request_op::Request::RequestPut(p)) => {
                    self.check_put(info, &p.key, p.prev_kv, &lease_keys(p.lease))?;
                }
                Some(request_op::Request::RequestDeleteRange(d)) => {
                    if d.prev_kv {
                        self.check_read(info, &d.key, &d.range_end)?;
                    }
                    self.check_write(info, &d.key, &d.range_end)?;
                }
                Some(request_op::Request::RequestTxn(t)) => self.check_txn(info, t, lease_keys)?,
                None => {}
            }
        }
        Ok(())
    }

    /// etcd's checkPutAuth: write on the key, write on every key already on
    /// the lease it attaches (or the user could not revoke that lease), and
    /// read for prev_kv.
    pub fn check_put(
        &self,
        info: Option<&AuthInfo>,
        key: &[u8],
        prev_kv: bool,
        lease_keys: &[bytes::Bytes],
    ) -> Result<(), EtcdError> {
        self.check_write(info, key, &[])?;
        self.check_lease_keys(info, lease_keys)?;
        if prev_kv {
            self.check_read(info, key, &[])?;
        }
        Ok(())
    }

    /// etcd's checkLeasePutsKeys: root, or write on every key of the lease.
    pub fn check_lease_keys(&self, info: Option<&AuthInfo>, keys: &[bytes::Bytes]) -> Result<(), EtcdError> {
        if keys.is_empty() || self.check_admin(info).is_ok() {
            return Ok(());
        }
        keys.iter().try_for_each(|k| self.check_write(info, k, &[]))
    }
}

#[cfg(test)]
mod tests;
