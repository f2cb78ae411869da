"""TCP connections between hosts (network namespaces on a private bridge):
checkpointed mid-flow, moved to other hosts with --remap-ip, under the network lock."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nethosts  # noqa: E402

_runner = sys.modules["__main__"]
PORT = 7311


class Stream:
    """the two ends of tests/net/stream, one per host"""

    def __init__(self, env, hosts, srv_host, cli_host):
        self.env = env
        self.hosts = hosts
        self.work = os.path.join(env.tmpdir, "work")
        os.makedirs(self.work, exist_ok=True)
        prog = os.path.join(env.builddir, "tests", "net", "stream")
        self.ends = {}
        for role, mode, host in (("srv", "listen", srv_host), ("cli", "connect", cli_host)):
            argv = hosts.argv(host, [prog, mode, hosts.addrs[srv_host], str(PORT),
                                     os.path.join(self.work, f"{role}.status")])
            pid = _runner.spawn(argv, cwd=self.work, out=os.path.join(self.work, f"{role}.log"))
            self.ends[role] = {"pid": pid, "host": host}
        self.wait_moving()

    def status(self, role):
        try:
            with open(os.path.join(self.work, f"{role}.status")) as f:
                w = f.read().split()
            return int(w[1]), int(w[3])
        except (OSError, IndexError, ValueError):
            return 0, 0

    def log(self, role):
        with open(os.path.join(self.work, f"{role}.log"), errors="replace") as f:
            return f.read()[-1500:]

    def wait_moving(self, timeout=60):
        """both ends receive more than they had: the stream flows both ways"""
        before = {r: self.status(r)[1] for r in self.ends}
        deadline = time.time() + timeout
        while any(self.status(r)[1] <= before[r] + (1 << 20) for r in self.ends):
            for r, e in self.ends.items():
                assert _runner.alive(e["pid"]), f"{r} died: {self.log(r)}"
            assert time.time() < deadline, \
                f"the stream does not move: {[self.status(r) for r in self.ends]}"
            time.sleep(0.01)

    def crd(self, host, *args):
        r = _runner.run(self.hosts.argv(host, [self.env.crd] + list(args)))
        assert r.code == 0, f"crd {' '.join(args)} on host {host} failed ({r.code}): {r.out}"
        return r

    def dump(self, role, img):
        """dump one end (killed); its connection stays locked on its host"""
        e = self.ends[role]
        self.crd(e["host"], "dump", "-t", str(e["pid"]), "-D", img)
        st = _runner.wait_for(e["pid"], 10)
        assert st is not None, f"the dump did not kill {role}"

    def restore(self, role, img, host, remap):
        """restore one end on host, its connection still locked there"""
        e = self.ends[role]
        args = ["restore", "-D", img, "--detach", "--keep-net-locked"]
        for old, new in remap:
            args += ["--remap-ip", f"{old}={new}"]
        r = self.crd(host, *args)
        assert int(r.out.split()[-1]) == e["pid"], f"restore printed {r.out!r}"
        assert os.stat(f"/proc/{e['pid']}/ns/net").st_ino == \
            os.stat(self.hosts.path(host)).st_ino, f"{role} is not on host {host}"
        old_host, e["host"] = e["host"], host
        self.crd(old_host, "net-unlock", str(e["pid"]))

    def unlock(self):
        for e in self.ends.values():
            self.crd(e["host"], "net-unlock", str(e["pid"]))

    def move(self, to, img):
        """checkpoint both ends one after the other, restore them on the hosts in to"""
        remap = [(self.hosts.addrs[self.ends[r]["host"]], self.hosts.addrs[h])
                 for r, h in zip(("srv", "cli"), to)]
        for r in ("srv", "cli"):
            self.dump(r, os.path.join(img, r))
        for r, h in zip(("srv", "cli"), to):
            self.restore(r, os.path.join(img, r), h, remap)
        self.unlock()

    def finish(self):
        for e in self.ends.values():
            os.kill(e["pid"], signal.SIGUSR2)
        res = {}
        for r, e in self.ends.items():
            st = _runner.wait_for(e["pid"], 60)
            assert st is not None, f"{r} did not finish"
            assert _runner.exit_code(st) == 0, f"{r} failed: {self.log(r)}"
            res[r] = self.status(r)
        # what one end sent is exactly what the other received
        assert res["srv"][0] == res["cli"][1] and res["cli"][0] == res["srv"][1], \
            f"byte counts differ: {res}"

    def cleanup(self):
        for e in self.ends.values():
            if _runner.alive(e["pid"]):
                _runner.kill_tree(e["pid"])
            _runner.run([self.env.crd, "net-unlock", str(e["pid"])])


def _imgdirs(env, n):
    base = os.path.join(env.tmpdir, f"img{n}")
    for r in ("srv", "cli"):
        os.makedirs(os.path.join(base, r), exist_ok=True)
    return base


def stream_100_moves(env):
    """a stream between two hosts moved 100 times between host pairs: no gap, no duplicate"""
    hosts = nethosts.Hosts(4)
    s = None
    try:
        s = Stream(env, hosts, 0, 1)
        pairs = [(2, 3), (0, 1)]
        for i in range(100):
            img = _imgdirs(env, i % 2)
            s.move(pairs[i % 2], img)
            s.wait_moving()
        s.finish()
    finally:
        if s:
            s.cleanup()
        hosts.destroy()


def stream_corrupt_detected(env):
    """TEST_CORRUPT=1: the receiving check does fail, so the moves above prove something"""
    hosts = nethosts.Hosts(2)
    os.environ["TEST_CORRUPT"] = "1"
    s = None
    try:
        try:
            s = Stream(env, hosts, 0, 1)
        except AssertionError as e:
            assert "byte 0 is" in str(e), f"unexpected failure: {e}"
            return
        raise AssertionError("a corrupted stream was accepted")
    finally:
        del os.environ["TEST_CORRUPT"]
        if s:
            s.cleanup()
        hosts.destroy()


def one_side_later(env):
    """one end dumped and gone for a while: the other sees no reset, resumes after restore"""
    hosts = nethosts.Hosts(2)
    s = None
    try:
        s = Stream(env, hosts, 0, 1)
        img = _imgdirs(env, 0)
        s.dump("cli", os.path.join(img, "cli"))
        time.sleep(3)	# the server keeps writing into a locked connection
        assert _runner.alive(s.ends["srv"]["pid"]), f"srv died: {s.log('srv')}"
        s.restore("cli", os.path.join(img, "cli"), 1, [])
        s.unlock()
        s.wait_moving()
        s.finish()
    finally:
        if s:
            s.cleanup()
        hosts.destroy()


CASES = [("stream-100-moves", stream_100_moves),
         ("stream-corrupt-detected", stream_corrupt_detected),
         ("one-side-restored-later", one_side_later)]


_SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(8)
open(sys.argv[2], "w").close()
while True:
    c, _ = s.accept()
    nodelay = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    c.sendall(f"hi nodelay={nodelay}\\n".encode())
    c.close()
"""

_CLIENT = """
import socket, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
print(c.makefile().readline().strip())
"""


def listener_back_over_time_wait(env):
    """a server without SO_REUSEADDR that closed a connection first (its port in
    TIME_WAIT) is dumped and restored on the same host: the listener comes back on
    that port (the remains of the killed connection are freed), with its TCP_NODELAY,
    and serves again"""
    hosts = nethosts.Hosts(1)
    work = os.path.join(env.tmpdir, "work")
    os.makedirs(work, exist_ok=True)
    ready, img = os.path.join(work, "ready"), os.path.join(work, "img")
    os.makedirs(img)
    pid = None
    try:
        pid = _runner.spawn(hosts.argv(0, [sys.executable, "-c", _SERVER, str(PORT), ready]),
                            cwd=work, out=os.path.join(work, "srv.log"))
        deadline = time.time() + 30
        while not os.path.exists(ready):
            assert time.time() < deadline and _runner.alive(pid), "the server did not start"
            time.sleep(0.05)
        r = _runner.run(hosts.argv(0, [sys.executable, "-c", _CLIENT, str(PORT)]))
        assert r.code == 0 and r.out.strip() == "hi nodelay=1", f"client: {r.out}"
        r = _runner.run(hosts.argv(0, ["ss", "-tanH", "state", "time-wait",
                                       "sport", "=", f":{PORT}"]))
        assert r.out.strip(), f"no TIME_WAIT on port {PORT}: the case proves nothing: {r.out}"
        r = _runner.run(hosts.argv(0, [env.crd, "dump", "-t", str(pid), "-D", img]))
        assert r.code == 0, f"dump failed: {r.out}"
        assert _runner.wait_for(pid, 10) is not None, "the dump did not kill the server"
        r = _runner.run(hosts.argv(0, [env.crd, "restore", "-D", img, "--detach"]))
        assert r.code == 0 and int(r.out.split()[-1]) == pid, f"restore failed: {r.out}"
        r = _runner.run(hosts.argv(0, [sys.executable, "-c", _CLIENT, str(PORT)]))
        assert r.code == 0 and r.out.strip() == "hi nodelay=1", f"the restored server: {r.out}"
    finally:
        if pid and _runner.alive(pid):
            _runner.kill_tree(pid)
        hosts.destroy()


CASES.append(("listener-back-over-time-wait", listener_back_over_time_wait))
