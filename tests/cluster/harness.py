"""A test cluster on one machine (issue 5): nodes are network namespaces.

    c = Cluster(env, 3, spare=3)      # 6 namespaces on a private bridge
    job = c.start_job(ranks=2, rounds=300, round_ms=50)
    job.wait_progress(20)
    ... c.crd(host, "dump", ...)  /  c.start_agents(); c.start_coord(job); c.crjob(...)
    result = job.wait_done()
    c.destroy()                       # always, in a finally

Nodes ("hosts") are network namespaces, each with one veth into a bridge the
cluster owns, on a private subnet 10.251.X.0/24 not routed yet on this
machine (tests/nethosts.py does the namespaces).  The bridge itself has
.254 so that what runs in the machine's own namespace (the coordinator,
crjob) reaches the agents and the agents reach it.  Host i is 10.251.X.(i+1).

Processes are started by fork+exec and reaped by the test runner
(tests/run-tests.py is a child subreaper, so trees killed by a dump or
restored with --detach come back to it); used on its own, this module loads
the runner's helpers and becomes the subreaper itself.  Everything is
stopped by PID, never by name: the rank trees with all their descendants,
the agents, the coordinator, munged; then the network lock tables crd_lock_*
in every namespace of the cluster, the namespaces, the bridge, tmpfs mounts
and the temporary directories.

Binaries of the distributed layer (crjob-agent, crjob-coord, crjob) are
looked for in the build tree (agent/, coord/, crjob/) and then in PATH; a
part whose binary is missing raises unittest.SkipTest with the reason.

CRJOB_TEST_KEEP=1 keeps the cluster's directory (logs of the job, agents,
coordinator, munged; images; the store) for a look after a failure.
"""
import glob
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, TESTS)
import nethosts  # noqa: E402

AGENT_PORT = 7710	# RPC_DEFAULT_AGENT_PORT
JOB_PORT = 7400


# ------------------------------------------------------------------ processes

_rt = None


def runner():
    """the test runner's process helpers (spawn, run, wait_for, alive, kill_tree, ...)"""
    global _rt
    if _rt:
        return _rt
    main = sys.modules["__main__"]
    if all(hasattr(main, a) for a in ("spawn", "run", "wait_for", "alive", "kill_tree",
                                       "reap_some", "reaped")):
        _rt = main
    else:
        spec = importlib.util.spec_from_file_location("crd_run_tests",
                                                      os.path.join(TESTS, "run-tests.py"))
        _rt = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(_rt)
        _rt.libc.prctl(_rt.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    return _rt


def gone(pid):
    """pid has exited (reaped, or a zombie whose parent is not us)"""
    rt = runner()
    rt.reap_some()
    return not rt.alive(pid)


def _start_time(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def binary(env, name, subdir):
    for d in (getattr(env, "builddir", None), getattr(env, "srcdir", None)):
        if d:
            p = os.path.join(d, subdir, name)
            if os.access(p, os.X_OK):
                return p
    return shutil.which(name)


def need(env, name, subdir):
    p = binary(env, name, subdir)
    if not p:
        raise unittest.SkipTest(f"{name} is not built yet ({subdir}/{name} not in the build "
                                f"tree nor in PATH): the distributed layer of "
                                f"docs/distributed.md is missing")
    return p


def _ip(*args):
    r = subprocess.run([shutil.which("ip") or "/usr/sbin/ip"] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode:
        raise AssertionError(f"ip {' '.join(args)}: {r.stdout.strip()}")
    return r.stdout


def _nft(netns, *args):
    argv = [shutil.which("nft") or "/usr/sbin/nft"] + list(args)
    if netns:
        argv = [shutil.which("nsenter"), f"--net={netns}"] + argv
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


# ------------------------------------------------------------------ munge

class _Munged:
    """Minimal private munged (until tests/munge.py of the agent branch lands):
    runs as munge in the foreground, so the PID we start is munged's."""

    def __init__(self):
        self.dir = self.pid = self.socket = None

    def start(self, timeout=10):
        rt = runner()
        pw = pwd.getpwnam("munge")
        self.dir = tempfile.mkdtemp(prefix="crjob-munge-")
        try:
            os.chmod(self.dir, 0o755)	# clients of any uid reach the socket
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            keydir = os.path.join(self.dir, "etc")
            os.mkdir(keydir, 0o700)
            os.chown(keydir, pw.pw_uid, pw.pw_gid)
            key = os.path.join(keydir, "munge.key")
            with open(key, "wb") as f:
                f.write(os.urandom(1024))
            os.chmod(key, 0o400)
            os.chown(key, pw.pw_uid, pw.pw_gid)
            self.socket = os.path.join(self.dir, "munge.socket")
            self.pid = rt.spawn(
                [shutil.which("setpriv"), "--reuid=munge", "--regid=munge", "--init-groups",
                 shutil.which("munged"), "--foreground", "--key-file", key,
                 "--socket", self.socket, "--pid-file", os.path.join(self.dir, "munged.pid"),
                 "--log-file", os.path.join(self.dir, "munged.log"),
                 "--seed-file", os.path.join(self.dir, "munged.seed"), "--num-threads", "2"],
                out=os.path.join(self.dir, "munged.out"))
            deadline = time.time() + timeout
            while not os.path.exists(self.socket):
                if gone(self.pid) or time.time() > deadline:
                    raise AssertionError(f"munged did not start: {self.log()}")
                time.sleep(0.01)
        except BaseException:
            self.stop()
            raise
        return self

    def log(self):
        out = ""
        for n in ("munged.out", "munged.log"):
            try:
                with open(os.path.join(self.dir, n), errors="replace") as f:
                    out += f.read()[-1000:]
            except (OSError, TypeError):
                pass
        return out

    def stop(self):
        rt = runner()
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if rt.wait_for(self.pid, 5) is None:
                rt.kill_tree(self.pid)
            self.pid = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


def new_munged():
    """a started private munged: tests/munge.py's Munged when there, else ours"""
    try:
        import munge  # noqa: F401  (tests/munge.py, branch agent)
        return munge.Munged().start()
    except ImportError:
        return _Munged().start()


# ------------------------------------------------------------------ the job

class Job:
    """One run of tests/cluster/job: a rank tree per job node, node k on host hosts[k]."""

    def __init__(self, cluster, name, hosts, ranks, rounds, round_ms, extra, user=None):
        self.c = cluster
        self.user = user
        self.name = name
        self.hosts = list(hosts)
        self.ranks = ranks
        self.rounds = rounds
        self.out = os.path.join(cluster.work, name)
        os.makedirs(self.out)
        os.chmod(self.out, 0o777)
        self.addrs = [cluster.addr(h) for h in self.hosts]	# the job's own view, fixed
        self.roots = {}
        self.log_from = {}
        prog = os.path.join(cluster.env.builddir, "tests", "cluster", "job")
        assert os.access(prog, os.X_OK), f"{prog} is not built (make check or make {prog})"
        for k, h in enumerate(self.hosts):
            argv = [prog, "--node", str(k), "--addrs", ",".join(self.addrs),
                    "--ranks", str(ranks), "--rounds", str(rounds),
                    "--round-ms", str(round_ms), "--port", str(JOB_PORT),
                    "--out", self.out] + list(extra)
            if user is not None:
                # nsenter needs root: it enters the namespace, setpriv drops to user
                argv = [shutil.which("setpriv"), f"--reuid={user}", f"--regid={user}",
                        "--clear-groups"] + argv
            self.roots[k] = cluster.spawn(argv, host=h, out=self.log_path(k))
            cluster.trees.append(self.roots[k])

    def log_path(self, k):
        return os.path.join(self.out, f"log.node{k}")

    def logs(self, limit=1500):
        s = ""
        for k in self.roots:
            try:
                with open(self.log_path(k), errors="replace") as f:
                    t = f.read()
            except OSError:
                t = ""
            s += f"\n--- node {k} (host {self.hosts[k]}):\n{t[-limit:]}"
        return s

    def progress(self, k):
        try:
            with open(os.path.join(self.out, f"progress.node{k}")) as f:
                return int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            return 0

    def min_progress(self):
        return min(self.progress(k) for k in self.roots)

    def tree(self, k):
        """every pid of job node k's rank tree"""
        return runner().descendants(self.roots[k])

    def check_alive(self):
        for k, pid in self.roots.items():
            assert not gone(pid), f"node {k}'s rank tree died: {self.logs()}"

    def wait_progress(self, rounds, timeout=60):
        """every node past round `rounds` (absolute) while all trees live"""
        deadline = time.time() + timeout
        while self.min_progress() < rounds:
            self.check_alive()
            assert time.time() < deadline, \
                f"the job does not progress: {[self.progress(k) for k in self.roots]}" \
                f"{self.logs()}"
            time.sleep(0.05)

    def wait_moving(self, more=5, timeout=60):
        """every node does `more` rounds more than now"""
        self.wait_progress(self.min_progress() + more, timeout)

    def wait_done(self, timeout=120):
        """every root exits 0 (if we can see its status) and writes the same RESULT"""
        rt = runner()
        deadline = time.time() + timeout
        codes = {}
        for k, pid in self.roots.items():
            while True:
                rt.reap_some()
                if pid in rt.reaped:
                    codes[k] = rt.exit_code(rt.reaped.pop(pid))
                    break
                if not rt.alive(pid):	# reaped by another subreaper (an agent)
                    break
                if time.time() > deadline:
                    raise AssertionError(
                        f"the job did not finish: rounds {[self.progress(i) for i in self.roots]}"
                        f"{self.logs()}")
                time.sleep(0.05)
        bad = {k: v for k, v in codes.items() if v != 0}
        assert not bad, f"rank trees failed {bad}:{self.logs()}"
        results = {}
        for k in self.roots:
            try:
                with open(os.path.join(self.out, f"result.node{k}")) as f:
                    results[k] = f.read().strip()
            except OSError:
                results[k] = None
        assert all(r and r.startswith("RESULT ") for r in results.values()), \
            f"missing results {results}:{self.logs()}"
        assert len(set(results.values())) == 1, f"nodes disagree: {results}"
        for k in self.roots:
            with open(self.log_path(k), errors="replace") as f:
                f.seek(self.log_from.get(k, 0))
                log = f.read()
            assert "FAIL" not in log, f"node {k} reports a failure: {log[-1500:]}"
        return results[0].split()[1]

    def wait_gone(self, timeout=10):
        """every tree has ended (killed by a dump, --stop, ...); their statuses are
        dropped, so that wait_done() sees the restored trees' own"""
        rt = runner()
        deadline = time.time() + timeout
        for k, pid in self.roots.items():
            while not gone(pid):
                assert time.time() < deadline, f"node {k}'s tree is still there"
                time.sleep(0.02)
            rt.reaped.pop(pid, None)

    def kill(self):
        """kill every tree (nodes failing) and forget their statuses.  Every process
        is stopped first, so that none logs its peers' resets; what the logs say
        from here on is the next incarnation's (see wait_done)."""
        rt = runner()
        pids = [p for root in self.roots.values() for p in rt.descendants(root)]
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for p in pids:
                try:
                    os.kill(p, sig)
                except ProcessLookupError:
                    pass
        for pid in self.roots.values():
            if not gone(pid):
                rt.kill_tree(pid)
        self.wait_gone()
        self.mark_logs()

    def mark_logs(self):
        """wait_done() looks for failures only in what the logs get after this"""
        for k in self.roots:
            try:
                self.log_from[k] = os.path.getsize(self.log_path(k))
            except OSError:
                pass


# ------------------------------------------------------------------ the cluster

class Cluster:
    _count = 0

    def __init__(self, env, n_nodes, spare=0):
        """n_nodes hosts for the job and `spare` more to move it to"""
        self.env = env
        self.n = n_nodes
        self.trees = []		# roots of rank trees ever started or restored
        self.pids = {}		# other processes we started: pid -> start time
        self.mounts = []
        self.jobs = []
        self.hosts = None
        self.munged = None
        self.agents = {}	# host -> pid
        self.agent_logs = {}
        self.coord_pid = None
        self.coord_log = None
        self.store = None
        Cluster._count += 1
        self.work = tempfile.mkdtemp(prefix="crjob-cluster-")
        os.chmod(self.work, 0o755)	# other uids (auth tests) reach the store
        try:
            self._network(n_nodes + spare)
        except BaseException:
            self.destroy()
            raise

    # -------------------------------------------------------------- network
    def _network(self, n):
        routes = _ip("-4", "route", "show") + _ip("-4", "addr", "show")
        base = os.getpid() % 250
        for i in range(250):
            x = (base + i) % 250 + 1
            if f"10.251.{x}." not in routes:
                break
        else:
            raise AssertionError("no free subnet 10.251.X.0/24")
        # unique among concurrent runs (interface names: at most 15 characters)
        tag = f"c{os.getpid() % 100000}x{Cluster._count % 100}"
        self.hosts = nethosts.Hosts(0, tag=tag)
        self.hosts.subnet = f"10.251.{x}"
        for _ in range(n):
            self.hosts.add()
        self.gateway = f"10.251.{x}.254"
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.hosts.bridge)

    def addr(self, host):
        return self.hosts.addrs[host]

    def netns(self, host):
        return self.hosts.path(host)

    def argv(self, host, argv):
        """argv inside host's network namespace (nsenter --net, nothing else changed)"""
        return self.hosts.argv(host, argv)

    def spawn(self, argv, host=None, out=None, user=None, env=None):
        if host is not None:
            argv = self.argv(host, argv)
        return runner().spawn(argv, cwd=self.work, out=out, user=user, env=env)

    def track(self, pid):
        """pid is ours to kill at destroy() (if it is still the same process)"""
        self.pids[pid] = _start_time(pid)

    def run(self, argv, host=None, timeout=120):
        if host is not None:
            argv = self.argv(host, argv)
        return runner().run(argv, timeout=timeout)

    def net_of(self, pid):
        """the host whose namespace pid is in, or None"""
        try:
            ino = os.stat(f"/proc/{pid}/ns/net").st_ino
        except OSError:
            return None
        for h in range(len(self.hosts.names)):
            if os.stat(self.netns(h)).st_ino == ino:
                return h
        return None

    # -------------------------------------------------------------- the job
    def start_job(self, hosts=None, ranks=2, rounds=300, round_ms=50, extra=(), name=None,
                  user=None):
        """the test job, a rank tree per host of hosts (the first n by default), run as
        uid user (root by default)"""
        hosts = list(range(self.n)) if hosts is None else hosts
        job = Job(self, name or f"job{len(self.jobs)}", hosts, ranks, rounds, round_ms, extra,
                  user)
        self.jobs.append(job)
        return job

    # -------------------------------------------------------------- crd
    def crd(self, host, *args, timeout=180, check=True):
        r = self.run([self.env.crd] + list(args), host=host, timeout=timeout)
        if check:
            assert r.code == 0, \
                f"crd {' '.join(args)} on host {host} failed ({r.code}): {r.out[-3000:]}"
        return r

    def locks(self, host):
        """names of crd's network lock tables in host's namespace"""
        r = _nft(self.netns(host), "list", "tables")
        return {ln.split()[-1] for ln in r.stdout.splitlines() if "crd_lock_" in ln}

    # -------------------------------------------------------------- distributed layer
    def start_munged(self):
        if not self.munged:
            try:
                pwd.getpwnam("munge")
            except KeyError:
                raise unittest.SkipTest("no user munge (apt-get install munge)")
            if not shutil.which("munged"):
                raise unittest.SkipTest("munged is not installed (apt-get install munge)")
            self.munged = new_munged()
        return self.munged.socket

    def make_store(self, tmpfs_size=None):
        """the job's shared store; a tmpfs of tmpfs_size (e.g. "8m") to fill it on purpose"""
        self.store = os.path.join(self.work, "store")
        os.makedirs(self.store, exist_ok=True)
        os.chmod(self.store, 0o755)
        if tmpfs_size:
            r = runner().run([shutil.which("mount"), "-t", "tmpfs", "-o",
                              f"size={tmpfs_size},mode=0755", "crjob-test-store", self.store])
            assert r.code == 0, f"mount tmpfs: {r.out}"
            self.mounts.append(self.store)
        return self.store

    def start_agents(self, hosts=None, extra=()):
        """one crjob-agent per host, in its namespace; waits until each listens"""
        agent = need(self.env, "crjob-agent", "agent")
        sock = self.start_munged()
        if not self.store:
            self.make_store()
        hosts = list(range(len(self.hosts.names))) if hosts is None else hosts
        for h in hosts:
            self.start_agent(h, agent, sock, extra)
        for h in hosts:
            self.wait_listening(self.addr(h), AGENT_PORT, self.agents[h],
                                lambda h=h: self.agent_log(h))

    def start_agent(self, h, agent=None, sock=None, extra=()):
        agent = agent or need(self.env, "crjob-agent", "agent")
        sock = sock or self.start_munged()
        log = os.path.join(self.work, f"agent.host{h}.log")
        self.agent_logs[h] = log
        argv = [agent, "--listen", f"{self.addr(h)}:{AGENT_PORT}", "--store", self.store,
                "--crd", self.env.crd, "--munge-socket", sock, "--name", f"node{h}",
                "--log", log] + list(extra)
        self.agents[h] = self.spawn(argv, host=h, out=log + ".out")
        self.track(self.agents[h])
        return self.agents[h]

    def agent_log(self, h):
        s = ""
        for p in (self.agent_logs.get(h), (self.agent_logs.get(h) or "") + ".out"):
            try:
                with open(p, errors="replace") as f:
                    s += f.read()[-1500:]
            except (OSError, TypeError):
                pass
        return s

    def kill_agent(self, h):
        """SIGKILL host h's agent; what it ran (crd, hooks) comes to us and is
        killed at destroy() if it has not ended by then"""
        pid = self.agents.pop(h)
        for p in runner().descendants(pid):
            if p != pid:
                self.track(p)
        os.kill(pid, signal.SIGKILL)
        runner().wait_for(pid, 10)

    def wait_listening(self, ip, port, pid, log, timeout=20):
        deadline = time.time() + timeout
        while True:
            try:
                with socket.create_connection((ip, port), timeout=0.5):
                    return
            except OSError:
                pass
            assert not gone(pid), f"{ip}:{port}: the server died: {log()}"
            assert time.time() < deadline, f"nothing listens on {ip}:{port}: {log()}"
            time.sleep(0.05)

    def node_spec(self, job, k, host=None):
        """NAME,AGENT_HOST:PORT,IP,PID of job node k (on host, by default where it runs)"""
        h = job.hosts[k] if host is None else host
        return f"node{h},{self.addr(h)}:{AGENT_PORT},{self.addr(h)},{job.roots[k]}"

    def start_coord(self, job, job_id, extra=()):
        """crjob-coord for job in the machine's namespace (--owner UID when the job runs
        as a user); waits for STORE/coord/JOB_ID"""
        coord = need(self.env, "crjob-coord", "coord")
        sock = self.start_munged()
        if not self.store:
            self.make_store()
        with socket.socket() as s:	# a free port on the bridge
            s.bind((self.gateway, 0))
            port = s.getsockname()[1]
        self.coord_log = os.path.join(self.work, f"coord.{job_id}.log")
        argv = [coord, "--job", str(job_id), "--store", self.store,
                "--listen", f"{self.gateway}:{port}", "--munge-socket", sock,
                "--log", self.coord_log]
        for k in job.roots:
            argv += ["--node", self.node_spec(job, k)]
        if job.user is not None:
            argv += ["--owner", str(job.user)]
        self.coord_pid = self.spawn(argv + list(extra), out=self.coord_log + ".out")
        self.track(self.coord_pid)
        cfile = os.path.join(self.store, "coord", str(job_id))
        deadline = time.time() + 20
        while not os.path.exists(cfile):
            assert not gone(self.coord_pid), f"crjob-coord died: {self.coord_logs()}"
            assert time.time() < deadline, f"crjob-coord wrote no {cfile}: {self.coord_logs()}"
            time.sleep(0.05)
        return self.coord_pid

    def coord_addr(self, job_id):
        with open(os.path.join(self.store, "coord", str(job_id))) as f:
            return f.read().split()[0]

    def coord_logs(self):
        s = ""
        for p in (self.coord_log, (self.coord_log or "") + ".out"):
            try:
                with open(p, errors="replace") as f:
                    s += f.read()[-2000:]
            except (OSError, TypeError):
                pass
        return s

    def crjob_argv(self, *args, uid=None):
        crjob = need(self.env, "crjob", "crjob")
        argv = [crjob, "--store", self.store, "--munge-socket", self.start_munged()] + \
            [str(a) for a in args]
        if uid is not None:
            argv = [shutil.which("setpriv"), f"--reuid={uid}", f"--regid={uid}",
                    "--clear-groups"] + argv
        return argv

    def crjob(self, *args, uid=None, timeout=180):
        """run crjob in the machine's namespace; a Result (code, out)"""
        return runner().run(self.crjob_argv(*args, uid=uid), timeout=timeout)

    def crjob_async(self, *args, out):
        pid = runner().spawn(self.crjob_argv(*args), cwd=self.work, out=out)
        self.track(pid)
        return pid

    # -------------------------------------------------------------- teardown
    def destroy(self):
        rt = runner()
        errors = []
        # by PID, and only if the PID is still ours: a rank tree is in one of our
        # namespaces (restored ones have new start times), others have the start
        # time we saw
        ours = [p for p in self.trees if self.hosts and self.net_of(p) is not None]
        ours += [p for p, t in self.pids.items() if _start_time(p) == t]
        for pid in ours:
            try:
                if not gone(pid):
                    rt.kill_tree(pid)
            except Exception as e:	# go on: everything else must still go
                errors.append(f"kill {pid}: {e}")
        self.trees, self.pids, self.agents = [], {}, {}
        # crd processes an agent left (killed agent: they come to us)
        rt.reap_some()
        if self.munged:
            try:
                self.munged.stop()
            except Exception as e:
                errors.append(f"munged: {e}")
            self.munged = None
        if self.hosts:
            for h in range(len(self.hosts.names)):
                for t in self.locks(h):
                    _nft(self.netns(h), "delete", "table", "inet", t)
        for job in self.jobs:
            for pid in job.roots.values():
                # a tree dumped and never restored leaves its lock here too
                _nft(None, "delete", "table", "inet", f"crd_lock_{pid}")
                for f in glob.glob(f"/dev/shm/crjob-job-{pid}-node*"):
                    os.unlink(f)
        for m in reversed(self.mounts):
            r = subprocess.run([shutil.which("umount"), m], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
            if r.returncode:
                errors.append(f"umount {m}: {r.stdout.strip()}")
        self.mounts = []
        if self.hosts:
            self.hosts.destroy()
            self.hosts = None
        if os.environ.get("CRJOB_TEST_KEEP"):
            print(f"kept {self.work} (CRJOB_TEST_KEEP)", file=sys.stderr)
        else:
            shutil.rmtree(self.work, ignore_errors=True)
        if errors:
            raise AssertionError("cluster teardown: " + "; ".join(errors))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.destroy()


# ------------------------------------------------------------------ by hand

def main():
    """Bring a cluster up by hand, print how to reach it, tear it down on Ctrl-C."""
    import argparse
    import types

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--builddir", default=os.getcwd())
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--spare", type=int, default=0, help="more nodes to move the job to")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3000)
    ap.add_argument("--round-ms", type=int, default=100)
    ap.add_argument("--no-job", action="store_true")
    ap.add_argument("--agents", action="store_true", help="a crjob-agent on every node")
    ap.add_argument("--coord", metavar="JOBID", help="and a crjob-coord for the job")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root")
    env = types.SimpleNamespace(builddir=os.path.abspath(a.builddir),
                                srcdir=os.path.dirname(TESTS))
    env.crd = os.path.join(env.builddir, "crd", "crd")
    runner()
    c = Cluster(env, a.nodes, spare=a.spare)
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        job = None
        if a.agents or a.coord:
            c.make_store()
            c.start_agents()
        if not a.no_job:
            job = c.start_job(ranks=a.ranks, rounds=a.rounds, round_ms=a.round_ms)
            job.wait_progress(1)
        if a.coord and job:
            c.start_coord(job, a.coord)
        print(f"bridge {c.hosts.bridge} {c.gateway}/24, work {c.work}")
        for h in range(len(c.hosts.names)):
            print(f"  host {h}: {c.addr(h)} netns {c.netns(h)}"
                  + (f" agent pid {c.agents[h]}" if h in c.agents else ""))
        if job:
            for k, pid in job.roots.items():
                print(f"  job node {k}: root pid {pid} on host {job.hosts[k]}")
            print(f"  job output (progress.nodeK, result.nodeK, log.nodeK): {job.out}")
        if c.munged:
            print(f"  munge socket {c.munged.socket}, store {c.store}")
        if c.coord_pid:
            print(f"  coordinator pid {c.coord_pid}: crjob --store {c.store} "
                  f"--munge-socket {c.munged.socket} status {a.coord}")
        print(f"  e.g. nsenter --net={c.netns(0)} {env.crd} dump -t PID -D DIR "
              f"--keep-net-locked")
        print("Ctrl-C tears everything down", flush=True)
        while not stop:
            runner().reap_some()
            time.sleep(0.2)
    finally:
        c.destroy()


if __name__ == "__main__":
    main()
