"""The committed protobuf modules describe exactly what rust/proto says."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from google.protobuf import descriptor_pb2
from ketch._pb import kv_pb2, regen, rpc_pb2, v3election_pb2, v3lock_pb2

PROTO_DIR = Path(__file__).resolve().parents[2] / "rust" / "proto"


def test_generated_modules_match_the_protos() -> None:
    # Debian's protoc (which .ci/dev installs) describes the .proto files; the
    # descriptors embedded in the committed modules must be the same.
    protoc = shutil.which("protoc")
    assert protoc, "protoc is needed (apt-get install protobuf-compiler)"
    out = subprocess.run(
        [protoc, f"--proto_path={PROTO_DIR}", "--descriptor_set_out=/dev/stdout", *regen.PROTOS],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    fresh = {f.name: f for f in descriptor_pb2.FileDescriptorSet.FromString(out).file}
    for module in (kv_pb2, rpc_pb2, v3lock_pb2, v3election_pb2):
        committed = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
        expected = fresh[committed.name]
        for fd in (committed, expected):  # protoc versions differ on whether they fill json_name
            for msg in fd.message_type:
                _clear_json_names(msg)
        assert committed == expected, f"regenerate with {regen.__file__}"


def _clear_json_names(msg: descriptor_pb2.DescriptorProto) -> None:
    for f in msg.field:
        f.ClearField("json_name")
    for nested in msg.nested_type:
        _clear_json_names(nested)


def test_generated_imports_are_relative() -> None:
    text = Path(rpc_pb2.__file__).read_text()
    assert "from . import kv_pb2 as kv__pb2" in text
    assert regen.fix_imports("import kv_pb2 as kv__pb2\n") == "from . import kv_pb2 as kv__pb2\n"
