// Generates the etcd wire types (etcdserverpb, mvccpb, authpb) and ketch's internal
// Raft payload from the .proto files in rust/proto. Needs `protoc` on PATH
// (Debian: protobuf-compiler); .ci/dev installs it.
//
// The client API's types also get serde impls (pbjson) for the JSON gateway,
// in the grpc-gateway's JSON: proto field names, 64-bit integers as strings,
// bytes in base64, defaults left out, unknown request fields ignored.
//
// It also sets KETCH_GIT_SHA, the revision `ketch --version` prints (see git_sha).
fn main() {
    git_sha();
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

/// The file an sdist carries in place of .git: `.ci/dev wheel` writes the
/// checkout's revision into it before packing the sdist (it is not committed).
const GIT_SHA_FILE: &str = "GIT_SHA";

/// Sets KETCH_GIT_SHA for `env!`: the short commit this crate is built from.
/// In order: $KETCH_GIT_SHA (a packager building from a tarball says it), the
/// GIT_SHA file beside Cargo.toml (an sdist), `git rev-parse` when this crate
/// is the rust/ directory of a git checkout, else a text saying it is unknown,
/// as etcd's --version says "Not provided" for a build outside its scripts.
fn git_sha() {
    println!("cargo:rerun-if-env-changed=KETCH_GIT_SHA");
    let manifest_dir = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let sha_file = manifest_dir.join(GIT_SHA_FILE);
    let sha = if let Some(sha) = std::env::var("KETCH_GIT_SHA").ok().filter(|s| !s.trim().is_empty()) {
        sha.trim().to_owned()
    } else if let Ok(text) = std::fs::read_to_string(&sha_file) {
        println!("cargo:rerun-if-changed={}", sha_file.display());
        text.trim().to_owned()
    } else if let Some(sha) = git_checkout_sha(&manifest_dir) {
        sha
    } else {
        "Not provided (built outside a git checkout)".to_owned()
    };
    println!("cargo:rustc-env=KETCH_GIT_SHA={sha}");
}

/// HEAD's short hash, when `manifest_dir`'s parent is the top of a git work
/// tree (not when an unpacked sdist happens to lie inside some other
/// repository). Asks cargo to run this again when HEAD moves.
fn git_checkout_sha(manifest_dir: &std::path::Path) -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git").arg("-C").arg(manifest_dir).args(args).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let top = std::path::PathBuf::from(git(&["rev-parse", "--show-toplevel"])?);
    let same_dir = |a: &std::path::Path, b: &std::path::Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same_dir(&top, manifest_dir.parent()?) {
        return None;
    }
    let sha = git(&["rev-parse", "--short", "HEAD"])?;
    // HEAD names a branch (or a commit when detached); the branch's ref is a
    // loose file or a line in packed-refs. Only existing files are named:
    // cargo takes a missing one as always changed.
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])?];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch])?);
    }
    watched.push(git(&["rev-parse", "--git-path", "packed-refs"])?);
    for path in watched {
        let path = manifest_dir.join(path); // --git-path may answer relative to manifest_dir
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    Some(sha)
}
