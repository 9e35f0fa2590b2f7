"""The checker on hand-made histories, and against a brute-force oracle."""

from __future__ import annotations

import itertools
import math
import random

from .checker import UNKNOWN, Op, Value, Verdict, check, step

INF = math.inf
K = b"k"


def put(c: int, call: float, ret: float, v: bytes, key: bytes = K) -> Op:
    return Op(c, call, ret, key, "put", v, UNKNOWN if math.isinf(ret) else None)


def get(c: int, call: float, ret: float, out: Value, key: bytes = K) -> Op:
    return Op(c, call, ret, key, "get", None, out)


def cas(c: int, call: float, ret: float, exp: bytes, new: bytes, out: object) -> Op:
    return Op(c, call, ret, K, "cas", (exp, new), out)


def test_empty_history_is_linearizable() -> None:
    assert check([]).ok


def test_sequential_history() -> None:
    h = [
        get(0, 0, 1, None),
        put(0, 2, 3, b"a"),
        get(1, 4, 5, b"a"),
        cas(1, 6, 7, b"a", b"b", True),
        cas(0, 8, 9, b"a", b"c", False),
        get(0, 10, 11, b"b"),
    ]
    assert check(h).ok


def test_overlapping_ops_fit_in_one_order_only() -> None:
    # Both puts overlap both reads; only put a, get a, put b, get b works.
    h = [
        put(0, 0, 10, b"a"),
        put(1, 0, 10, b"b"),
        get(2, 1, 4, b"a"),
        get(2, 5, 9, b"b"),
    ]
    assert check(h).ok
    # The reads in the other order need b before a, then a before b.
    h2 = [*h[:2], get(2, 1, 4, b"b"), get(2, 5, 9, b"a"), get(3, 11, 12, b"b")]
    assert check(h2).verdict is Verdict.ILLEGAL


def test_stale_read_after_completed_write() -> None:
    h = [put(0, 0, 1, b"a"), put(0, 2, 3, b"b"), get(1, 4, 5, b"a")]
    r = check(h)
    assert r.verdict is Verdict.ILLEGAL
    assert "b'k'" in r.explanation and "get() = b'a'" in r.explanation


def test_lost_write() -> None:
    # An acknowledged put that a later read never sees.
    h = [put(0, 0, 1, b"a"), get(1, 2, 3, b"a"), put(0, 4, 5, b"b"), get(1, 6, 7, b"a")]
    assert check(h).verdict is Verdict.ILLEGAL
    # Nor on a key that was absent.
    assert check([put(0, 0, 1, b"a"), get(1, 2, 3, None)]).verdict is Verdict.ILLEGAL


def test_pending_put_may_or_may_not_take_effect() -> None:
    before = [put(0, 0, 1, b"a"), put(1, 2, INF, b"b")]
    assert check([*before, get(2, 3, 4, b"a"), get(2, 5, 6, b"a")]).ok
    assert check([*before, get(2, 3, 4, b"b"), get(2, 5, 6, b"b")]).ok
    assert check([*before, get(2, 3, 4, b"a"), get(2, 5, 6, b"b")]).ok
    # Once seen, it cannot be undone.
    r = check([*before, get(2, 3, 4, b"b"), get(2, 5, 6, b"a")])
    assert r.verdict is Verdict.ILLEGAL
    # Not before its call.
    assert check([*before, get(2, 0.5, 1.5, b"b")]).verdict is Verdict.ILLEGAL


def test_pending_get_is_dropped() -> None:
    r = check([put(0, 0, 1, b"a"), Op(1, 2, INF, K, "get", None, UNKNOWN)])
    assert r.ok and r.ops == 1


def test_cas_races() -> None:
    start = put(0, 0, 1, b"a")
    # Two concurrent CAS from the same expected value: at most one wins.
    one_wins = [start, cas(1, 2, 5, b"a", b"x", True), cas(2, 2, 5, b"a", b"y", False)]
    assert check([*one_wins, get(0, 6, 7, b"x")]).ok
    assert check([*one_wins, get(0, 6, 7, b"y")]).verdict is Verdict.ILLEGAL
    both_win = [start, cas(1, 2, 5, b"a", b"x", True), cas(2, 2, 5, b"a", b"y", True)]
    assert check(both_win).verdict is Verdict.ILLEGAL
    # A chain: y's CAS expects x, so it goes second even though it overlaps.
    chain = [start, cas(1, 2, 5, b"a", b"x", True), cas(2, 2, 5, b"x", b"y", True)]
    assert check([*chain, get(0, 6, 7, b"y")]).ok
    # CAS on an absent key never succeeds; a pending CAS may go either way.
    assert check([cas(1, 0, 1, b"a", b"b", True)]).verdict is Verdict.ILLEGAL
    pending = [start, cas(1, 2, INF, b"a", b"z", UNKNOWN)]
    assert check([*pending, get(0, 3, 4, b"z")]).ok
    assert check([*pending, get(0, 3, 4, b"a")]).ok


def test_keys_are_independent() -> None:
    # Fine per key, though no single order works if keys were one register.
    h = [put(0, 0, 1, b"a", b"x"), put(0, 0, 1, b"b", b"y"), get(1, 2, 3, b"a", b"x")]
    r = check(h)
    assert r.ok and r.keys == 2
    h.append(get(1, 4, 5, None, b"y"))
    r = check(h)
    assert r.verdict is Verdict.ILLEGAL and "b'y'" in r.explanation


def test_timeout_verdict() -> None:
    # Many fully concurrent puts, then a read nothing can explain: the
    # search must try every subset; with no time it gives up.
    h = [put(i, 0, 100, bytes([i])) for i in range(20)]
    h.append(get(99, 101, 102, b"nope"))
    assert check(h, timeout=0).verdict is Verdict.TIMEOUT


# --- random histories against a brute-force oracle ---------------------------


def brute_force(ops: list[Op], initial: Value = None) -> bool:
    """Straight from the definition: some order of the completed ops and a subset
    of the pending ones that respects real time and the model."""
    done = [op for op in ops if not op.pending]
    pending = [op for op in ops if op.pending and op.kind != "get"]
    for n in range(len(pending) + 1):
        for chosen in itertools.combinations(pending, n):
            for order in itertools.permutations([*done, *chosen]):
                if _respects_real_time(order) and _fits(order, initial):
                    return True
    return False


def _respects_real_time(order: tuple[Op, ...]) -> bool:
    return all(not (b.ret < a.call) for a, b in itertools.combinations(order, 2))


def _fits(order: tuple[Op, ...], state: Value) -> bool:
    for op in order:
        ok, state = step(state, op)
        if not ok:
            return False
    return True


def random_history(rng: random.Random, n: int) -> list[Op]:
    """n ops run one at a time on one register, then stretched to overlap:
    each op's interval covers its real (sequential) point in time."""
    values = [b"a", b"b", b"c"]
    state: Value = None
    ops = []
    for i in range(n):
        t = 10.0 * i
        call, ret = t - rng.uniform(0, 25), t + rng.uniform(0, 25)
        kind = rng.choice(["put", "get", "cas"])
        if rng.random() < 0.15 and kind != "get":
            ret = INF
        if kind == "put":
            v = values[i % 3] + str(i).encode()
            op = Op(i, call, ret, K, "put", v, UNKNOWN if ret == INF else None)
            took_effect = ret != INF or rng.random() < 0.5
            if took_effect:
                state = v
        elif kind == "get":
            op = Op(i, call, ret, K, "get", None, state)
        else:
            expected = state if state is not None and rng.random() < 0.6 else b"zz"
            new = b"n" + str(i).encode()
            succeeded = state is not None and state == expected
            took_effect = ret != INF or rng.random() < 0.5
            out: object = UNKNOWN if ret == INF else succeeded
            op = Op(i, call, ret, K, "cas", (expected, new), out)
            if succeeded and took_effect:
                state = new
        ops.append(op)
    return ops


def mutate(rng: random.Random, ops: list[Op]) -> list[Op]:
    """One read answers with the value another read saw (or absent), or one
    CAS reports the opposite outcome."""
    ops = list(ops)
    reads = [i for i, op in enumerate(ops) if op.kind == "get"]
    cases = [i for i, op in enumerate(ops) if op.kind == "cas" and not op.pending]
    if reads and (not cases or rng.random() < 0.7):
        i = rng.choice(reads)
        seen = [ops[j].output for j in reads if ops[j].output != ops[i].output] + [None]
        ops[i] = Op(**{**ops[i].__dict__, "output": rng.choice(seen)})
    elif cases:
        i = rng.choice(cases)
        ops[i] = Op(**{**ops[i].__dict__, "output": not ops[i].output})
    return ops


def test_random_sequential_runs_with_overlap_are_linearizable() -> None:
    rng = random.Random(1)
    for _ in range(300):
        h = random_history(rng, rng.randint(1, 40))
        r = check(h, timeout=10)
        assert r.ok, "\n".join(map(str, h)) + "\n" + r.explanation


def test_random_mutations_agree_with_brute_force() -> None:
    rng = random.Random(2)
    rejected = 0
    for _ in range(400):
        h = mutate(rng, random_history(rng, rng.randint(2, 6)))
        expected = brute_force(h)
        r = check(h, timeout=10)
        assert r.ok == expected, "\n".join(map(str, h)) + f"\nbrute force says {expected}"
        rejected += not expected
    assert rejected > 100  # most mutations are observable: the test has teeth


def test_random_mutations_of_long_histories_are_caught() -> None:
    # Too long for brute force: a read of a value that was never written, or a
    # stale read far from any overlap, is observable whatever the order.
    rng = random.Random(3)
    for _ in range(100):
        h = random_history(rng, 30)
        reads = [i for i, op in enumerate(h) if op.kind == "get"]
        if not reads:
            continue
        i = rng.choice(reads)
        h[i] = Op(**{**h[i].__dict__, "output": b"never written"})
        assert check(h, timeout=10).verdict is Verdict.ILLEGAL
