"""A three-member cluster started with the flags kubeadm's etcd static pod
manifest passes (kubeadm's cmd/kubeadm/app/phases/etcd/local.go), etcd in
one run and ketch in the other, driven by etcdctl with the apiserver's client
certificate. On one machine the members differ by port, and the second client
URL kubeadm adds (the node's IP) is 127.0.0.2."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from ..support import Server, etcdctl, free_port, make_tls_files

ServerFactory = Callable[..., Server]


@pytest.mark.parametrize("kind", ["etcd", "ketch"])
def test_kubeadm_manifest_flags(make_server: ServerFactory, tmp_path: Path, kind: str) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    tls = make_tls_files(pki)
    names = ["m0", "m1", "m2"]
    ports = {n: (free_port(), free_port()) for n in names}
    cluster = ",".join(f"{n}=https://127.0.0.1:{ports[n][1]}" for n in names)
    members = []
    for n in names:
        client, peer = ports[n]
        s = make_server(kind, start=False, client_port=client, peer_port=peer, scheme="https",
                        client_tls=(tls.ca, tls.client_cert, tls.client_key))  # fmt: skip
        s.args = [
            f"--advertise-client-urls=https://127.0.0.1:{client}",
            f"--cert-file={tls.server_cert}",
            "--client-cert-auth=true",
            f"--data-dir={s.data_dir}",
            "--experimental-initial-corrupt-check=true",
            "--experimental-watch-progress-notify-interval=5s",
            f"--initial-advertise-peer-urls=https://127.0.0.1:{peer}",
            f"--initial-cluster={cluster}",
            f"--key-file={tls.server_key}",
            f"--listen-client-urls=https://127.0.0.1:{client},https://127.0.0.2:{client}",
            f"--listen-metrics-urls=http://127.0.0.1:{free_port()}",
            f"--listen-peer-urls=https://127.0.0.1:{peer}",
            f"--name={n}",
            f"--peer-cert-file={tls.peer_cert}",
            "--peer-client-cert-auth=true",
            f"--peer-key-file={tls.peer_key}",
            f"--peer-trusted-ca-file={tls.ca}",
            "--snapshot-count=10000",
            f"--trusted-ca-file={tls.ca}",
        ]
        members.append(s)
    for s in members:
        s.start(wait=False)
    for s in members:
        s.wait_ready()

    a, b, c = members
    assert a.etcdctl("put", "/registry/pods/default/p", "v")[0] == 0
    rc, out, _ = c.etcdctl("get", "/registry/pods/default/p", "--print-value-only")
    assert (rc, out) == (0, "v\n")
    rc, out, err = b.etcdctl("member", "list", "-w", "json")
    assert rc == 0, err
    listed = sorted(m["peerURLs"][0] for m in json.loads(out)["members"])
    assert listed == sorted(f"https://127.0.0.1:{ports[n][1]}" for n in names)
    # Without the client certificate the server refuses the connection.
    rc, _, _ = etcdctl(b, "--dial-timeout=2s", "--command-timeout=3s", "get", "x",
                       tls=(tls.ca, None, None), timeout=20)  # fmt: skip
    assert rc != 0
    for s in members:
        if kind == "ketch":
            log = s.log_text()
            # Both are honoured now: no "has no effect" warning for either.
            assert log.count("flag --experimental-initial-corrupt-check has no effect") == 0
            assert log.count("flag --listen-metrics-urls has no effect") == 0
