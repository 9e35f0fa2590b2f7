//! Generated protobuf types (prost), from rust/proto. etcd's client API
//! (`etcdserverpb`, `mvccpb`), its lock and election services (`v3lockpb`,
//! `v3electionpb`) and ketch's Raft entry payload (`ketchpb`), the first four with serde impls
//! (pbjson) for the JSON gateway.
#![allow(clippy::all, clippy::pedantic, missing_docs)] // generated code: prost and pbjson write it, not us

pub mod authpb {
    include!(concat!(env!("OUT_DIR"), "/authpb.rs"));
    include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
}
pub mod mvccpb {
    include!(concat!(env!("OUT_DIR"), "/mvccpb.rs"));
    include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
}
pub mod etcdserverpb {
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
}
pub mod v3lockpb {
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.rs"));
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.serde.rs"));
}
pub mod v3electionpb {
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.rs"));
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.serde.rs"));
}
pub mod ketchpb {
    include!(concat!(env!("OUT_DIR"), "/ketchpb.rs"));
}
