//! Applying the Auth service's entries, and checking every other entry
//! against the auth store as of its place in the log (etcd's
//! `applierV3backend` auth methods and `authApplierV3`). Every member runs
//! this for every entry, so all agree on what was refused.

use prost::Message;

use super::{AuthData, AuthInfo, ROOT_ROLE, ROOT_USER};
use crate::engine::{HasHeader, Shared};
use crate::error::EtcdError;
use crate::lease::Lessor;
use crate::mvcc::WriteBatch;
use crate::pb::authpb::{Permission, Role, User, UserAddOptions};
use crate::pb::etcdserverpb::{
    AuthDisableResponse, AuthEnableResponse, AuthRoleAddResponse, AuthRoleDeleteResponse, AuthRoleGetResponse,
    AuthRoleGrantPermissionResponse, AuthRoleListResponse, AuthRoleRevokePermissionResponse, AuthStatusResponse,
    AuthUserAddResponse, AuthUserChangePasswordResponse, AuthUserDeleteResponse, AuthUserGetResponse,
    AuthUserGrantRoleResponse, AuthUserListResponse, AuthUserRevokeRoleResponse, AuthenticateResponse,
};
use crate::pb::ketchpb::internal_request::Request as R;

/// What the proposer of an Authenticate entry answers, once applied. Both
/// carry the auth revision the entry applied at, which the auth worker
/// compares with the one it checked the password at (etcd's retry loop).
pub enum Authenticated {
    /// A simple token, recorded by every member.
    Token { token: String, revision: u64 },
    /// A JWT, to be signed for this user at this revision off the node thread.
    SignJwt { username: String, revision: u64 },
}

/// etcd's authApplierV3 for the KV and lease entries: the refusal, if the
/// entry's user may not do what it asks.
pub fn refused(auth: &AuthData, who: Option<&AuthInfo>, r: &R, lessor: &Lessor) -> Option<EtcdError> {
    if !auth.enabled {
        return None;
    }
    let lease_keys = |id: i64| if id == 0 { Vec::new() } else { lessor.keys(id).unwrap_or_default() };
    let result = match r {
        R::Put(p) => auth.check_put(who, &p.key, p.prev_kv, &lease_keys(p.lease)),
        R::DeleteRange(d) => auth.check_write(who, &d.key, &d.range_end).and_then(|()| {
            if d.prev_kv {
                auth.check_read(who, &d.key, &d.range_end)
            } else {
                Ok(())
            }
        }),
        R::Txn(t) => auth.check_txn(who, t, &lease_keys),
        R::LeaseRevoke(l) => auth.check_lease_keys(who, &lease_keys(l.id)),
        // Raised by the member itself (quota), or asked for by a client and
        // then checked before proposing, as etcd's API layer checks them.
        _ => Ok(()),
    };
    result.err()
}

fn encode<M: Message + HasHeader>(shared: &Shared, mut resp: M) -> Vec<u8> {
    shared.fill_header(&mut resp);
    resp.encode_to_vec()
}

/// etcd's needAdminPermission: every Auth call but Authenticate, UserGet,
/// RoleGet (a user may read their own) and, in ketch as in etcd 3.5,
/// AuthStatus only when auth is off.
fn needs_admin(r: &R) -> bool {
    !matches!(r, R::Authenticate(_) | R::AuthUserGet(_) | R::AuthRoleGet(_))
}

/// Applies one Auth entry. `index` is the entry's Raft index.
pub fn apply(
    shared: &Shared,
    batch: &mut WriteBatch<'_>,
    r: &R,
    who: Option<&AuthInfo>,
    index: u64,
) -> Result<Applied, EtcdError> {
    if needs_admin(r) {
        batch.auth().check_admin(who)?;
    }
    let tokens = &shared.tokens;
    let done = |bytes: Vec<u8>| Ok(Applied::Answer(bytes));
    match r {
        R::AuthEnable(_) => {
            if batch.auth().enabled {
                return done(encode(shared, AuthEnableResponse::default()));
            }
            let Some(root) = batch.auth().users.get(ROOT_USER) else {
                return Err(EtcdError::RootUserNotExist);
            };
            if !root.roles.iter().any(|r| r == ROOT_ROLE) {
                return Err(EtcdError::RootRoleNotExist);
            }
            // etcd's AuthEnable writes the flag but not a new revision.
            batch.set_auth_enabled(true)?;
            done(encode(shared, AuthEnableResponse::default()))
        }
        R::AuthDisable(_) => {
            if batch.auth().enabled {
                batch.set_auth_enabled(false)?;
                batch.commit_auth_revision()?;
                tokens.disable();
            }
            done(encode(shared, AuthDisableResponse::default()))
        }
        R::AuthStatus(_) => {
            let a = batch.auth();
            done(encode(shared, AuthStatusResponse { header: None, enabled: a.enabled, auth_revision: a.revision }))
        }
        R::Authenticate(a) => {
            let auth = batch.auth();
            if !auth.enabled {
                return Err(EtcdError::AuthNotEnabled);
            }
            match auth.users.get(&a.name) {
                None => return Err(EtcdError::AuthFailed),
                Some(u) if u.options.as_ref().is_some_and(|o| o.no_password) => return Err(EtcdError::AuthFailed),
                Some(_) => {}
            }
            if tokens.is_jwt() {
                return Ok(Applied::Authenticated(Authenticated::SignJwt {
                    username: a.name.clone(),
                    revision: auth.revision,
                }));
            }
            let token = tokens.assign_simple(&a.simple_token, index, &a.name).unwrap_or_default();
            Ok(Applied::Authenticated(Authenticated::Token { token, revision: auth.revision }))
        }
        R::AuthUserAdd(u) => {
            if u.name.is_empty() {
                return Err(EtcdError::UserEmpty);
            }
            if batch.auth().users.contains_key(&u.name) {
                return Err(EtcdError::UserAlreadyExist);
            }
            let options = u.options.unwrap_or(UserAddOptions { no_password: false });
            let password = if options.no_password { Vec::new() } else { decode_hash(&u.hashed_password)? };
            batch.put_auth_user(User {
                name: u.name.clone().into_bytes().into(),
                password: password.into(),
                roles: Vec::new(),
                options: Some(options),
            })?;
            batch.commit_auth_revision()?;
            done(encode(shared, AuthUserAddResponse::default()))
        }
        R::AuthUserDelete(u) => {
            if batch.auth().enabled && u.name == ROOT_USER {
                return Err(EtcdError::InvalidAuthMgmt);
            }
            if !batch.auth().users.contains_key(&u.name) {
                return Err(EtcdError::UserNotFound);
            }
            batch.delete_auth_user(&u.name)?;
            batch.commit_auth_revision()?;
            tokens.invalidate_user(&u.name);
            done(encode(shared, AuthUserDeleteResponse::default()))
        }
        R::AuthUserChangePassword(c) => {
            let Some(user) = batch.auth().users.get(&c.name).cloned() else {
                return Err(EtcdError::UserNotFound);
            };
            let no_password = user.options.as_ref().is_some_and(|o| o.no_password);
            let password = if no_password { Vec::new() } else { decode_hash(&c.hashed_password)? };
            batch.put_auth_user(User { password: password.into(), ..user })?;
            batch.commit_auth_revision()?;
            tokens.invalidate_user(&c.name);
            done(encode(shared, AuthUserChangePasswordResponse::default()))
        }
        R::AuthUserGrantRole(g) => {
            let Some(mut user) = batch.auth().users.get(&g.user).cloned() else {
                return Err(EtcdError::UserNotFound);
            };
            if g.role != ROOT_ROLE && !batch.auth().roles.contains_key(&g.role) {
                return Err(EtcdError::RoleNotFound);
            }
            if let Err(at) = user.roles.binary_search(&g.role) {
                user.roles.insert(at, g.role.clone());
                batch.put_auth_user(user)?;
                batch.commit_auth_revision()?;
            }
            done(encode(shared, AuthUserGrantRoleResponse::default()))
        }
        R::AuthUserRevokeRole(g) => {
            if batch.auth().enabled && g.name == ROOT_USER && g.role == ROOT_ROLE {
                return Err(EtcdError::InvalidAuthMgmt);
            }
            let Some(mut user) = batch.auth().users.get(&g.name).cloned() else {
                return Err(EtcdError::UserNotFound);
            };
            let before = user.roles.len();
            user.roles.retain(|r| *r != g.role);
            if user.roles.len() == before {
                return Err(EtcdError::RoleNotGranted);
            }
            batch.put_auth_user(user)?;
            batch.commit_auth_revision()?;
            done(encode(shared, AuthUserRevokeRoleResponse::default()))
        }
        R::AuthUserGet(g) => {
            let auth = batch.auth();
            if auth.check_admin(who).is_err() && who.is_none_or(|w| w.username != g.name) {
                auth.check_admin(who)?;
            }
            let Some(user) = auth.users.get(&g.name) else {
                return Err(EtcdError::UserNotFound);
            };
            done(encode(shared, AuthUserGetResponse { header: None, roles: user.roles.clone() }))
        }
        R::AuthUserList(_) => {
            let users = batch.auth().users.keys().cloned().collect();
            done(encode(shared, AuthUserListResponse { header: None, users }))
        }
        R::AuthRoleAdd(a) => {
            if a.name.is_empty() {
                return Err(EtcdError::RoleEmpty);
            }
            if batch.auth().roles.contains_key(&a.name) {
                return Err(EtcdError::RoleAlreadyExist);
            }
            batch.put_auth_role(Role { name: a.name.clone().into_bytes().into(), key_permission: Vec::new() })?;
            batch.commit_auth_revision()?;
            done(encode(shared, AuthRoleAddResponse::default()))
        }
        R::AuthRoleGet(g) => {
            let auth = batch.auth();
            if auth.check_admin(who).is_err() && !who.is_some_and(|w| auth.has_role(&w.username, &g.role)) {
                auth.check_admin(who)?;
            }
            let Some(role) = auth.roles.get(&g.role) else {
                return Err(EtcdError::RoleNotFound);
            };
            done(encode(shared, AuthRoleGetResponse { header: None, perm: role.key_permission.clone() }))
        }
        R::AuthRoleList(_) => {
            let roles = batch.auth().roles.keys().cloned().collect();
            done(encode(shared, AuthRoleListResponse { header: None, roles }))
        }
        R::AuthRoleDelete(d) => {
            if batch.auth().enabled && d.role == ROOT_ROLE {
                return Err(EtcdError::InvalidAuthMgmt);
            }
            if !batch.auth().roles.contains_key(&d.role) {
                return Err(EtcdError::RoleNotFound);
            }
            batch.delete_auth_role(&d.role)?;
            let holders: Vec<User> =
                batch.auth().users.values().filter(|u| u.roles.contains(&d.role)).cloned().collect();
            for mut user in holders {
                user.roles.retain(|r| *r != d.role);
                batch.put_auth_user(user)?;
            }
            batch.commit_auth_revision()?;
            done(encode(shared, AuthRoleDeleteResponse::default()))
        }
        R::AuthRoleGrantPermission(g) => {
            let Some(perm) = &g.perm else {
                return Err(EtcdError::PermissionNotGiven);
            };
            if !is_valid_permission_range(&perm.key, &perm.range_end) {
                return Err(EtcdError::InvalidAuthMgmt);
            }
            let Some(mut role) = batch.auth().roles.get(&g.name).cloned() else {
                return Err(EtcdError::RoleNotFound);
            };
            let at = role.key_permission.partition_point(|p| p.key < perm.key);
            match role.key_permission.get_mut(at) {
                Some(p) if p.key == perm.key && p.range_end == perm.range_end => p.perm_type = perm.perm_type,
                _ => {
                    role.key_permission.push(Permission {
                        perm_type: perm.perm_type,
                        key: perm.key.clone(),
                        range_end: perm.range_end.clone(),
                    });
                    // etcd sorts with sort.Sort (unstable) by key only.
                    role.key_permission.sort_by(|a, b| a.key.cmp(&b.key));
                }
            }
            batch.put_auth_role(role)?;
            batch.commit_auth_revision()?;
            done(encode(shared, AuthRoleGrantPermissionResponse::default()))
        }
        R::AuthRoleRevokePermission(rv) => {
            let Some(mut role) = batch.auth().roles.get(&rv.role).cloned() else {
                return Err(EtcdError::RoleNotFound);
            };
            let before = role.key_permission.len();
            role.key_permission.retain(|p| p.key != rv.key || p.range_end != rv.range_end);
            if role.key_permission.len() == before {
                return Err(EtcdError::PermissionNotGranted);
            }
            batch.put_auth_role(role)?;
            batch.commit_auth_revision()?;
            done(encode(shared, AuthRoleRevokePermissionResponse::default()))
        }
        _ => Err(EtcdError::Internal("auth: not an auth entry".into())),
    }
}

/// What applying an Auth entry gives its proposer.
pub enum Applied {
    Answer(Vec<u8>),
    Authenticated(Authenticated),
}

/// The proposer's answer for an Authenticate entry that applied.
pub fn authenticate_answer(shared: &Shared, token: String) -> Vec<u8> {
    encode(shared, AuthenticateResponse { header: None, token })
}

/// etcd's hashedPassword is the bcrypt hash in standard base64.
fn decode_hash(hashed: &str) -> Result<Vec<u8>, EtcdError> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(hashed).map_err(|_| EtcdError::NoPasswordUser)
}

/// etcd's isValidPermissionRange: a key, then no end, an end after it, or "\0".
fn is_valid_permission_range(key: &[u8], range_end: &[u8]) -> bool {
    !key.is_empty() && (range_end.is_empty() || key < range_end || range_end == [0])
}
