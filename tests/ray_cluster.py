"""A real Ray cluster on this machine for the tests and the scaling benchmark: a head node and worker
nodes started by `ray start` as separate processes (not Ray's local mode), and stopped again."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Ray replaces 127.0.0.1 with the machine's outward address; another loopback address keeps every
# connection of the cluster on this machine.
HOST = "127.0.0.2"
OBJECT_STORE = 150_000_000  # bytes per node: the tests' batches are small


def ray_command() -> str:
    found = Path(sys.executable).with_name("ray")
    return str(found) if found.exists() else (shutil.which("ray") or "ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Cluster:
    """`ray start --head` and `ray start --address` for each worker node, each node with its own CPUs."""

    def __init__(self, head_cpus: int = 1, workers: int = 1, worker_cpus: int = 1):
        # Ray's socket paths must stay short (a Unix socket's path is at most 107 bytes): a short folder.
        self.temp = tempfile.mkdtemp(prefix="mmsr-")
        self.port = _free_port()
        self.address = f"{HOST}:{self.port}"
        # Ray turns token authentication on by itself for a node that finds ~/.ray/auth_token (which any
        # local ray.init() writes) and leaves it off for one that does not: this cluster runs without it,
        # and so do its clients here (the tests' own process and the commands it starts inherit this).
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        try:
            self._start(["--head", f"--port={self.port}", f"--num-cpus={head_cpus}", "--include-dashboard=false",
                         f"--temp-dir={self.temp}", "--disable-usage-stats"])
            for _ in range(workers):
                self.add_worker(worker_cpus)
        except BaseException:
            self.stop()
            raise

    def _start(self, args: list[str]) -> None:
        proc = subprocess.run([ray_command(), "start", f"--node-ip-address={HOST}",
                               f"--object-store-memory={OBJECT_STORE}", *args],
                              capture_output=True, text=True, env=self.env, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"ray start {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")

    def add_worker(self, cpus: int = 1) -> None:
        self._start([f"--address={self.address}", f"--num-cpus={cpus}"])

    def alive_nodes(self) -> int:
        code = ("import ray; ray.init(address=%r, logging_level='ERROR', log_to_driver=False); "
                "print(sum(1 for n in ray.nodes() if n['Alive']))" % self.address)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=self.env, timeout=120)
        return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else 0

    def wait_for_nodes(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while (alive := self.alive_nodes()) < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{alive} of {n} Ray nodes came up")
            time.sleep(1)

    def processes(self) -> list:
        """This cluster's processes: those started with its temp folder, and theirs (workers, agents)."""
        import psutil

        own = []
        for p in psutil.process_iter(["cmdline"]):
            try:
                if p.pid != os.getpid() and any(self.temp in a for a in (p.info["cmdline"] or [])):
                    own.append(p)
            except psutil.Error:
                pass
        found = {p.pid: p for p in own}
        for p in own:
            try:
                found.update({c.pid: c for c in p.children(recursive=True)})
            except psutil.Error:
                pass
        return list(found.values())

    def stop(self) -> None:
        """End this cluster's processes, by their ids (`ray stop` would end every Ray on the machine)."""
        import psutil

        procs = self.processes()
        for p in procs:
            try:
                p.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(procs, timeout=15)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=5)
        shutil.rmtree(self.temp, ignore_errors=True)
