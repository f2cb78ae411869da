"""A job's coordinator with fake agents (tests/cluster/fakeagent) on loopback.

Used by tests/cases_coord.py (under tests/run-tests.py, which spawns and
reaps every process itself: pass its spawn/wait_for) and by the benchmark
tests/bench/coord (on its own: the defaults below use subprocess).  Every
process is stopped by its PID; the private munged and the directory go too.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import shutil

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import munge  # noqa: E402


class Procs:
    """spawn/stop by PID with subprocess (outside the test runner)"""

    def __init__(self):
        self.p = {}

    def spawn(self, argv, out):
        f = open(out, "ab")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=f)
        f.close()
        self.p[p.pid] = p
        return p.pid

    def alive(self, pid):
        return self.p[pid].poll() is None

    def wait(self, pid, timeout):
        try:
            rc = self.p[pid].wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        del self.p[pid]
        return rc

    def stop(self, pid, sig=signal.SIGTERM, timeout=10):
        p = self.p.pop(pid)
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return p.returncode


class RunnerProcs:
    """spawn/stop by PID with tests/run-tests.py's own spawn and reaper"""

    def __init__(self, runner):
        self.r = runner

    def spawn(self, argv, out):
        return self.r.spawn(argv, out=out)

    def alive(self, pid):
        return self.r.alive(pid)

    def wait(self, pid, timeout):
        return self.r.exit_code(self.r.wait_for(pid, timeout))

    def stop(self, pid, sig=signal.SIGTERM, timeout=10):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        st = self.r.wait_for(pid, timeout)
        if st is None:
            self.r.kill_tree(pid)
            st = self.r.wait_for(pid, 5)
        return self.r.exit_code(st)


class Cluster:
    def __init__(self, builddir, procs=None, tmpdir=None, job="job1", munged=None, store=None):
        self.builddir = builddir
        self.procs = procs or Procs()
        self.own_tmp = tmpdir is None
        self.dir = tmpdir or tempfile.mkdtemp(prefix="crjob-coord-")
        self.store = store or os.path.join(self.dir, "store")
        os.makedirs(self.store, exist_ok=True)
        self.job = job
        self.own_munged = munged is None
        self.munged = munged or munge.Munged()
        self.agents = []        # (pid, [ports])
        self.coord_pid = None
        self.coord_log = os.path.join(self.dir, "coord.log")
        self.agent_log = os.path.join(self.dir, "agents.log")
        self.n = 0

    def start(self):
        if self.own_munged:
            self.munged.start()
        return self

    def exe(self, *path):
        return os.path.join(self.builddir, *path)

    def fake_agents(self, count, *opts):
        """count agents in one process; their ports"""
        self.n += 1
        ready = os.path.join(self.dir, f"ready{self.n}")
        pid = self.procs.spawn([self.exe("tests", "cluster", "fakeagent"), "--count", str(count),
                                "--munge-socket", self.munged.socket, "--ready", ready,
                                "--log", self.agent_log] + list(opts),
                               os.path.join(self.dir, f"fakeagent{self.n}.out"))
        deadline = time.time() + 30
        while not os.path.exists(ready):
            assert self.procs.alive(pid) and time.time() < deadline, \
                f"fakeagent did not start: {self.read(f'fakeagent{self.n}.out')}"
            time.sleep(0.01)
        with open(ready) as f:
            ports = [int(x) for x in f.read().split()]
        self.agents.append((pid, ports))
        return ports

    @staticmethod
    def spec(i, port, pids=None, prefix="n", net="10.0"):
        s = f"{prefix}{i},127.0.0.1:{port},{net}.{i // 250}.{i % 250 + 1}"
        return s + "," + "+".join(str(p) for p in pids) if pids else s

    def node_args(self, ports, prefix="n", net="10.0"):
        out = []
        for i, p in enumerate(ports):
            out += ["--node", self.spec(i, p, [1000 + i], prefix, net)]
        return out

    def start_coord(self, *opts, user=None):
        """the job's coordinator (as uid user: its log file is made its own)"""
        cf = os.path.join(self.store, "coord", self.job)
        if os.path.exists(cf):
            os.unlink(cf)
        argv = [self.exe("coord", "crjob-coord"), "--job", self.job, "--store", self.store,
                "--listen", "127.0.0.1:0", "--munge-socket", self.munged.socket,
                "--log", self.coord_log] + list(opts)
        if user is not None:
            with open(self.coord_log, "a"):
                pass
            os.chown(self.coord_log, user, user)
            argv = [shutil.which("setpriv"), f"--reuid={user}", f"--regid={user}",
                    "--clear-groups"] + argv
        self.coord_pid = self.procs.spawn(argv, os.path.join(self.dir, "coord.out"))
        deadline = time.time() + 30
        while not os.path.exists(cf):
            assert self.procs.alive(self.coord_pid) and time.time() < deadline, \
                f"coordinator did not start: {self.read('coord.out')} {self.read('coord.log')}"
            time.sleep(0.01)
        return self.coord_pid

    def coord_addr(self):
        with open(os.path.join(self.store, "coord", self.job)) as f:
            return f.read().split()[0]

    def wait_coord(self, timeout=10):
        """the coordinator's exit code once it exits on its own, None if it does not"""
        rc = self.procs.wait(self.coord_pid, timeout)
        if rc is not None:
            self.coord_pid = None
        return rc

    def stop_coord(self, sig=signal.SIGTERM):
        pid, self.coord_pid = self.coord_pid, None
        return self.procs.stop(pid, sig) if pid else None

    def crjob(self, *args, user=None, timeout=120):
        argv = [self.exe("crjob", "crjob"), "--store", self.store,
                "--munge-socket", self.munged.socket] + list(args)
        if user is not None:
            argv = [shutil.which("setpriv"), f"--reuid={user}", f"--regid={user}",
                    "--clear-groups"] + argv
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout)
        return r

    def crjob_bg(self, *args):
        """crjob in the background: (pid, file of its output)"""
        self.n += 1
        out = os.path.join(self.dir, f"crjob{self.n}.out")
        return self.procs.spawn([self.exe("crjob", "crjob"), "--store", self.store,
                                 "--munge-socket", self.munged.socket] + list(args), out), out

    def json(self, *args):
        r = self.crjob("--json", *args)
        assert r.returncode == 0, f"crjob {' '.join(args)}: {r.returncode}: {r.stderr}"
        return json.loads(r.stdout)

    def gens(self):
        return [g["gen"] for g in self.json("history", self.job)["generations"]]

    def store_ls(self):
        r = subprocess.run([self.exe("crd", "crd"), "store", "ls", self.job, "--store",
                            self.store], capture_output=True, text=True)
        return [int(l.split()[1]) for l in r.stdout.splitlines()[1:] if l.split()]

    def agent_lines(self):
        """the fake agents' log: (time, port, op, {key: value})"""
        out = []
        try:
            with open(self.agent_log) as f:
                for line in f:
                    p = line.split()
                    kv = dict(x.split("=", 1) for x in p[3:])
                    out.append((float(p[0]), int(p[1]), p[2], kv))
        except FileNotFoundError:
            pass
        return out

    def read(self, name):
        try:
            with open(os.path.join(self.dir, name), errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def close(self):
        try:
            self.stop_coord()
            for pid, _ in self.agents:
                self.procs.stop(pid)
            self.agents = []
        finally:
            if self.own_munged:
                self.munged.stop()
            if self.own_tmp:
                shutil.rmtree(self.dir, ignore_errors=True)
