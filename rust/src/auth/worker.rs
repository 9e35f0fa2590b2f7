//! The `ketch-auth` thread: the auth store's slow work, kept off the node
//! thread (which would stall every write behind one bcrypt) and off the
//! readers. bcrypt at etcd's default cost 10 takes tens of milliseconds.
//!
//! - UserAdd / UserChangePassword: the password is hashed here and the
//!   request goes on to the node with the hash only (etcd 3.5's
//!   hashedPassword), so no password reaches the log.
//! - Authenticate, after its ReadIndex: the password is checked here
//!   (etcd's CheckPassword before proposing); then the node proposes the
//!   entry that issues the token.
//! - An Authenticate that applied comes back here. If the auth revision it
//!   applied at is not the one its password was checked at (a password
//!   change, a user deleted, ... overtook it), the token it issued is not
//!   given out: the password is checked again and a new entry proposed, as
//!   etcd 3.5's Authenticate loops ("revision when password checked became
//!   stale; retrying"). Otherwise the answer is sent, or the JWT signed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use prost::Message;

use super::apply::Authenticated;
use super::AuthInfo;
use crate::engine::{Method, Shared};
use crate::error::EtcdError;
use crate::node::NodeMsg;
use crate::pb::etcdserverpb::{AuthUserAddRequest, AuthUserChangePasswordRequest, AuthenticateRequest};
use crate::pb::ketchpb::InternalAuthenticateRequest;

pub(crate) enum AuthJob {
    /// UserAdd or UserChangePassword, as the client sent it.
    Hash {
        method: Method,
        request: Bytes,
        token: u64,
        who: Option<AuthInfo>,
    },
    CheckPassword {
        request: AuthenticateRequest,
        token: u64,
    },
    /// The Authenticate entry proposed for `token` applied.
    Applied {
        outcome: Authenticated,
        token: u64,
    },
    Stop,
}

/// etcd clamps a cost out of bcrypt's bounds (4 to 31) to its default.
pub fn bcrypt_cost(cost: u32) -> u32 {
    if (4..=31).contains(&cost) {
        cost
    } else {
        bcrypt::DEFAULT_COST
    }
}

fn hash(password: &str, cost: u32) -> Result<String, EtcdError> {
    use base64::Engine as _;
    let hashed = bcrypt::hash(password, cost).map_err(|e| EtcdError::Internal(format!("auth: bcrypt: {e}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(hashed.as_bytes()))
}

/// An Authenticate between its password check and its answer.
struct Checking {
    request: AuthenticateRequest,
    /// The auth revision the password was checked at.
    revision: u64,
    since: Instant,
}

/// A proposal that failed is answered by the node, not here; its entry is
/// dropped once it is older than any request may wait.
const FORGET_CHECKING_AFTER: Duration = Duration::from_mins(5);

pub(crate) fn run(shared: &Shared, jobs: &Receiver<AuthJob>, to_node: &Sender<NodeMsg>) {
    let cost = bcrypt_cost(shared.config.bcrypt_cost);
    let mut checking: HashMap<u64, Checking> = HashMap::new();
    while let Ok(job) = jobs.recv() {
        let (token, next) = match job {
            AuthJob::Stop => return,
            AuthJob::Hash { method, request, token, who } => {
                (token, hashed_request(method, request, cost).map(|r| (method, r, who)))
            }
            AuthJob::CheckPassword { request, token } => {
                checking.retain(|_, c| c.since.elapsed() < FORGET_CHECKING_AFTER);
                (token, check_and_propose(shared, &mut checking, request, token))
            }
            AuthJob::Applied { outcome, token } => {
                let (Authenticated::Token { revision, .. } | Authenticated::SignJwt { revision, .. }) = &outcome;
                match checking.remove(&token) {
                    Some(c) if c.revision != *revision => {
                        crate::log_info!("revision when password checked became stale; retrying");
                        (token, check_and_propose(shared, &mut checking, c.request, token))
                    }
                    _ => {
                        let answer = match outcome {
                            Authenticated::Token { token, .. } => Ok(super::apply::authenticate_answer(shared, token)),
                            Authenticated::SignJwt { username, revision } => shared
                                .tokens
                                .sign_jwt(&username, revision)
                                .map(|t| super::apply::authenticate_answer(shared, t)),
                        };
                        shared.completions.push(token, answer);
                        continue;
                    }
                }
            }
        };
        match next {
            Err(e) => {
                checking.remove(&token);
                shared.completions.push(token, Err(e));
            }
            Ok((method, request, who)) => {
                if to_node.send(NodeMsg::Write { method, request, token, who }).is_err() {
                    checking.remove(&token);
                    shared.completions.push(token, Err(EtcdError::Stopped));
                }
            }
        }
    }
}

type Proposal = (Method, Bytes, Option<AuthInfo>);

/// Checks the password and remembers at which auth revision, for
/// [`AuthJob::Applied`]; the entry to propose if it matched.
fn check_and_propose(
    shared: &Shared,
    checking: &mut HashMap<u64, Checking>,
    request: AuthenticateRequest,
    token: u64,
) -> Result<Proposal, EtcdError> {
    let (entry, revision) = check_password(shared, &request)?;
    checking.insert(token, Checking { request, revision, since: Instant::now() });
    Ok((Method::AuthAuthenticate, entry, None))
}

fn hashed_request(method: Method, request: Bytes, cost: u32) -> Result<Bytes, EtcdError> {
    let decode_err = |e: prost::DecodeError| EtcdError::BadRequest(e.to_string());
    Ok(if method == Method::AuthUserAdd {
        let mut r = AuthUserAddRequest::decode(request).map_err(decode_err)?;
        if !r.options.as_ref().is_some_and(|o| o.no_password) {
            r.hashed_password = hash(&r.password, cost)?;
        }
        r.password.clear();
        r.encode_to_vec().into()
    } else {
        let mut r = AuthUserChangePasswordRequest::decode(request).map_err(decode_err)?;
        r.hashed_password = hash(&r.password, cost)?;
        r.password.clear();
        r.encode_to_vec().into()
    })
}

/// etcd's CheckPassword: the entry to propose and the auth revision the
/// password was checked at.
fn check_password(shared: &Shared, r: &AuthenticateRequest) -> Result<(Bytes, u64), EtcdError> {
    let auth = shared.store.auth();
    if !auth.enabled {
        return Err(EtcdError::AuthNotEnabled);
    }
    let Some(user) = auth.users.get(&r.name) else {
        return Err(EtcdError::AuthFailed);
    };
    if user.options.as_ref().is_some_and(|o| o.no_password) {
        return Err(EtcdError::NoPasswordUser);
    }
    let hashed = String::from_utf8_lossy(&user.password);
    if !bcrypt::verify(&r.password, &hashed).unwrap_or(false) {
        return Err(EtcdError::AuthFailed);
    }
    let entry = InternalAuthenticateRequest { name: r.name.clone(), simple_token: super::tokens::Tokens::gen_prefix() };
    Ok((entry.encode_to_vec().into(), auth.revision))
}
