// Generates the etcd wire types (etcdserverpb, mvccpb) and ketch's internal
// Raft payload from the .proto files in rust/proto. Needs `protoc` on PATH
// (Debian: protobuf-compiler); .ci/dev installs it.
fn main() {
    let protos = [
        "proto/kv.proto",
        "proto/auth.proto",
        "proto/rpc.proto",
        "proto/internal.proto",
        "proto/v3lock.proto",
        "proto/v3election.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    prost_build::Config::new()
        .bytes(["."]) // values and keys as Bytes: sliced from the request buffer, not copied
        .compile_protos(&protos, &["proto"])
        .expect("compiling rust/proto/*.proto (is protoc installed? apt-get install protobuf-compiler)");
}
