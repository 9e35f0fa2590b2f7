"""N-member clusters of etcd or ketch on 127.0.0.1, with their peer links proxied.

Both servers take etcd's flags, so a test written once runs against etcd
(proving the test right) and against ketch. Members are tests/support.Server
processes made by the `make_server` fixture, which stops each by PID at
teardown; membership changes go through the real etcdctl, as an operator's
would.

Every member advertises its proxy's port as its peer URL (see proxy.py), so
the tests can partition the cluster.
"""

from __future__ import annotations

import json
import time
from base64 import b64decode
from collections.abc import Iterable
from dataclasses import dataclass

from ..conftest import ServerFactory
from ..support import READY_LINE, START_TIMEOUT, Server, etcdctl, free_port
from .proxy import Network

HEARTBEAT_MS = 50
ELECTION_MS = 500
# "Within a few election timeouts": a deadline, not a speed claim. Generous,
# because two cores run the members, the load and the test.
ELECTION_DEADLINE = 20 * ELECTION_MS / 1000
CATCH_UP_DEADLINE = 30.0
TOKEN = "ketch-cluster-test"


class ClusterError(AssertionError):
    """The cluster did not reach the state a test waited for. Says what it saw."""


@dataclass
class Member:
    name: str
    server: Server
    advertised_peer_port: int  # its proxy's port
    id: int = 0  # Raft member id, once known

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.server.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.advertised_peer_port}"

    @property
    def running(self) -> bool:
        return self.server.proc is not None and self.server.proc.poll() is None

    @property
    def hex_id(self) -> str:
        return f"{self.id:x}"


@dataclass
class Status:
    """One member's `etcdctl endpoint status`."""

    member_id: int
    leader: int
    revision: int
    raft_term: int
    raft_index: int
    is_learner: bool


class Cluster:
    def __init__(
        self,
        kind: str,
        make_server: ServerFactory,
        network: Network,
        extra_args: Iterable[str] = (),
    ) -> None:
        self.kind = kind
        self.make_server = make_server
        self.network = network
        self.extra_args = [
            "--heartbeat-interval", str(HEARTBEAT_MS),
            "--election-timeout", str(ELECTION_MS),
            *extra_args,
        ]  # fmt: skip
        self.members: dict[str, Member] = {}

    # -- processes ----------------------------------------------------------

    def _new_member(self, name: str) -> Member:
        peer_port = free_port()
        server = self.make_server(self.kind, start=False, peer_port=peer_port)
        return Member(name, server, self.network.add(name, peer_port))

    def _configure(self, m: Member, initial: Iterable[Member], state: str) -> None:
        cluster = ",".join(f"{x.name}={x.peer_url}" for x in initial)
        s = m.server
        s.args = [
            "--name", m.name,
            "--data-dir", str(s.data_dir),
            "--listen-client-urls", s.client_url,
            "--advertise-client-urls", s.client_url,
            "--listen-peer-urls", s.peer_url,  # the real port, behind the proxy
            "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", cluster,
            "--initial-cluster-state", state,
            "--initial-cluster-token", TOKEN,
            *self.extra_args,
        ]  # fmt: skip

    def start(self, size: int) -> Cluster:
        """Start `size` members as a new cluster; return once each serves a read."""
        new = [self._new_member(f"m{i}") for i in range(size)]
        for m in new:
            self._configure(m, new, "new")
            self.members[m.name] = m
        # All at once: none is ready until a quorum has met.
        for m in new:
            self.spawn(m)
        for m in new:
            m.server.wait_ready()
        self.refresh_ids()
        return self

    def spawn(self, m: Member) -> None:
        m.server.start(wait=False)
        assert m.server.proc is not None
        self.network.set_pid(m.name, m.server.proc.pid)

    def wait_started(self, m: Member, timeout: float = START_TIMEOUT) -> None:
        """Until the member logs that it serves (a learner serves no linearizable read)."""
        deadline = time.monotonic() + timeout
        while READY_LINE not in m.server.log_text():
            if not m.running or time.monotonic() > deadline:
                raise ClusterError(f"{m.name} did not start:\n{m.server.log_text()[-4000:]}")
            time.sleep(0.05)

    def kill(self, m: Member) -> None:
        """SIGKILL: a crash."""
        m.server.kill()
        self.network.set_pid(m.name, None)

    def restart(self, m: Member) -> None:
        """Start a member again on its data dir (its initial-* flags are ignored then)."""
        self.spawn(m)
        self.wait_started(m)

    def running(self) -> list[Member]:
        return [m for m in self.members.values() if m.running]

    # -- etcdctl ------------------------------------------------------------

    def ctl(self, *args: str, via: Iterable[Member] | None = None) -> str:
        """etcdctl against running members (or `via`); its stdout. Fails on a non-zero exit."""
        endpoints = ",".join(m.endpoint for m in (via or self.running()))
        rc, out, err = etcdctl(endpoints, *args)
        if rc != 0:
            raise ClusterError(f"etcdctl {' '.join(args)} exited {rc}: {err.strip()}")
        return out

    def reconfigure(self, *args: str, via: Iterable[Member] | None = None) -> str:
        """`etcdctl member ...`, retried while the cluster says it is not healthy enough.

        etcd (--strict-reconfig-check, the default) refuses a membership change
        with "etcdserver: unhealthy cluster" unless every voter has been
        connected to the leader for 5 s (HealthInterval), as right after a
        start or a restart: a refusal that changed nothing, so retrying is safe."""
        deadline = time.monotonic() + CATCH_UP_DEADLINE
        while True:
            try:
                return self.ctl("member", *args, via=via)
            except ClusterError as e:
                if "unhealthy cluster" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def refresh_ids(self) -> None:
        listed = json.loads(self.ctl("member", "list", "-w", "json"))["members"]
        by_name = {x.get("name", ""): int(x["ID"]) for x in listed}
        for m in self.members.values():
            m.id = by_name.get(m.name, m.id)

    def status(self, members: Iterable[Member] | None = None) -> dict[str, Status]:
        """endpoint status of each member that answers, by name."""
        members = list(members or self.running())
        by_endpoint = {m.endpoint: m.name for m in members}
        _, out, _ = etcdctl(",".join(by_endpoint), "endpoint", "status", "-w", "json", timeout=20)
        result = {}
        for row in json.loads(out or "[]"):
            st = row["Status"]
            name = by_endpoint.get(row["Endpoint"].removeprefix("http://"))
            if name is not None:
                result[name] = Status(
                    member_id=int(st["header"]["member_id"]),
                    leader=int(st.get("leader", 0)),
                    revision=int(st["header"].get("revision", 0)),
                    raft_term=int(st.get("raftTerm", 0)),
                    raft_index=int(st.get("raftIndex", 0)),
                    is_learner=bool(st.get("isLearner", False)),
                )
        return result

    def leader(
        self, among: Iterable[Member] | None = None, timeout: float = ELECTION_DEADLINE
    ) -> Member:
        """The member of `among` that a majority of `among` (itself included) follows."""
        among = list(among or self.running())
        deadline = time.monotonic() + timeout
        while True:
            statuses = self.status(among)
            for m in among:
                st = statuses.get(m.name)
                if st is None or st.leader != st.member_id:
                    continue
                followers = sum(s.leader == st.member_id for s in statuses.values())
                if followers > len(among) // 2:
                    return m
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"no leader among {[m.name for m in among]} in {timeout}s: {statuses}"
                )
            time.sleep(0.1)

    def add(self, name: str, learner: bool = False) -> Member:
        """`etcdctl member add` (and start) a new member; returns once it has started."""
        return self._join(self._new_member(name), learner)

    def replace(self, m: Member) -> Member:
        """Replace dead member `m` by an empty one on the same name and addresses.

        The operator's procedure (a member's identity is its data dir): member
        remove, member add, start it on an empty data dir to join the cluster."""
        assert not m.running and not m.server.data_dir.exists()
        self.remove(m)
        return self._join(m, learner=False)

    def _join(self, m: Member, learner: bool) -> Member:
        flags = ["--learner"] if learner else []
        added = self.reconfigure("add", m.name, f"--peer-urls={m.peer_url}", *flags, "-w", "json")
        m.id = int(json.loads(added)["member"]["ID"])
        self.members[m.name] = m
        self._configure(m, self.members.values(), "existing")
        self.spawn(m)
        self.wait_started(m)
        return m

    def promote(self, m: Member) -> None:
        self.reconfigure("promote", m.hex_id)

    def remove(self, m: Member) -> None:
        self.reconfigure("remove", m.hex_id, via=[x for x in self.running() if x is not m])
        del self.members[m.name]

    def member_list(self) -> dict[int, dict[str, object]]:
        """`member list` by member id."""
        return {
            int(x["ID"]): x for x in json.loads(self.ctl("member", "list", "-w", "json"))["members"]
        }

    # -- data ---------------------------------------------------------------

    def dump(self, m: Member) -> tuple[int, dict[bytes, bytes]]:
        """(revision, every key's value) as member `m` alone sees it: a serializable read."""
        out = json.loads(
            self.ctl("get", "", "--from-key", "--consistency=s", "-w", "json", via=[m])
        )
        kvs = {b64decode(kv["key"]): b64decode(kv.get("value", "")) for kv in out.get("kvs", [])}
        return int(out["header"]["revision"]), kvs

    def wait_converged(
        self, members: Iterable[Member] | None = None, timeout: float = CATCH_UP_DEADLINE
    ) -> dict[bytes, bytes]:
        """Until every member holds the same revision and data (writes have stopped); that data."""
        members = list(members or self.running())
        deadline = time.monotonic() + timeout
        while True:
            dumps = {m.name: self.dump(m) for m in members}
            if (
                len(
                    {
                        json.dumps([r, sorted((k.hex(), v.hex()) for k, v in d.items())])
                        for r, d in dumps.values()
                    }
                )
                == 1
            ):
                return next(iter(dumps.values()))[1]
            if time.monotonic() > deadline:
                revs = {name: r for name, (r, _) in dumps.items()}
                raise ClusterError(f"members did not converge in {timeout}s: revisions {revs}")
            time.sleep(0.2)
