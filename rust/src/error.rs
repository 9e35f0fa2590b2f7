//! The errors a client can get back, each named once with etcd's exact wire
//! message. The gRPC status code for each lives in one table on the Python
//! side (`ketch/errors.py`), keyed by [`EtcdError::name`]; keep the two in step.

use thiserror::Error;

/// An error that is answered to the client as etcd would answer it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EtcdError {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: server stopped")]
    Stopped,
    /// The request bytes are not a valid protobuf message of the method's type.
    /// gRPC itself would say this before etcd saw the request.
    #[error("grpc: error unmarshalling request: {0}")]
    BadRequest(String),
    /// Storage failed underneath (disk full, I/O error). The member stops
    /// taking writes; the message names what failed.
    #[error("etcdserver: {0}")]
    Internal(String),
}

impl EtcdError {
    /// Stable name used across the binding to pick the gRPC status code.
    pub fn name(&self) -> &'static str {
        match self {
            EtcdError::EmptyKey => "EmptyKey",
            EtcdError::KeyNotFound => "KeyNotFound",
            EtcdError::ValueProvided => "ValueProvided",
            EtcdError::LeaseProvided => "LeaseProvided",
            EtcdError::TooManyOps => "TooManyOps",
            EtcdError::DuplicateKey => "DuplicateKey",
            EtcdError::Compacted => "Compacted",
            EtcdError::FutureRev => "FutureRev",
            EtcdError::NoSpace => "NoSpace",
            EtcdError::LeaseNotFound => "LeaseNotFound",
            EtcdError::LeaseExists => "LeaseExists",
            EtcdError::LeaseTtlTooLarge => "LeaseTtlTooLarge",
            EtcdError::RequestTooLarge => "RequestTooLarge",
            EtcdError::NoLeader => "NoLeader",
            EtcdError::Timeout => "Timeout",
            EtcdError::Stopped => "Stopped",
            EtcdError::BadRequest(_) => "BadRequest",
            EtcdError::Internal(_) => "Internal",
        }
    }
}
