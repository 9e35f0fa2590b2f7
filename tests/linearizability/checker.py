"""A linearizability checker for a key-value store of registers.

The algorithm is Wing & Gong's search with Lowe's memoization, laid out as
Porcupine (github.com/anishathalye/porcupine) does it:

1. Ops on different keys are independent, so the history is split per key
   and each part checked on its own (a history is linearizable iff each is).
2. Each op becomes two entries, its call and its return, in one list sorted
   by time. Walking the list from the front, a call entry is an op that may
   go next: every op still in the list whose return comes before this call
   would have had to go first. Try it against the model; if the model accepts
   it and (ops linearized so far, model state) is new, lift the op (its call
   and return) out of the list, push it on a stack and start again from the
   front. Reaching a return entry means its op cannot be put off any longer
   and nothing before it worked: pop the last op, put it back, try the next.
3. The cache of (set of linearized ops, state) is Lowe's: two search paths
   that reach the same set with the same state have the same future.

An op that never returned (timeout, server killed) has return time +infinity
and an unknown output: it may take effect at any point after its call, or,
placed after everything else, never. The search is done as soon as every op
that did return is linearized, since the rest can always go at the end.

Model per key: its value, or None when absent. put(v) -> ok; get -> the value
or None; cas(expected, new) -> whether value == expected, writing new if so
(etcd's Txn with a value compare: an absent key never matches).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

Value = bytes | None  # a key's value; None = absent
Arg = bytes | tuple[bytes, bytes] | None  # put's value, cas's (expected, new)


class Unknown(Enum):
    """The output of an op whose reply never came."""

    UNKNOWN = "unknown"


UNKNOWN = Unknown.UNKNOWN


@dataclass(frozen=True)
class Op:
    """One client operation on one key.

    kind "put": arg = value written, output None (ok).
    kind "get": arg None, output = value read (None = absent).
    kind "cas": arg = (expected, new), output = succeeded (bool).
    output UNKNOWN, ret math.inf: the op never returned.
    """

    client: int
    call: float
    ret: float
    key: bytes
    kind: str
    arg: Arg = None
    output: object = None

    @property
    def pending(self) -> bool:
        return self.output is UNKNOWN

    def __str__(self) -> str:
        ret = "inf" if math.isinf(self.ret) else f"{self.ret:.6f}"
        if self.kind == "put":
            what = f"put({self.arg!r})"
        elif self.kind == "get":
            what = "get()"
        else:
            assert isinstance(self.arg, tuple)
            exp, new = self.arg
            what = f"cas({exp!r} -> {new!r})"
        out = "?" if self.pending else repr(self.output)
        return f"client {self.client} [{self.call:.6f}, {ret}] {what} = {out}"


def step(state: Value, op: Op) -> tuple[bool, Value]:
    """The model: (does op, with its output, fit state; state after it)."""
    if op.kind == "put":
        assert isinstance(op.arg, bytes)
        return True, op.arg
    if op.kind == "get":
        return op.pending or op.output == state, state
    if op.kind == "cas":
        assert isinstance(op.arg, tuple)
        expected, new = op.arg
        succeeded = state is not None and state == expected
        if not op.pending and op.output != succeeded:
            return False, state
        return True, new if succeeded else state
    raise ValueError(f"unknown op kind {op.kind!r}")


class Verdict(Enum):
    OK = "linearizable"
    ILLEGAL = "not linearizable"
    TIMEOUT = "search gave up"


@dataclass
class Result:
    verdict: Verdict
    explanation: str = ""
    keys: int = 0
    ops: int = 0
    stats: dict[bytes, int] = field(default_factory=dict)  # key -> search steps

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK


class _Timeout(Exception):
    pass


def check(history: Iterable[Op], timeout: float | None = None, initial: Value = None) -> Result:
    """Is the history linearizable? Every key starts at `initial` (absent by default)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    parts: dict[bytes, list[Op]] = defaultdict(list)
    n = 0
    for op in history:
        if op.pending and op.kind == "get":
            continue  # a read nobody saw constrains nothing
        parts[op.key].append(op)
        n += 1
    result = Result(Verdict.OK, keys=len(parts), ops=n)
    for key in sorted(parts):
        try:
            ok, steps, why = _check_key(parts[key], initial, deadline)
        except _Timeout:
            return Result(Verdict.TIMEOUT, f"key {key!r}: no answer in {timeout}s", len(parts), n)
        result.stats[key] = steps
        if not ok:
            result.verdict = Verdict.ILLEGAL
            result.explanation = f"key {key!r}: {why}"
            return result
    return result


def _check_key(ops: list[Op], initial: Value, deadline: float | None) -> tuple[bool, int, str]:
    """(linearizable, search steps, explanation if not) for the ops on one key."""
    # Entries: op i has call entry 2i and return entry 2i+1. Sort by time, calls
    # before returns at equal times (touching ops count as concurrent).
    entries = sorted(
        range(2 * len(ops)),
        key=lambda e: (ops[e // 2].ret, 1) if e % 2 else (ops[e // 2].call, 0),
    )
    # A doubly linked list over the sorted entries, with a head sentinel (-1).
    HEAD = -1
    nxt: dict[int, int | None] = {HEAD: entries[0] if entries else None}
    prv: dict[int, int] = {}
    for a, b in zip([HEAD, *entries], [*entries, None], strict=True):
        nxt[a] = b
        if b is not None:
            prv[b] = a

    def unlink(e: int) -> None:
        p, q = prv[e], nxt[e]
        nxt[p] = q
        if q is not None:
            prv[q] = p

    def relink(e: int) -> None:  # undo unlink(e), newest first
        p, q = prv[e], nxt[e]
        nxt[p] = e
        if q is not None:
            prv[q] = e

    completed = sum(1 for op in ops if not op.pending)
    state: Value = initial
    linearized = 0  # bitmask of op indexes
    done_completed = 0
    cache: set[tuple[int, Value]] = set()
    stack: list[tuple[int, Value]] = []  # (op index, state before it)
    best: tuple[int, list[int], Value] = (-1, [], initial)  # deepest point reached
    steps = 0
    entry = nxt[HEAD]
    while done_completed < completed:
        steps += 1
        if deadline is not None and steps % 4096 == 0 and time.monotonic() > deadline:
            raise _Timeout
        assert entry is not None  # the return of some unlinearized op ends the list
        i = entry // 2
        if entry % 2 == 0:  # a call: try op i next
            fits, after = step(state, ops[i])
            if fits and (linearized | 1 << i, after) not in cache:
                cache.add((linearized | 1 << i, after))
                stack.append((i, state))
                state, linearized = after, linearized | 1 << i
                done_completed += not ops[i].pending
                unlink(2 * i)
                unlink(2 * i + 1)
                entry = nxt[HEAD]
            else:
                entry = nxt[entry]
            continue
        # A return: op i must have gone by now and nothing tried before it fits.
        if len(stack) > best[0]:
            best = (len(stack), [j for j, _ in stack], state)
        if not stack:
            return False, steps, _explain(ops, best)
        i, state = stack.pop()
        linearized &= ~(1 << i)
        done_completed -= not ops[i].pending
        relink(2 * i + 1)
        relink(2 * i)
        entry = nxt[2 * i]
    return True, steps, ""


def _explain(ops: list[Op], best: tuple[int, list[int], Value]) -> str:
    """The deepest point the search reached, and the ops none of which could go next."""
    _, order, state = best
    done = set(order)
    rest = sorted((i for i in range(len(ops)) if i not in done), key=lambda i: ops[i].call)
    first_ret = min(ops[i].ret for i in rest)
    stuck = [ops[i] for i in rest if ops[i].call <= first_ret]
    head = f"after linearizing {len(order)} of {len(ops)} ops (value {state!r})"
    lines = [head + ", none of these can go next:"]
    lines += [f"  {op}" for op in stuck[:8]]
    if len(stuck) > 8:
        lines.append(f"  ... and {len(stuck) - 8} more")
    if order:
        lines.append("last ops linearized:")
        lines += [f"  {ops[i]}" for i in order[-4:]]
    return "\n".join(lines)
