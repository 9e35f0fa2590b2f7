"""Regenerate ketch's Python protobuf modules from the engine's wire protos.

    .venv/bin/python python/ketch/_pb/regen.py      (needs grpcio-tools)

The sources of truth are the .proto files in rust/proto (etcd's
wire contract: packages mvccpb, etcdserverpb, v3lockpb and v3electionpb). The generated modules are
committed so that installing ketch needs no protoc; tests/client/test_pb.py
checks that they still describe exactly what the .proto files say.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO_DIR = HERE.parents[2] / "rust" / "proto"
PROTOS = ("kv.proto", "auth.proto", "rpc.proto", "v3lock.proto", "v3election.proto")


def fix_imports(source: str) -> str:
    """protoc writes `import kv_pb2`, an absolute import of a top-level module;
    inside the ketch._pb package it has to be relative."""
    return re.sub(r"^import (\w+_pb2) as ", r"from . import \1 as ", source, flags=re.MULTILINE)


def generate(out_dir: Path) -> None:
    from grpc_tools import protoc  # a development tool only, not a runtime dependency

    args = [
        "grpc_tools.protoc",
        f"--proto_path={PROTO_DIR}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        *(str(PROTO_DIR / p) for p in PROTOS),
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {PROTO_DIR}")
    for path in out_dir.glob("*_pb2.py*"):
        path.write_text(fix_imports(path.read_text()))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        for path in sorted(Path(tmp).glob("*_pb2.py*")):
            (HERE / path.name).write_text(path.read_text())
            print(f"wrote {HERE / path.name}", file=sys.stderr)


if __name__ == "__main__":
    main()
