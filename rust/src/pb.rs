//! Generated protobuf types (prost), from rust/proto. etcd's client API
//! (`etcdserverpb`, `mvccpb`), its lock and election services (`v3lockpb`,
//! `v3electionpb`) and ketch's Raft entry payload (`ketchpb`).
#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod authpb {
    include!(concat!(env!("OUT_DIR"), "/authpb.rs"));
}
pub mod mvccpb {
    include!(concat!(env!("OUT_DIR"), "/mvccpb.rs"));
}
pub mod etcdserverpb {
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
}
pub mod v3lockpb {
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.rs"));
}
pub mod v3electionpb {
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.rs"));
}
pub mod ketchpb {
    include!(concat!(env!("OUT_DIR"), "/ketchpb.rs"));
}
