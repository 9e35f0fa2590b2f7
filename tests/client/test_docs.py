"""docs/client.md: current with the docstrings it is rendered from, and every
```python block in it runs, against etcd and against ketch."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ketch.testing import Member

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "client.md"
EXAMPLES = re.findall(r"^```python\n(.*?)^```$", DOC.read_text(), flags=re.MULTILINE | re.DOTALL)


def test_the_reference_is_current() -> None:
    check = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "client_docs.py"), "--check"],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"example{i}" for i in range(len(EXAMPLES))])
def test_the_example_runs(server: Member, example: str) -> None:
    code = example.replace("127.0.0.1:2379", server.endpoint)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DOC), "exec"), {"__name__": "__docs__"})
    for line in example.splitlines():  # what a comment says it prints, it prints
        if m := re.search(r"print\(.*\)\s+# (b'[^']*'|\d+|True|\(b'[^']*',\))", line):
            assert m.group(1) in out.getvalue(), (line, out.getvalue())


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 8
