// Generates the etcd wire types (etcdserverpb, mvccpb, authpb) and ketch's internal
// Raft payload from the .proto files in rust/proto. Needs `protoc` on PATH
// (Debian: protobuf-compiler); .ci/dev installs it.
//
// The client API's types also get serde impls (pbjson) for the JSON gateway,
// in the grpc-gateway's JSON: proto field names, 64-bit integers as strings,
// bytes in base64, defaults left out, unknown request fields ignored.
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
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let descriptors = out_dir.join("descriptors.bin");
    prost_build::Config::new()
        .bytes(["."]) // values and keys as Bytes: sliced from the request buffer, not copied
        .file_descriptor_set_path(&descriptors)
        .compile_protos(&protos, &["proto"])
        .expect("compiling rust/proto/*.proto (is protoc installed? apt-get install protobuf-compiler)");
    let descriptor_set = std::fs::read(&descriptors).expect("reading the descriptors prost-build wrote");
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_set)
        .expect("registering the descriptors for pbjson")
        .preserve_proto_field_names()
        .ignore_unknown_fields()
        .build(&[".etcdserverpb", ".mvccpb", ".authpb", ".v3lockpb", ".v3electionpb"])
        .expect("generating the serde impls for the JSON gateway");
}
