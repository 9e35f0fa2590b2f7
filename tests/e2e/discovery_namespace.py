"""Bootstraps a 3-member cluster by discovery inside a private network and
mount namespace, and prints what it formed as JSON on stdout.

Run by tests/e2e/test_discovery.py as
    unshare --mount --net python -m tests.e2e.discovery_namespace SERVER MODE
with SERVER `etcd` or `ketch` and MODE `srv` (DNS SRV records, --discovery-srv),
`static` (the --initial-cluster those records describe) or `v2` (a v2
discovery service, --discovery, played by a real etcd with --enable-v2).
The namespace has its own loopback and its own /etc/resolv.conf naming a
DNS server this program runs on 127.0.0.1:53, so the members resolve SRV and
A records exactly as they would in production, and nothing outside the
namespace sees either. Ports are fixed: the namespace is empty.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from ..support import ETCD, ETCDCTL, ketch_command, subprocess_env

DOMAIN = "example.test"
MEMBERS = ("m0", "m1", "m2")
PEER_PORTS = (2380, 2381, 2382)
CLIENT_PORTS = (12379, 12380, 12381)
DISCOVERY_PORT = 4001
DISCOVERY_URL = f"http://127.0.0.1:{DISCOVERY_PORT}/v2/keys/discovery/cluster-a"
TOKEN = "srv-cluster"
WAIT = 60.0


def loopback_up() -> None:
    """`ip link set lo up`, without needing iproute2."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(s, siocgifflags, req))[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sh", b"lo", flags | iff_up))


def zone() -> dict[tuple[str, int], list[str]]:
    records: dict[tuple[str, int], list[str]] = {
        (f"_etcd-server._tcp.{DOMAIN}.", dns.rdatatype.SRV): [
            f"0 0 {port} {name}.{DOMAIN}." for name, port in zip(MEMBERS, PEER_PORTS, strict=True)
        ],
        (f"_etcd-client._tcp.{DOMAIN}.", dns.rdatatype.SRV): [
            f"0 0 {port} {name}.{DOMAIN}." for name, port in zip(MEMBERS, CLIENT_PORTS, strict=True)
        ],
    }
    for name in MEMBERS:
        records[(f"{name}.{DOMAIN}.", dns.rdatatype.A)] = ["127.0.0.1"]
    return records


def serve_dns(records: dict[tuple[str, int], list[str]]) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 53))
    names = {name for name, _ in records}

    def loop() -> None:
        while True:
            data, addr = sock.recvfrom(4096)
            query = dns.message.from_wire(data)
            answer = dns.message.make_response(query)
            question = query.question[0]
            qname = question.name.to_text().lower()
            texts = records.get((qname, question.rdtype))
            if texts:
                answer.answer.append(
                    dns.rrset.from_text_list(question.name, 60, "IN", question.rdtype, texts)
                )
            elif qname not in names:
                answer.set_rcode(dns.rcode.NXDOMAIN)
            sock.sendto(answer.to_wire(), addr)

    threading.Thread(target=loop, daemon=True).start()


def member_command(server: str, i: int, data: Path, mode: str) -> list[str]:
    name, peer, client = MEMBERS[i], PEER_PORTS[i], CLIENT_PORTS[i]
    binary = [ETCD] if server == "etcd" else ketch_command()
    args = [
        "--name", name, "--data-dir", str(data / name),
        "--listen-peer-urls", f"http://127.0.0.1:{peer}",
        "--initial-advertise-peer-urls", f"http://{name}.{DOMAIN}:{peer}",
        "--listen-client-urls", f"http://127.0.0.1:{client}",
        "--advertise-client-urls", f"http://127.0.0.1:{client}",
    ]  # fmt: skip
    if mode == "srv":
        args += ["--discovery-srv", DOMAIN, "--initial-cluster-token", TOKEN]
    elif mode == "static":
        # What the SRV records say, given by hand.
        cluster = ",".join(
            f"{n}=http://{n}.{DOMAIN}:{p}" for n, p in zip(MEMBERS, PEER_PORTS, strict=True)
        )
        args += ["--initial-cluster", cluster, "--initial-cluster-token", TOKEN]
    else:
        args += ["--discovery", DISCOVERY_URL, "--discovery-fallback", "exit"]
    return [*binary, *args]


def etcdctl(*args: str, port: int = CLIENT_PORTS[0]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ETCDCTL, "--endpoints", f"127.0.0.1:{port}", "--command-timeout=5s", *args],
        capture_output=True, text=True, timeout=30, env=subprocess_env({"ETCDCTL_API": "3"}),
        check=False,
    )  # fmt: skip


def wait_for(check: object, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def start_discovery_service(data: Path) -> subprocess.Popen[bytes]:
    """A real etcd with the v2 API, where the discovery URL points."""
    proc = subprocess.Popen(
        [ETCD, "--name", "discovery", "--data-dir", str(data / "discovery"), "--enable-v2",
         "--listen-client-urls", f"http://127.0.0.1:{DISCOVERY_PORT}",
         "--advertise-client-urls", f"http://127.0.0.1:{DISCOVERY_PORT}",
         "--listen-peer-urls", "http://127.0.0.1:4002",
         "--initial-advertise-peer-urls", "http://127.0.0.1:4002",
         "--initial-cluster", "discovery=http://127.0.0.1:4002"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=subprocess_env(),
    )  # fmt: skip
    import urllib.request

    def size_set() -> bool:
        req = urllib.request.Request(
            f"{DISCOVERY_URL}/_config/size", data=b"value=3", method="PUT",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=2) as resp:
                return bool(resp.status in (200, 201))
        except OSError:
            return False

    wait_for(size_set, "the discovery service")
    return proc


def _logs(tmp: Path) -> dict[str, str]:
    return {p.stem: p.read_text(errors="replace")[-4000:] for p in tmp.glob("*.log")}


def main() -> None:
    server, mode = sys.argv[1], sys.argv[2]
    loopback_up()
    tmp = Path(tempfile.mkdtemp(prefix="ketch-discovery-"))
    resolv = tmp / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions attempts:1 timeout:1\n")
    subprocess.run(["mount", "--bind", str(resolv), "/etc/resolv.conf"], check=True)
    serve_dns(zone())
    procs: list[subprocess.Popen[bytes]] = []
    result: dict[str, object] = {}
    try:
        if mode == "v2":
            procs.append(start_discovery_service(tmp))
        for i, name in enumerate(MEMBERS):
            with open(tmp / f"{name}.log", "wb") as log:
                procs.append(subprocess.Popen(member_command(server, i, tmp, mode), stdout=log,
                                              stderr=subprocess.STDOUT, env=subprocess_env()))  # fmt: skip
        wait_for(lambda: etcdctl("endpoint", "health", "--cluster").returncode == 0, "the cluster")
        members = json.loads(etcdctl("member", "list", "-w", "json").stdout)
        result["cluster_id"] = members["header"]["cluster_id"]
        result["members"] = sorted(
            (m["ID"], m["name"], m["peerURLs"], m.get("clientURLs", [])) for m in members["members"]
        )
        put = etcdctl("put", "k", "v", port=CLIENT_PORTS[2])
        result["put"] = put.stdout.strip()
        result["get"] = etcdctl("get", "k", "--print-value-only").stdout.strip()
        if mode == "v2":
            # A fourth member finds the cluster full and exits, as etcd with
            # --discovery-fallback=exit does.
            extra = member_command(server, 0, tmp / "extra", mode)
            extra[extra.index("--name") + 1] = "m3"
            extra[extra.index("--listen-peer-urls") + 1] = "http://127.0.0.1:2383"
            extra[extra.index("--initial-advertise-peer-urls") + 1] = "http://127.0.0.1:2383"
            extra[extra.index("--listen-client-urls") + 1] = "http://127.0.0.1:12382"
            extra[extra.index("--advertise-client-urls") + 1] = "http://127.0.0.1:12382"
            late = subprocess.run(extra, capture_output=True, text=True, timeout=60,
                                  env=subprocess_env(), check=False)  # fmt: skip
            result["full_exit_code"] = late.returncode
            result["full_log"] = late.stderr
        result["logs"] = _logs(tmp)
    except SystemExit:
        sys.stderr.write(json.dumps(_logs(tmp), indent=1))
        raise
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    os.umask(0o022)
    main()
