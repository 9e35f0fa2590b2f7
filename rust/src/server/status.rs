//! The one table from engine errors to gRPC status codes.
//!
//! The engine names each error and carries etcd's exact message
//! (`crate::error::EtcdError`); this picks the code etcd sends beside that
//! message (etcd's `api/v3rpc/rpctypes/error.go`, `toGRPCErrorMap`).

use tonic::{Code, Status};

use crate::error::EtcdError;

/// No catch-all arm: a new engine error does not compile until it has its code here.
pub fn code_of(e: &EtcdError) -> Code {
    use EtcdError as E;
    match e {
        E::EmptyKey
        | E::KeyNotFound
        | E::ValueProvided
        | E::LeaseProvided
        | E::TooManyOps
        | E::DuplicateKey
        | E::RequestTooLarge
        | E::MemberBadUrls
        | E::UserEmpty
        | E::RoleEmpty
        | E::AuthFailed
        | E::PermissionNotGiven
        | E::InvalidAuthMgmt
        | E::AuthOldRevision => Code::InvalidArgument,
        E::Compacted | E::FutureRev | E::LeaseTtlTooLarge => Code::OutOfRange,
        E::NoSpace | E::TooManyRequests => Code::ResourceExhausted,
        E::Corrupt => Code::DataLoss,
        E::BadLeaderTransferee
        | E::LeaseExists
        | E::NotLeader
        | E::MemberExists
        | E::PeerUrlExists
        | E::MemberNotLearner
        | E::LearnerNotReady
        | E::TooManyLearners
        | E::AuthNotEnabled
        | E::RootUserNotExist
        | E::RootRoleNotExist
        | E::UserAlreadyExist
        | E::UserNotFound
        | E::RoleAlreadyExist
        | E::RoleNotFound
        | E::RoleNotGranted
        | E::PermissionNotGranted => Code::FailedPrecondition,
        E::PermissionDenied => Code::PermissionDenied,
        E::InvalidAuthToken => Code::Unauthenticated,
        // etcd answers a removed ID as not found too (v3rpc/util.go).
        E::LeaseNotFound | E::MemberNotFound => Code::NotFound,
        E::NoLeader
        | E::Timeout
        | E::Stopped
        | E::LeaderChanged
        | E::NotSupportedForLearner
        | E::TimeoutDueToLeaderFail
        | E::TimeoutWaitAppliedIndex => Code::Unavailable,
        // Neither is in etcd's gRPC error map: grpc-go sends them as Unknown.
        E::NotEnoughStartedMembers | E::LeaderTransferTimeout | E::NoPasswordUser | E::AuthUnconverted(_) => {
            Code::Unknown
        }
        // A request whose bytes do not decode: grpc-go refuses it with
        // Internal before etcd sees it, with the same words.
        E::BadRequest(_) | E::Internal(_) => Code::Internal,
    }
}

pub fn status_of(e: &EtcdError) -> Status {
    Status::new(code_of(e), e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use EtcdError as E;

    /// etcd's rpctypes/error.go, a few of each kind.
    #[test]
    fn codes_are_etcds() {
        assert_eq!(code_of(&E::EmptyKey), Code::InvalidArgument);
        assert_eq!(code_of(&E::RequestTooLarge), Code::InvalidArgument);
        assert_eq!(code_of(&E::Compacted), Code::OutOfRange);
        assert_eq!(code_of(&E::FutureRev), Code::OutOfRange);
        assert_eq!(code_of(&E::NoSpace), Code::ResourceExhausted);
        assert_eq!(code_of(&E::LeaseNotFound), Code::NotFound);
        for e in [E::NoLeader, E::Timeout, E::Stopped, E::LeaderChanged, E::NotSupportedForLearner] {
            assert_eq!(code_of(&e), Code::Unavailable, "{e}");
        }
        for e in [E::NotLeader, E::MemberExists, E::PeerUrlExists, E::MemberNotLearner, E::LearnerNotReady] {
            assert_eq!(code_of(&e), Code::FailedPrecondition, "{e}");
        }
        assert_eq!(code_of(&E::TooManyLearners), Code::FailedPrecondition);
        assert_eq!(code_of(&E::MemberNotFound), Code::NotFound);
        assert_eq!(code_of(&E::NotEnoughStartedMembers), Code::Unknown);
        assert_eq!(code_of(&E::BadRequest("x".into())), Code::Internal);
        assert_eq!(code_of(&E::PermissionDenied), Code::PermissionDenied);
        assert_eq!(code_of(&E::InvalidAuthToken), Code::Unauthenticated);
        assert_eq!(code_of(&E::AuthOldRevision), Code::InvalidArgument);
        assert_eq!(code_of(&E::RootUserNotExist), Code::FailedPrecondition);
    }

    #[test]
    fn the_message_is_etcds_verbatim() {
        let s = status_of(&E::Compacted);
        assert_eq!(s.message(), "etcdserver: mvcc: required revision has been compacted");
        // Said once, not twice (grpc-go's prefix is part of the error's text).
        let s = status_of(&E::BadRequest("unexpected EOF".into()));
        assert_eq!(s.message(), "grpc: error unmarshalling request: unexpected EOF");
    }
}
