use std::collections::BTreeMap;

use super::*;
use crate::pb::authpb::Permission;

fn data(perms: &[(&[u8], &[u8], PermType)]) -> AuthData {
    let role = Role {
        name: b"r".to_vec().into(),
        key_permission: perms
            .iter()
            .map(|(k, e, t)| Permission { perm_type: *t as i32, key: k.to_vec().into(), range_end: e.to_vec().into() })
            .collect(),
    };
    let user = |name: &str, roles: &[&str]| User {
        name: name.as_bytes().to_vec().into(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        ..User::default()
    };
    let users = BTreeMap::from([("u".to_owned(), user("u", &["r"])), ("root".to_owned(), user("root", &["root"]))]);
    AuthData::new(true, 5, users, BTreeMap::from([("r".to_owned(), role)]))
}

fn u() -> Option<AuthInfo> {
    Some(AuthInfo { username: "u".into(), revision: 5 })
}

#[test]
fn a_prefix_grant_covers_its_keys_and_ranges_only() {
    let d = data(&[(b"foo", b"fop", PermType::Readwrite)]);
    assert!(d.check_write(u().as_ref(), b"foo", b"").is_ok());
    assert!(d.check_write(u().as_ref(), b"foo/bar", b"").is_ok());
    assert!(d.check_read(u().as_ref(), b"foo", b"fop").is_ok());
    assert!(d.check_read(u().as_ref(), b"foo/a", b"foo/b").is_ok());
    assert_eq!(d.check_read(u().as_ref(), b"foo", b"foq"), Err(EtcdError::PermissionDenied));
    assert_eq!(d.check_read(u().as_ref(), b"fo", b""), Err(EtcdError::PermissionDenied));
    assert_eq!(d.check_read(u().as_ref(), b"foo", b"\0"), Err(EtcdError::PermissionDenied));
}

#[test]
fn single_key_and_from_key_grants() {
    let d = data(&[(b"k", b"", PermType::Read), (b"m", b"\0", PermType::Write)]);
    assert!(d.check_read(u().as_ref(), b"k", b"").is_ok());
    assert_eq!(d.check_write(u().as_ref(), b"k", b""), Err(EtcdError::PermissionDenied));
    assert_eq!(d.check_read(u().as_ref(), b"k0", b""), Err(EtcdError::PermissionDenied));
    assert!(d.check_write(u().as_ref(), b"zzz", b"").is_ok());
    assert!(d.check_write(u().as_ref(), b"m", b"\0").is_ok());
    assert_eq!(d.check_write(u().as_ref(), b"l", b"\0"), Err(EtcdError::PermissionDenied));
}

#[test]
fn touching_grants_merge_into_one_range() {
    let d = data(&[(b"a", b"", PermType::Read), (b"a\0", b"c", PermType::Read)]);
    assert!(d.check_read(u().as_ref(), b"a", b"c").is_ok());
    assert_eq!(d.check_read(u().as_ref(), b"a", b"d"), Err(EtcdError::PermissionDenied));
}

#[test]
fn root_passes_everything_and_old_or_missing_tokens_do_not() {
    let d = data(&[]);
    let root = Some(AuthInfo { username: "root".into(), revision: 5 });
    assert!(d.check_write(root.as_ref(), b"anything", b"\0").is_ok());
    assert!(d.check_admin(root.as_ref()).is_ok());
    assert_eq!(d.check_admin(u().as_ref()), Err(EtcdError::PermissionDenied));
    assert_eq!(d.check_read(None, b"k", b""), Err(EtcdError::UserEmpty));
    let old = Some(AuthInfo { username: "u".into(), revision: 4 });
    assert_eq!(d.check_read(old.as_ref(), b"k", b""), Err(EtcdError::AuthOldRevision));
    let gone = Some(AuthInfo { username: "nobody".into(), revision: 5 });
    assert_eq!(d.check_read(gone.as_ref(), b"k", b""), Err(EtcdError::PermissionDenied));
    assert_eq!(d.check_admin(gone.as_ref()), Err(EtcdError::UserNotFound));
}

#[test]
fn disabled_auth_checks_nothing() {
    let mut d = data(&[]);
    d.enabled = false;
    assert!(d.check_write(None, b"k", b"").is_ok());
    assert!(d.check_admin(None).is_ok());
}
