"""A real Redis Cluster on loopback ports: `masters` masters with one replica each, every node a
`redis-server --cluster-enabled yes` in its own temp dir, joined by `redis-cli --cluster create`.
Tests may SIGKILL a master and promote its replica (`fail_over`)."""

from __future__ import annotations

import shutil
import subprocess
import time

import redis

from tests.support.redis_server import RedisServer


class RedisClusterProcesses:
    """`masters` masters + one replica each; `url` is a seed (the first master)."""

    def __init__(self, masters: int = 3) -> None:
        if shutil.which("redis-cli") is None:
            raise RuntimeError("redis-cli is not installed (apt-get install -y redis-server)")
        self.nodes = [RedisServer(cluster=True) for _ in range(2 * masters)]
        self.masters = masters

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}"

    def start(self, timeout: float = 30.0) -> RedisClusterProcesses:
        for node in self.nodes:
            node.start()
        subprocess.run(
            ["redis-cli", "--cluster", "create",
             *(f"127.0.0.1:{n.port}" for n in self.nodes),
             "--cluster-replicas", "1", "--cluster-yes"],
            check=True, capture_output=True, timeout=timeout,
        )  # fmt: skip
        self.wait_ok(timeout)
        self._wait_replicas(timeout)
        return self

    def _wait_replicas(self, timeout: float) -> None:
        """Until every master has its replica online (in sync): before that WAIT 1 fails."""
        deadline = time.monotonic() + timeout
        with self._client(self.nodes[0]) as c:
            ports = [int(s[2][1]) for s in c.execute_command("CLUSTER SLOTS")]
        while time.monotonic() < deadline:
            states = []
            for port in ports:
                with redis.Redis(host="127.0.0.1", port=port, socket_timeout=2) as c:
                    info = c.info("replication")
                    states.append(info.get("slave0", {}).get("state") == "online")
            if all(states):
                return
            time.sleep(0.1)
        raise RuntimeError("the replicas did not come online in time")

    def _client(self, node: RedisServer) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=2)

    def live(self) -> list[RedisServer]:
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every live node says `cluster_state:ok` and agrees there are `masters`
        masters serving every slot."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if all(self._ok(n) for n in self.live()):
                    return
            except redis.RedisError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the cluster did not become ok in time")

    def _ok(self, node: RedisServer) -> bool:
        with self._client(node) as c:
            if c.execute_command("CLUSTER INFO").get("cluster_state") != "ok":
                return False
            shards = c.execute_command("CLUSTER SLOTS")
            return len(shards) == self.masters and all(self.live_port(int(s[2][1])) for s in shards)

    def live_port(self, port: int) -> bool:
        return any(n.port == port for n in self.live())

    def master_of(self, key: str) -> RedisServer:
        """The node that serves `key`'s slot now."""
        with self._client(self.live()[0]) as c:
            slot = int(c.execute_command("CLUSTER KEYSLOT", key))
            for start, end, master, *_ in c.execute_command("CLUSTER SLOTS"):
                if start <= slot <= end:
                    return next(n for n in self.nodes if n.port == int(master[1]))
        raise RuntimeError(f"no node serves {key}")

    def replica_of(self, master: RedisServer) -> RedisServer:
        with self._client(master) as c:
            node_id = c.execute_command("CLUSTER MYID").decode()
            for address, node in c.execute_command("CLUSTER NODES").items():
                if node["master_id"] == node_id:
                    port = int(address.rsplit(":", 1)[1])
                    return next(n for n in self.nodes if n.port == port)
        raise RuntimeError("the master has no replica")

    def fail_over(self, master: RedisServer, timeout: float = 30.0) -> RedisServer:
        """SIGKILL `master`, promote its replica at once (CLUSTER FAILOVER TAKEOVER, rather
        than wait for the node timeout), wait for the cluster to be ok, then start the killed
        node again, which rejoins as the new master's replica (until then a write that must
        reach a replica, WAIT 1, cannot be acknowledged there): the new master."""
        replica = self.replica_of(master)
        master.kill()
        with self._client(replica) as c:
            c.execute_command("CLUSTER FAILOVER TAKEOVER")
        self.wait_ok(timeout)
        master.start()
        self._wait_replicas(timeout)
        return replica

    def flush(self) -> None:
        """Empty every master (replicas follow)."""
        with self._client(self.live()[0]) as c:
            masters = [int(s[2][1]) for s in c.execute_command("CLUSTER SLOTS")]
        for port in masters:
            with redis.Redis(host="127.0.0.1", port=port, socket_timeout=2) as c:
                c.flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
