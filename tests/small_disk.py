"""A small disk for full-disk tests: a tmpfs of a few MiB, mounted under a
test's tmp_path.

Only root may mount. For another user the test is skipped; as root a mount
that fails fails the test (it does not skip), so CI, which runs as root,
cannot pass without running the full-disk tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def mount_tmpfs(where: Path, size_mib: int, remount: bool = False) -> None:
    """Mounts a tmpfs of `size_mib` at `where`; with `remount`, resizes the
    one there (its files stay)."""
    opts = f"size={size_mib}m" + (",remount" if remount else "")
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], check=True, capture_output=True
    )


@contextmanager
def small_tmpfs(under: Path, size_mib: int, name: str = "disk") -> Iterator[Path]:
    """A tmpfs of `size_mib` at under/name for the block, lazily unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    if shutil.which("mount") is None:
        pytest.fail(
            "running as root but mount(8) is not installed: install util-linux to run this test"
        )
    disk = under / name
    disk.mkdir()
    try:
        mount_tmpfs(disk, size_mib)
    except subprocess.CalledProcessError as e:
        pytest.fail(
            f"running as root but `mount -t tmpfs` failed: {e.stderr.decode(errors='replace').strip()}; "
            "a container needs CAP_SYS_ADMIN (docker run --privileged, or --cap-add SYS_ADMIN) to run this test"
        )
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
