"""How much each server holds under the same backend quota.

    .venv/bin/python -m benches.quota_capacity [--quota BYTES] [--sizes 1024,65536]

For each value size, starts a fresh etcd and a fresh ketch with
`--quota-backend-bytes`, puts distinct keys of that size one at a time
until the server answers NOSPACE, and prints: MiB of values held, the
backend file's size, Status.dbSize and dbSizeInUse, and data bytes per
file byte. etcd must be on PATH (Debian's etcd-server).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ketch import Client, EtcdError
from ketch.testing import member

NOSPACE = "database space exceeded"


def backend_file(kind: str, data_dir: Path) -> Path:
    return data_dir / "member" / ("snap/db" if kind == "etcd" else "db.redb")


def fill(kind: str, quota: int, size: int, root: Path) -> dict[str, float]:
    with member(
        server=kind,
        data_dir=root / f"{kind}-{size}",
        extra_args=("--quota-backend-bytes", str(quota)),
    ) as m:
        value = os.urandom(size)
        held = 0
        with Client(m.endpoint, timeout=30) as c:
            i = 0
            while True:
                try:
                    c.put(f"key/{i:08}", value)
                except EtcdError as e:
                    if NOSPACE not in str(e):
                        raise
                    break
                held += size
                i += 1
            status = c.status(m.endpoint)
            file_size = backend_file(kind, m.data_dir).stat().st_size
        return {
            "keys": i,
            "held_mib": held / 2**20,
            "file_mib": file_size / 2**20,
            "db_size_mib": status.db_size / 2**20,
            "db_size_in_use_mib": status.db_size_in_use / 2**20,
            "data_per_file_byte": held / file_size,
            "data_per_db_size_byte": held / status.db_size,
        }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quota", type=int, default=16 * 2**20)
    ap.add_argument("--sizes", default="1024,65536")
    ap.add_argument("--servers", default="etcd,ketch")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/ketch-quota-capacity"))
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    print(f"quota {args.quota / 2**20:.1f} MiB")
    for size in (int(s) for s in args.sizes.split(",")):
        for kind in args.servers.split(","):
            r = fill(kind, args.quota, size, args.dir)
            print(
                f"{kind:5} {size:6} B values: held {r['held_mib']:6.2f} MiB ({r['keys']} keys)"
                f"  file {r['file_mib']:6.2f} MiB  dbSize {r['db_size_mib']:6.2f}"
                f"  inUse {r['db_size_in_use_mib']:6.2f}  data/file {r['data_per_file_byte']:.2f}"
                f"  data/dbSize {r['data_per_db_size_byte']:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
