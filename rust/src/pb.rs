//! Generated protobuf types (prost), from rust/proto. etcd's client API
//! (`etcdserverpb`, `mvccpb`) and ketch's Raft entry payload (`ketchpb`).
#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod mvccpb {
    include!(concat!(env!("OUT_DIR"), "/mvccpb.rs"));
}
pub mod etcdserverpb {
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
}
pub mod ketchpb {
    include!(concat!(env!("OUT_DIR"), "/ketchpb.rs"));
}
