//! The checks etcd's API layer makes before a request is proposed or read
//! (`v3rpc/maintenance.go`, `v3rpc/key.go`, `etcdserver/v3_server.go`):
//! who the caller is, and the calls that need the root role or any user.
//! Range is checked on the reader, and writes at apply (`apply`).

use prost::Message;

use super::tokens::Tokens;
use super::{AuthData, AuthInfo, Caller};
use crate::engine::Method;
use crate::error::EtcdError;
use crate::lease::Lessor;
use crate::pb::etcdserverpb::{
    alarm_request::AlarmAction, AlarmRequest, LeaseKeepAliveRequest, LeaseTimeToLiveRequest,
};

/// etcd's AuthInfoFromCtx, then AuthInfoFromTLS: the token if there is
/// one (an unknown or expired one is refused), else the certificate's
/// common name. Nothing while auth is off.
pub fn resolve(auth: &AuthData, tokens: &Tokens, caller: &Caller) -> Result<Option<AuthInfo>, EtcdError> {
    if !auth.enabled {
        return Ok(None);
    }
    if let Some(token) = &caller.token {
        let token = token.strip_prefix("Bearer ").unwrap_or(token);
        return tokens.info(token, auth.revision).map(Some).ok_or(EtcdError::InvalidAuthToken);
    }
    Ok(caller.common_name.as_ref().map(|cn| AuthInfo { username: cn.clone(), revision: auth.revision }))
}

/// An auth error in etcd's auth package's words (what grpc-go sends when
/// etcd's API layer does not convert it).
fn unconverted(e: EtcdError) -> EtcdError {
    let words = match e {
        EtcdError::PermissionDenied => "auth: permission denied",
        EtcdError::UserEmpty => "auth: user name is empty",
        EtcdError::UserNotFound => "auth: user not found",
        EtcdError::InvalidAuthToken => "auth: invalid auth token",
        other => return other,
    };
    EtcdError::AuthUnconverted(words.into())
}

pub fn authorize(
    auth: &AuthData,
    tokens: &Tokens,
    lessor: &Lessor,
    method: Method,
    request: &[u8],
    caller: &Caller,
) -> Result<Option<AuthInfo>, EtcdError> {
    if caller.checked_by_member {
        return Ok(None);
    }
    let raw = matches!(
        method,
        Method::MaintenanceDefragment
            | Method::MaintenanceSnapshot
            | Method::MaintenanceHash
            | Method::MaintenanceHashKv
    );
    let who = resolve(auth, tokens, caller).map_err(|e| if raw { unconverted(e) } else { e })?;
    if !auth.enabled {
        return Ok(who);
    }
    let w = who.as_ref();
    let lease_keys = |id: i64| lessor.keys(id).unwrap_or_default();
    match method {
        // AuthAdmin.isPermitted, authMaintenanceServer.isAuthenticated,
        // checkMembershipOperationPermission.
        // etcd 3.5 returns these four refusals unconverted (code Unknown).
        Method::MaintenanceDefragment
        | Method::MaintenanceSnapshot
        | Method::MaintenanceHash
        | Method::MaintenanceHashKv => {
            auth.check_admin(w).map_err(unconverted)?;
        }
        Method::KvCompact
        | Method::MaintenanceMoveLeader
        | Method::ClusterMemberAdd
        | Method::ClusterMemberRemove
        | Method::ClusterMemberUpdate
        | Method::ClusterMemberPromote => auth.check_admin(w)?,
        Method::MaintenanceAlarm => {
            let get = AlarmRequest::decode(request).is_ok_and(|r| r.action == AlarmAction::Get as i32);
            if get {
                auth.check_authenticated(w)?;
            } else {
                auth.check_admin(w)?;
            }
        }
        // requireAuthInfo.
        Method::MaintenanceStatus
        | Method::LeaseGrant
        | Method::LeaseRevoke
        | Method::LeaseLeases
        | Method::ClusterMemberList => {
            auth.check_authenticated(w)?;
        }
        // checkLeaseRenew: root, or write on every key of the lease.
        Method::LeaseKeepAlive => {
            let id = LeaseKeepAliveRequest::decode(request).map_or(0, |r| r.id);
            auth.check_authenticated(w)?;
            auth.check_lease_keys(w, &lease_keys(id))?;
        }
        // checkLeaseTimeToLive, only when keys are asked for: root, or read on every key.
        Method::LeaseTimeToLive => {
            if let Ok(r) = LeaseTimeToLiveRequest::decode(request) {
                if r.keys {
                    auth.check_authenticated(w)?;
                    if auth.check_admin(w).is_err() {
                        for key in lease_keys(r.id) {
                            auth.check_read(w, &key, &[])?;
                        }
                    }
                }
            }
        }
        _ => {}
    }
    Ok(who)
}
