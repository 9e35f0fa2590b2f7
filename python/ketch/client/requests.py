"""Building etcd requests: key ranges, read/write operations, and transaction compares.

Keys and values may be given as str (encoded as UTF-8) or bytes. A range is
[key, range_end); `prefix=True` computes range_end as etcd's clientv3 does,
`from_key=True` means every key >= key.
"""

from __future__ import annotations

from typing import Literal

from .._pb import rpc_pb2

__all__ = ["Compare", "CompareTarget", "Op", "prefix_range_end", "to_bytes"]

Bytes = str | bytes
SortOrder = Literal["none", "ascend", "descend"]
SortTarget = Literal["key", "version", "create", "mod", "value"]

_SORT_ORDER = {
    "none": rpc_pb2.RangeRequest.NONE,
    "ascend": rpc_pb2.RangeRequest.ASCEND,
    "descend": rpc_pb2.RangeRequest.DESCEND,
}
_SORT_TARGET = {
    "key": rpc_pb2.RangeRequest.KEY,
    "version": rpc_pb2.RangeRequest.VERSION,
    "create": rpc_pb2.RangeRequest.CREATE,
    "mod": rpc_pb2.RangeRequest.MOD,
    "value": rpc_pb2.RangeRequest.VALUE,
}


def to_bytes(s: Bytes) -> bytes:
    if isinstance(s, bytes):
        return s
    if isinstance(s, str):
        return s.encode()
    raise TypeError(f"keys and values are str or bytes, not {type(s).__name__}")


def prefix_range_end(prefix: bytes) -> bytes:
    """The end of the range of keys starting with `prefix`: the prefix with its
    last byte below 0xff incremented; b"\\0" (every key) when there is none."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def key_range(
    key: Bytes, range_end: Bytes | None, prefix: bool, from_key: bool
) -> tuple[bytes, bytes]:
    k = to_bytes(key)
    if sum((range_end is not None, prefix, from_key)) > 1:
        raise ValueError("give at most one of range_end, prefix=True and from_key=True")
    if prefix:
        if not k:  # every key, as etcdctl does for an empty prefix
            return b"\0", b"\0"
        return k, prefix_range_end(k)
    if from_key:
        return (k or b"\0"), b"\0"
    return k, (to_bytes(range_end) if range_end is not None else b"")


def range_request(
    key: Bytes,
    range_end: Bytes | None = None,
    *,
    prefix: bool = False,
    from_key: bool = False,
    revision: int = 0,
    limit: int = 0,
    sort_order: SortOrder = "none",
    sort_target: SortTarget = "key",
    serializable: bool = False,
    keys_only: bool = False,
    count_only: bool = False,
    min_mod_revision: int = 0,
    max_mod_revision: int = 0,
    min_create_revision: int = 0,
    max_create_revision: int = 0,
) -> rpc_pb2.RangeRequest:
    k, end = key_range(key, range_end, prefix, from_key)
    return rpc_pb2.RangeRequest(
        key=k,
        range_end=end,
        revision=revision,
        limit=limit,
        sort_order=_SORT_ORDER[sort_order],
        sort_target=_SORT_TARGET[sort_target],
        serializable=serializable,
        keys_only=keys_only,
        count_only=count_only,
        min_mod_revision=min_mod_revision,
        max_mod_revision=max_mod_revision,
        min_create_revision=min_create_revision,
        max_create_revision=max_create_revision,
    )


def put_request(
    key: Bytes,
    value: Bytes = b"",
    *,
    lease: int = 0,
    prev_kv: bool = False,
    ignore_value: bool = False,
    ignore_lease: bool = False,
) -> rpc_pb2.PutRequest:
    return rpc_pb2.PutRequest(
        key=to_bytes(key),
        value=to_bytes(value),
        lease=lease,
        prev_kv=prev_kv,
        ignore_value=ignore_value,
        ignore_lease=ignore_lease,
    )


def delete_request(
    key: Bytes,
    range_end: Bytes | None = None,
    *,
    prefix: bool = False,
    from_key: bool = False,
    prev_kv: bool = False,
) -> rpc_pb2.DeleteRangeRequest:
    k, end = key_range(key, range_end, prefix, from_key)
    return rpc_pb2.DeleteRangeRequest(key=k, range_end=end, prev_kv=prev_kv)


class Op:
    """One operation inside a transaction: Op.get, Op.put, Op.delete or a nested Op.txn.

    They take the same options as the client's get/put/delete."""

    __slots__ = ("pb",)

    def __init__(self, pb: rpc_pb2.RequestOp) -> None:
        self.pb = pb

    @classmethod
    def get(cls, key: Bytes, range_end: Bytes | None = None, **options: object) -> Op:
        return cls(rpc_pb2.RequestOp(request_range=range_request(key, range_end, **options)))  # type: ignore[arg-type]

    @classmethod
    def put(cls, key: Bytes, value: Bytes = b"", **options: object) -> Op:
        return cls(rpc_pb2.RequestOp(request_put=put_request(key, value, **options)))  # type: ignore[arg-type]

    @classmethod
    def delete(cls, key: Bytes, range_end: Bytes | None = None, **options: object) -> Op:
        return cls(
            rpc_pb2.RequestOp(request_delete_range=delete_request(key, range_end, **options))  # type: ignore[arg-type]
        )

    @classmethod
    def txn(
        cls,
        compare: list[Compare] | tuple[Compare, ...] = (),
        success: list[Op] | tuple[Op, ...] = (),
        failure: list[Op] | tuple[Op, ...] = (),
    ) -> Op:
        return cls(rpc_pb2.RequestOp(request_txn=txn_request(compare, success, failure)))

    @property
    def is_read(self) -> bool:
        kind = self.pb.WhichOneof("request")
        if kind == "request_txn":
            t = self.pb.request_txn
            return all(Op(o).is_read for o in [*t.success, *t.failure])
        return bool(kind == "request_range")  # WhichOneof is typed as Any

    def __repr__(self) -> str:
        return f"Op({self.pb.WhichOneof('request')})"


_RESULTS = {
    "==": rpc_pb2.Compare.EQUAL,
    "!=": rpc_pb2.Compare.NOT_EQUAL,
    ">": rpc_pb2.Compare.GREATER,
    "<": rpc_pb2.Compare.LESS,
}


class CompareTarget:
    """The left side of a compare: one attribute of a key (or of every key in a
    range). Compare it with ==, !=, < or > to get a Compare."""

    __slots__ = ("_key", "_range_end", "_target")

    def __init__(
        self,
        target: rpc_pb2.Compare.CompareTarget,
        key: Bytes,
        range_end: Bytes | None,
        prefix: bool,
    ) -> None:
        self._target = target
        self._key, end = key_range(key, range_end, prefix, False)
        self._range_end = end

    def _make(self, op: str, other: object) -> Compare:
        pb = rpc_pb2.Compare(
            result=_RESULTS[op], target=self._target, key=self._key, range_end=self._range_end
        )
        if self._target == rpc_pb2.Compare.VALUE:
            pb.value = to_bytes(other)  # type: ignore[arg-type]
        else:
            if not isinstance(other, int) or isinstance(other, bool):
                raise TypeError(f"compare this target with an int, not {type(other).__name__}")
            name = {
                rpc_pb2.Compare.VERSION: "version",
                rpc_pb2.Compare.CREATE: "create_revision",
                rpc_pb2.Compare.MOD: "mod_revision",
                rpc_pb2.Compare.LEASE: "lease",
            }[self._target]
            setattr(pb, name, other)
        return Compare(pb)

    def __eq__(self, other: object) -> Compare:  # type: ignore[override]
        return self._make("==", other)

    def __ne__(self, other: object) -> Compare:  # type: ignore[override]
        return self._make("!=", other)

    def __gt__(self, other: object) -> Compare:
        return self._make(">", other)

    def __lt__(self, other: object) -> Compare:
        return self._make("<", other)

    __hash__ = None  # type: ignore[assignment]


class Compare:
    """A transaction guard, e.g. `Compare.value("k") == "v"`, `Compare.version("k") > 0`,
    `Compare.create_revision("k") == 0` (the key does not exist)."""

    __slots__ = ("pb",)

    def __init__(self, pb: rpc_pb2.Compare) -> None:
        self.pb = pb

    @staticmethod
    def version(key: Bytes, range_end: Bytes | None = None, *, prefix: bool = False) -> CompareTarget:
        return CompareTarget(rpc_pb2.Compare.VERSION, key, range_end, prefix)

    @staticmethod
    def create_revision(
        key: Bytes, range_end: Bytes | None = None, *, prefix: bool = False
    ) -> CompareTarget:
        return CompareTarget(rpc_pb2.Compare.CREATE, key, range_end, prefix)

    @staticmethod
    def mod_revision(
        key: Bytes, range_end: Bytes | None = None, *, prefix: bool = False
    ) -> CompareTarget:
        return CompareTarget(rpc_pb2.Compare.MOD, key, range_end, prefix)

    @staticmethod
    def value(key: Bytes, range_end: Bytes | None = None, *, prefix: bool = False) -> CompareTarget:
        return CompareTarget(rpc_pb2.Compare.VALUE, key, range_end, prefix)

    @staticmethod
    def lease(key: Bytes, range_end: Bytes | None = None, *, prefix: bool = False) -> CompareTarget:
        return CompareTarget(rpc_pb2.Compare.LEASE, key, range_end, prefix)

    def __repr__(self) -> str:
        return f"Compare({self.pb.target}, {self.pb.key!r}, result={self.pb.result})"


def txn_request(
    compare: list[Compare] | tuple[Compare, ...],
    success: list[Op] | tuple[Op, ...],
    failure: list[Op] | tuple[Op, ...],
) -> rpc_pb2.TxnRequest:
    for c in compare:
        if not isinstance(c, Compare):
            raise TypeError(f"compares are Compare objects, not {type(c).__name__}")
    for o in [*success, *failure]:
        if not isinstance(o, Op):
            raise TypeError(f"transaction operations are Op objects, not {type(o).__name__}")
    return rpc_pb2.TxnRequest(
        compare=[c.pb for c in compare],
        success=[o.pb for o in success],
        failure=[o.pb for o in failure],
    )
