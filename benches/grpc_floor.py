"""The floor under ketch's front end: grpc.aio on uvloop doing nothing at all.

    python -m benches.grpc_floor --listen-client-urls http://127.0.0.1:23790 [--processes N]

ketch's gRPC layer is fixed by design (grpcio's asyncio server on uvloop, in
`--grpc-workers` processes sharing the client port). This server is that
layer with the engine taken out: the same server options, the same raw-bytes
generic handlers, the same number of processes sharing the port with
SO_REUSEPORT, and every unary call answered at once with an empty message
(a valid default of any response type). Whatever qps it reaches on a
workload is the most any server built this way can reach on this machine,
so `compare.py --floor` shows, beside each ratio to etcd, how much of the
gap is the engine's and how much the stack's.

Only workloads whose answers may be empty measure it: put (an empty
PutResponse is a success). A Range answered empty would be a wrong answer,
so compare.py runs the floor on put workloads only.

It takes etcd's flags, as compare.py passes them, and ignores all but
--listen-client-urls.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
from urllib.parse import urlsplit

import grpc
import grpc.aio

# The services and unary methods of etcd's v3 API that a client may call.
_UNARY = {
    "etcdserverpb.KV": ("Range", "Put", "DeleteRange", "Txn", "Compact"),
    "etcdserverpb.Maintenance": ("Status", "Alarm"),
    "etcdserverpb.Cluster": ("MemberList",),
}
_WORKER_ENV = "KETCH_GRPC_FLOOR_WORKER"


async def _answer_empty(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return b""


def _handlers() -> list[grpc.GenericRpcHandler]:
    return [
        grpc.method_handlers_generic_handler(
            service, {m: grpc.unary_unary_rpc_method_handler(_answer_empty) for m in methods}
        )
        for service, methods in _UNARY.items()
    ]


async def _serve(addresses: list[str], bound_fd: int | None) -> None:
    # ketch's own options (python/ketch/server.py grpc_options), port shared.
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", 2 * 1024 * 1024 + 512 * 1024),
            ("grpc.so_reuseport", 1),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 5000),
            ("grpc.keepalive_permit_without_calls", 0),
        ]
    )
    for a in addresses:
        server.add_insecure_port(a)
    server.add_generic_rpc_handlers(_handlers())
    await server.start()
    if bound_fd is not None:  # a worker: tell the first process it listens
        os.write(bound_fd, b"1")
        os.close(bound_fd)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benches.grpc_floor", description=__doc__)
    p.add_argument("--listen-client-urls", required=True)
    p.add_argument(
        "--processes",
        type=int,
        default=min(os.cpu_count() or 1, 4),  # ketch's --grpc-workers default
        help="gRPC processes sharing the port (default: as ketch's --grpc-workers)",
    )
    args, _etcd_flags = p.parse_known_args(argv)
    addresses = [urlsplit(u).netloc for u in args.listen_client_urls.split(",")]
    import uvloop

    workers: list[subprocess.Popen[bytes]] = []
    bound_fd = int(os.environ[_WORKER_ENV]) if _WORKER_ENV in os.environ else None
    if bound_fd is None:
        # As ketch: every worker listens before the first process does, so
        # the kernel spreads the clients' first connections over all of them.
        argv_again = [sys.executable, os.path.abspath(__file__), *(argv or sys.argv[1:])]
        for _ in range(args.processes - 1):
            r, w = os.pipe()
            workers.append(
                subprocess.Popen(argv_again, env={**os.environ, _WORKER_ENV: str(w)}, pass_fds=(w,))
            )
            os.close(w)
            if os.read(r, 1) != b"1":
                raise SystemExit("grpc_floor: a worker process did not start")
            os.close(r)
    try:
        uvloop.run(_serve(addresses, bound_fd))
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
