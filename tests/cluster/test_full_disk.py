"""The leader of three fills its disk: it exits, the other two elect a leader
and keep serving, and once restarted with room it catches up.

The leader's data dir moves onto a small tmpfs (its own data, plus a few MiB
to fill), then 64 KiB puts go through the two other members until the
leader's backend or WAL write fails with ENOSPC and the process ends. The
survivors must elect a leader among themselves and acknowledge writes; the
tmpfs is then grown and the member restarted on the same data, and it must
hold every write the cluster acknowledged (before, during and after its
failure), as the others do. Run against etcd to prove the test, and against
ketch. (One member alone, with ketch's exit code and message:
tests/e2e/test_storage_faults.py.) Needs root to mount, as that test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from ketch import Client, EtcdError

from ..small_disk import mount_tmpfs, small_tmpfs
from .conftest import KINDS, ClusterFactory
from .harness import CATCH_UP_DEADLINE, ELECTION_DEADLINE, Cluster, Member

ROOM_MIB = 12  # free space on the small disk once the member's data is on it
VALUE = os.urandom(64 * 1024)
FILL_DEADLINE = 90.0  # seconds for the disk to fill; ROOM_MIB takes about 200 puts
WRITES_AFTER = 20  # puts acknowledged by the survivors alone


def allocated_mib(root: Path) -> int:
    """MiB the files under `root` occupy (allocated blocks, as a tmpfs charges them), rounded up."""
    out = subprocess.run(
        ["du", "-s", "--block-size=1M", str(root)], check=True, capture_output=True, text=True
    )
    return int(out.stdout.split()[0]) + 1


def spare_segment_mib(m: Member) -> int:
    """MiB member `m` allocates at restart beyond its data: etcd keeps a
    spare WAL segment (member/wal/N.tmp, 64 MiB) that it makes in the
    background after start, so one stopped before making it makes it as it
    restarts, and fails to start if the disk cannot hold it."""
    wal = m.server.data_dir / "member" / "wal"
    if m.server.kind != "etcd" or any(wal.glob("*.tmp")):
        return 0
    return 64


def move_onto(m: Member, disk: Path) -> None:
    """Moves stopped member `m`'s data dir onto `disk`, leaving a symlink at
    the old path, so its command line (and its log's place) stay as they are."""
    target = disk / "data"
    shutil.copytree(m.server.data_dir, target, symlinks=True)
    shutil.rmtree(m.server.data_dir)
    m.server.data_dir.symlink_to(target, target_is_directory=True)


def lead(c: Cluster, m: Member) -> None:
    """Until `m` leads, moving leadership to it."""
    deadline = time.monotonic() + CATCH_UP_DEADLINE
    while c.leader() is not m:
        if time.monotonic() > deadline:
            raise AssertionError(f"{c.kind}: {m.name} never became leader")
        c.ctl("move-leader", m.hex_id, via=[c.leader()])


def put_until_acked(client: Client, key: str, deadline: float) -> None:
    """Puts `key` until a put of it is acknowledged; fails at `deadline` (monotonic)."""
    while True:
        try:
            client.put(key, VALUE)
            return
        except EtcdError as e:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no put acknowledged by the survivors by the deadline: {e!r}"
                ) from None
            time.sleep(0.05)


def follows_leader(c: Cluster, m: Member) -> None:
    """Until `m` names the cluster's leader in its status (right after it
    catches up it may still be hearing the term out, reporting none)."""
    deadline = time.monotonic() + ELECTION_DEADLINE
    while (seen := c.status([m]).get(m.name)) is None or seen.leader != c.leader().id:
        if time.monotonic() > deadline:
            raise AssertionError(f"{c.kind}: {m.name} follows no leader after catching up: {seen}")
        time.sleep(0.1)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", KINDS)
def test_leader_with_a_full_disk_exits_and_the_others_serve(
    make_cluster: ClusterFactory, kind: str, tmp_path: Path
) -> None:
    c = make_cluster(kind, 3)
    full = c.leader()
    others = [m for m in c.running() if m is not full]
    full.server.stop()
    size_mib = allocated_mib(full.server.data_dir) + spare_segment_mib(full) + ROOM_MIB
    with small_tmpfs(tmp_path, size_mib, name="small-disk") as disk:
        move_onto(full, disk)
        c.restart(full)
        lead(c, full)

        acked: list[str] = []
        refused: list[str] = []
        deadline = time.monotonic() + FILL_DEADLINE
        with Client([m.endpoint for m in others], timeout=5) as client:
            i = 0
            while full.running:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"{kind}: {full.name}'s disk did not fill in {FILL_DEADLINE}s"
                    )
                key = f"fill/{i:05}"
                i += 1
                try:
                    client.put(key, VALUE)
                    acked.append(key)
                except EtcdError as e:  # the put in flight when the leader went: maybe applied
                    refused.append(f"{key}: {e!r}")
                    time.sleep(0.05)
            assert full.server.proc is not None
            rc = full.server.proc.wait(10)
            assert rc != 0, (
                f"{kind}: {full.name} exited {rc} on a full disk:\n{full.server.log_text()[-3000:]}"
            )
            assert len(acked) > 50, (
                f"{kind}: the disk filled after {len(acked)} puts: {refused[-3:]}"
            )

            # The survivors elect a leader and acknowledge writes.
            stopped = time.monotonic()
            leader = c.leader(among=others)
            assert leader is not full
            for j in range(WRITES_AFTER):
                key = f"after/{j:03}"
                put_until_acked(client, key, deadline=stopped + ELECTION_DEADLINE + 10)
                acked.append(key)
        full.server.stop()  # reaped, so it can start again

        # Room again: the member restarts on its data and catches up.
        mount_tmpfs(disk, size_mib + 256, remount=True)
        c.restart(full)
        data = c.wait_converged()
        missing = [k for k in acked if data.get(k.encode()) != VALUE]
        assert not missing, (
            f"{kind}: {len(missing)} acknowledged writes missing, first {missing[:3]}"
        )
        follows_leader(c, full)
        full.server.stop()
