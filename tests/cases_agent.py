"""crjob-agent (agent/): a real agent driven with tests/rpc/rpc_send, on memgen trees.

Each case starts its own munged (tests/munge.py) and agent, and stops them by
PID; trees are killed by PID; the runner removes the case's directory.
"""
import os
import re
import shutil
import signal
import stat
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import munge  # noqa: E402

_runner = sys.modules["__main__"]
NOBODY = 65534


class Memgen:
    """tests/store/memgen in its own directory: a process whose memory has generations"""

    def __init__(self, env, name, mib=8, user=None):
        self.work = os.path.join(env.tmpdir, name)
        os.makedirs(self.work)
        self.log = os.path.join(self.work, "out.log")
        if user:
            for d in (os.path.dirname(env.tmpdir), env.tmpdir):
                os.chmod(d, 0o755)
            os.chown(self.work, user, user)
        prog = os.path.join(env.builddir, "tests", "store", "memgen")
        self.pid = _runner.spawn([prog, str(mib), "2"], cwd=self.work, out=self.log, user=user)
        self.gen = 0
        deadline = time.time() + 60
        while not os.path.exists(os.path.join(self.work, "ready")):
            assert time.time() < deadline and _runner.alive(self.pid), "memgen did not start"
            time.sleep(0.01)

    def gens(self):
        try:
            with open(os.path.join(self.work, "gens")) as f:
                return len(f.read().split("\n")) - 1
        except OSError:
            return 0

    def mutate(self):
        self.gen += 1
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.time() + 60
        while self.gens() < self.gen:
            assert time.time() < deadline and _runner.alive(self.pid), "memgen did not mutate"
            time.sleep(0.005)

    def verify(self, want):
        """SIGUSR2: the process checks its memory, prints "verified G" and exits.  A
        restored one is the agent's child (it reaps it): its output tells."""
        os.kill(self.pid, signal.SIGUSR2)
        deadline = time.time() + 60
        while _runner.alive(self.pid):
            assert time.time() < deadline, "memgen did not finish its verification"
            time.sleep(0.01)
        with open(self.log) as f:
            out = f.read()
        assert out.strip().split("\n")[-1] == f"verified {want}", \
            f"memory of the wrong generation, or damaged: {out[-300:]}"

    def kill(self):
        if _runner.alive(self.pid):
            _runner.kill_tree(self.pid)
        deadline = time.time() + 10
        while _runner.alive(self.pid) and time.time() < deadline:
            time.sleep(0.005)
        _runner.reap_some()
        _runner.reaped.pop(self.pid, None)


class Agent:
    """crjob-agent on 127.0.0.1 (a port of its choice), with its own munged and store"""

    def __init__(self, env, *extra, max_parallel=4, environ=None):
        self.env = env
        self.munged = munge.Munged().start()
        self.store = os.path.join(env.tmpdir, "store")
        os.makedirs(self.store, exist_ok=True)
        os.chmod(env.tmpdir, 0o755)
        n = len([f for f in os.listdir(env.tmpdir) if f.startswith("agent")])
        self.log = os.path.join(env.tmpdir, f"agent{n}.log")
        exe = os.path.join(env.builddir, "agent", "crjob-agent")
        argv = [exe, "--listen", "127.0.0.1:0", "--store", self.store,
                "--munge-socket", self.munged.socket, "--name", "n0"]
        if "--config" not in extra:
            argv += ["--config", "/dev/null"]	# not the machine's /etc/crjob/agent.conf
        if max_parallel:
            argv += ["--max-parallel", str(max_parallel)]
        self.pid = _runner.spawn(argv + list(extra), out=self.log,
                                 env=dict(os.environ, **(environ or {})))
        deadline = time.time() + 30
        while not re.search(r"\(port (\d+)\)", self.logtext()):
            if time.time() > deadline or not _runner.alive(self.pid):
                out = self.logtext()
                self.stop()
                raise AssertionError(f"the agent did not start: {out[-2000:]}")
            time.sleep(0.01)
        self.addr = "127.0.0.1:" + re.search(r"\(port (\d+)\)", self.logtext()).group(1)

    def logtext(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def call(self, op, *kv, user=None, timeout=120):
        """rpc_send OP KEY=VALUE...; (exit code, {error, message, trees: [...]}, output)"""
        argv = [os.path.join(self.env.builddir, "tests", "rpc", "rpc_send"),
                "--munge-socket", self.munged.socket, self.addr, op] + list(kv)
        if user is not None:
            argv = [shutil.which("setpriv"), f"--reuid={user}", f"--regid={user}",
                    "--clear-groups"] + argv
        r = _runner.run(argv, timeout=timeout)
        rep = {"trees": [], "out": r.out}
        for line in r.out.splitlines():
            w = line.split(" ", 1)
            if w[0] == "error":
                rep["error"] = int(w[1])
            elif w[0] == "message":
                rep["message"] = w[1]
            elif w[0] == "generation":
                rep["generation"] = int(w[1])
            elif w[0] == "tree":
                t = line.split()
                rep["trees"].append({"pid": int(t[1]), "writer": t[3], "bytes": int(t[5]),
                                     "cpuset": t[7]})
            elif w[0] == "event":
                rep.setdefault("events", []).append(line)
            elif w[0] == "node" and " agent " in line:
                rep["node"] = line
        return r.code, rep

    def ok(self, op, *kv, **kw):
        code, rep = self.call(op, *kv, **kw)
        assert code == 0 and rep.get("error") == 0, f"{op} failed ({code}): {rep['out']}"
        return rep

    def stop(self):
        if self.pid and _runner.alive(self.pid):
            os.kill(self.pid, signal.SIGTERM)
            if _runner.wait_for(self.pid, 40) is None:
                _runner.kill_tree(self.pid)
        self.pid = None
        self.munged.stop()


def crd(env, *args):
    return _runner.run([env.crd] + list(args), timeout=300)


def commit(env, store, job, gen, writers):
    args = ["store", "commit", job, str(gen), "--store", store]
    for w in writers:
        args += ["--writer", w]
    r = crd(env, *args)
    assert r.code == 0, f"commit failed: {r.out}"


def gens_of(env, store, job):
    r = crd(env, "store", "ls", job, "--store", store)
    return [int(l.split()[1]) for l in r.out.splitlines()[1:] if l.split()[:1] == [job]]


def checkpoint(a, job, trees, gen, *extra):
    tree_args = [f"tree={t.pid}" for t in trees]
    rep = a.ok("FREEZE", f"job={job}", f"gen={gen}", "deadline=30000", *tree_args, *extra)
    assert rep["generation"] == gen and len(rep["trees"]) == len(trees), rep["out"]
    assert all(t["cpuset"] != "-" for t in rep["trees"]), f"no binding recorded: {rep['out']}"
    rep = a.ok("DUMP", f"job={job}")
    assert all(t["bytes"] > 1 << 20 for t in rep["trees"]), f"bytes: {rep['out']}"
    return rep


def freeze_dump_thaw(env):
    """FREEZE+DUMP+THAW of 2 running trees, one writing at a time: a generation the
    coordinator commits, which restores exactly; the trees ran on; job dir 0700"""
    a = Agent(env, max_parallel=1)
    ms = []
    try:
        ms = [Memgen(env, "w1"), Memgen(env, "w2")]
        rep = checkpoint(a, "j", ms, 1)
        assert [t["writer"] for t in rep["trees"]] == [f"n0-{m.pid}" for m in ms], rep["out"]
        a.ok("THAW", "job=j")
        st = os.stat(os.path.join(a.store, "jobs", "j"))
        assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == 0, "job directory mode"
        commit(env, a.store, "j", 1, [t["writer"] for t in rep["trees"]])
        assert gens_of(env, a.store, "j") == [1]
        for m in ms:
            assert _runner.alive(m.pid), "a tree did not survive its checkpoint"
            m.mutate()
        for m in ms:
            m.kill()
            r = crd(env, "restore", "--store", a.store, "--job", "j", "--writer",
                    f"n0-{m.pid}", "--detach")
            assert r.code == 0, f"restore of {m.pid} failed: {r.out}"
            m.verify(0)
        log = a.logtext()
        assert "THAW done: ok" in log, log[-2000:]
        # max_parallel 1: the second tree writes only once the first is written
        steps = re.findall(r"tree (\d+) (writes|written)", log)
        assert [s[1] for s in steps] == ["writes", "written"] * 2 and \
            steps[0][0] == steps[1][0] and steps[2][0] == steps[3][0], f"order: {steps}"
    finally:
        for m in ms:
            m.kill()
        a.stop()


def abort_runs_on(env):
    """FREEZE+DUMP then ABORT: the trees run on unharmed, no generation is committed"""
    a = Agent(env)
    m = None
    try:
        m = Memgen(env, "w1")
        checkpoint(a, "j", [m], 1)
        a.ok("ABORT", "job=j")
        assert _runner.alive(m.pid), "ABORT killed the tree"
        assert _runner.proc_status(m.pid, "TracerPid") == "0", "the tree is still traced"
        assert gens_of(env, a.store, "j") == [], "a generation appeared"
        part = os.path.join(a.store, "jobs", "j", "gen-1.partial")
        left = os.listdir(part) if os.path.isdir(part) else []
        assert not [f for f in left if f.startswith(f"n0-{m.pid}.")], f"images left: {left}"
        # the agent serves the job again
        checkpoint(a, "j", [m], 2)
        a.ok("ABORT", "job=j")
        m.mutate()
        m.verify(1)
    finally:
        if m:
            m.kill()
        a.stop()


def restore_resume(env):
    """checkpoint with stop (the tree is killed after), then RESTORE+RESUME on the agent:
    the restored tree runs from its generation, bound as dumped, network unlocked"""
    a = Agent(env)
    m = None
    try:
        m = Memgen(env, "w1")
        m.mutate()
        rep = checkpoint(a, "j", [m], 1, "stop=1")
        tree = rep["trees"][0]
        a.ok("THAW", "job=j")
        deadline = time.time() + 10
        while _runner.alive(m.pid):
            assert time.time() < deadline, "stop: the tree was not killed"
            time.sleep(0.01)
        m.kill()
        commit(env, a.store, "j", 1, [tree["writer"]])
        rep = a.ok("RESTORE", "job=j", "gen=1", "node=n0", "remap=10.9.0.1=10.9.0.2",
                   f"tree={m.pid}:{tree['writer']}:0")
        assert rep["trees"][0]["pid"] == m.pid, rep["out"]
        assert _runner.proc_status(m.pid, "State").startswith(("t", "T")), \
            f"not held stopped: {_runner.proc_status(m.pid, 'State')}"
        a.ok("RESUME", "job=j")
        fds = [os.readlink(f"/proc/{m.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{m.pid}/fd")]
        assert not [f for f in fds if f.startswith(("socket:", "pipe:"))], \
            f"the agent's hook or pipe leaked into the restored tree: {fds}"
        assert _runner.proc_status(m.pid, "Cpus_allowed_list") == "0", \
            f"binding: {_runner.proc_status(m.pid, 'Cpus_allowed_list')}"
        m.verify(1)
    finally:
        if m:
            m.kill()
        a.stop()


def restore_kill(env):
    """RESTORE then KILL (the coordinator's cleanup): the restored tree is gone"""
    a = Agent(env)
    m = None
    try:
        m = Memgen(env, "w1")
        rep = checkpoint(a, "j", [m], 1, "stop=1")
        a.ok("THAW", "job=j")
        m.kill()
        commit(env, a.store, "j", 1, [rep["trees"][0]["writer"]])
        a.ok("RESTORE", "job=j", f"tree={m.pid}")
        assert _runner.alive(m.pid), "not restored"
        a.ok("KILL", "job=j")
        deadline = time.time() + 10
        while _runner.alive(m.pid):
            assert time.time() < deadline, "KILL left the restored tree"
            time.sleep(0.01)
    finally:
        if m:
            m.kill()
        a.stop()


def refused_requests(env):
    """another uid may not freeze root's tree nor act as root; a user's own tree is
    fine; allow_users; a missing tree; each refusal logged, the agent serves on"""
    a = Agent(env, "--allow-users", f"{NOBODY}")
    ms = []
    try:
        root_tree = Memgen(env, "w1")
        ms.append(root_tree)
        code, rep = a.call("FREEZE", "job=j", f"tree={root_tree.pid}", user=NOBODY)
        assert code == 1 and rep["error"] == -1, f"nobody froze root's tree: {rep['out']}"
        assert "not owner 65534" in rep["message"], rep["out"]
        code, rep = a.call("FREEZE", "job=j", "owner=0", f"tree={root_tree.pid}", user=NOBODY)
        assert code == 1 and "may not act for owner uid 0" in rep["message"], rep["out"]
        # root is not in allow_users: refused even to root
        code, rep = a.call("FREEZE", "job=j", f"tree={root_tree.pid}")
        assert code == 1 and "allow_users" in rep["message"], rep["out"]
        code, rep = a.call("FREEZE", "job=j", "tree=999999", f"owner={NOBODY}")
        assert code == 1 and "no such process" in rep["message"], rep["out"]
        assert _runner.proc_status(root_tree.pid, "TracerPid") == "0"
        log = a.logtext()
        assert log.count("refused FREEZE of job j") >= 4, log[-3000:]
        assert "not in allow_users" in log and "may not act for owner uid 0" in log
        # a process whose main thread is nobody's but another thread still root's
        work = os.path.join(env.tmpdir, "mixed")
        os.mkdir(work)
        os.chown(work, NOBODY, NOBODY)
        mixed = _runner.spawn([shutil.which("python3"), "-c",
                               "import ctypes, threading, time\n"
                               "threading.Thread(target=time.sleep, args=(600,),"
                               " daemon=True).start()\n"
                               "ctypes.CDLL(None).syscall(117, 65534, 65534, 65534)\n"
                               "open('ready', 'w').close()\n"
                               "time.sleep(600)\n"], cwd=work)
        try:
            deadline = time.time() + 30
            while not os.path.exists(os.path.join(work, "ready")):
                assert time.time() < deadline and _runner.alive(mixed), "helper did not start"
                time.sleep(0.01)
            assert _runner.proc_status(mixed, "Uid") == "65534\t65534\t65534\t65534"
            code, rep = a.call("FREEZE", "job=m", f"tree={mixed}", user=NOBODY)
            assert code == 1 and "(thread " in rep["message"] and "has uids 0 0 0 0" in \
                rep["message"], f"a thread of root's was frozen for nobody: {rep['out']}"
        finally:
            _runner.kill_tree(mixed)
        # nobody's own tree: accepted, and its job directory is nobody's
        own = Memgen(env, "w2", user=NOBODY)
        ms.append(own)
        a.ok("FREEZE", "job=k", f"tree={own.pid}", "deadline=30000", user=NOBODY)
        st = os.stat(os.path.join(a.store, "jobs", "k"))
        assert st.st_uid == NOBODY and stat.S_IMODE(st.st_mode) == 0o700, "job dir owner"
        # nobody may not touch root's job, and root may abort nobody's
        code, rep = a.call("ABORT", "job=k", user=0)
        assert code == 0, rep["out"]
        own.mutate()
        own.verify(1)
    finally:
        for m in ms:
            m.kill()
        a.stop()


def garbage_frame(env):
    """a valid credential around bytes that are not a Msg: that connection is closed and
    logged, the agent serves the next request"""
    a = Agent(env)
    try:
        r = _runner.run([os.path.join(env.builddir, "tests", "rpc", "rpc_send"),
                         "--munge-socket", a.munged.socket, "--garbage", a.addr])
        assert r.code == 0 and "closed" in r.out, f"garbage answered: {r.out}"
        rep = a.ok("PING")
        assert "topology cores=" in rep["node"], rep["out"]
        assert "not a Msg" in a.logtext(), a.logtext()[-2000:]
        # another munged's key: rejected the same way
        other = munge.Munged().start()
        try:
            r = _runner.run([os.path.join(env.builddir, "tests", "rpc", "rpc_send"),
                             "--munge-socket", other.socket, a.addr, "PING"])
            assert r.code == 3, f"a credential of another key was answered: {r.out}"
        finally:
            other.stop()
        a.ok("PING")
        assert "bad credential" in a.logtext(), a.logtext()[-2000:]
    finally:
        a.stop()


def dump_failure(env):
    """a tree crd cannot dump (a netlink socket): DUMP fails naming the tree and crd's
    cause (also in its log under --crd-logs), ABORT lets both trees run on, and the job
    can be checkpointed again"""
    logs = os.path.join(env.tmpdir, "crd-logs")
    os.mkdir(logs)
    a = Agent(env, "--crd-logs", logs)
    m, bad = None, None
    try:
        m = Memgen(env, "w1")
        work = os.path.join(env.tmpdir, "bad")
        os.mkdir(work)
        bad = _runner.spawn([shutil.which("python3"), "-c",
                             "import socket, time\n"
                             "s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)\n"
                             "open('ready', 'w').close()\n"
                             "time.sleep(600)\n"], cwd=work)
        deadline = time.time() + 30
        while not os.path.exists(os.path.join(work, "ready")):
            assert time.time() < deadline and _runner.alive(bad), "helper did not start"
            time.sleep(0.01)
        a.ok("FREEZE", "job=j", "gen=1", f"tree={m.pid}", f"tree={bad}")
        code, rep = a.call("DUMP", "job=j")
        msg = rep.get("message", "")
        assert code == 1 and f"tree {bad}" in msg and "unsupported file type" in msg, rep["out"]
        with open(os.path.join(logs, f"j-gen1-{bad}-dump.log")) as f:
            assert "unsupported file type" in f.read(), "crd's log not kept in --crd-logs"
        a.ok("ABORT", "job=j")
        for pid in (m.pid, bad):
            assert _runner.alive(pid), f"tree {pid} died"
            assert _runner.proc_status(pid, "TracerPid") == "0", f"tree {pid} still traced"
        assert gens_of(env, a.store, "j") == []
        checkpoint(a, "j", [m], 2)
        a.ok("ABORT", "job=j")
        m.mutate()
        m.verify(1)
    finally:
        if m:
            m.kill()
        if bad:
            _runner.kill_tree(bad)
        a.stop()


SLOW_CRD = """#!/usr/bin/env python3
# a crd dump that takes its time to freeze (SLOW_CRD_S) and to write (SLOW_DUMP_S),
# asking its action script at post-freeze and post-dump like crd does
import os, subprocess, sys, time
a = sys.argv
script, pid = a[a.index("--action-script") + 1], a[a.index("-t") + 1]
for action, var, default in (("post-freeze", "SLOW_CRD_S", "1"),
                             ("post-dump", "SLOW_DUMP_S", "0")):
    time.sleep(float(os.environ.get(var, default)))
    env = dict(os.environ, CRD_ACTION=action, CRD_PID=pid)
    if subprocess.call([script, action], env=env, pass_fds=(3,)):
        sys.exit(1)
"""


def slow_crd(env):
    path = os.path.join(env.tmpdir, "slow-crd")
    with open(path, "w") as f:
        f.write(SLOW_CRD)
    os.chmod(path, 0o755)
    return path


def freeze_deadline_abort(env):
    """a tree not frozen by the deadline fails FREEZE with ETIMEDOUT; an ABORT while a
    FREEZE waits supersedes it; the crd held back is let go and the tree runs on"""
    a = Agent(env, "--crd", slow_crd(env))
    m, bg = None, None
    try:
        m = Memgen(env, "w1")
        code, rep = a.call("FREEZE", "job=j", "gen=1", "deadline=200", f"tree={m.pid}")
        assert code == 1 and rep["error"] == -110 and "not frozen within" in rep["message"], \
            rep["out"]
        a.ok("ABORT", "job=j")	# waits for the slow crd, told no at its hook
        out = os.path.join(env.tmpdir, "freeze.out")
        bg = _runner.spawn([os.path.join(env.builddir, "tests", "rpc", "rpc_send"),
                            "--munge-socket", a.munged.socket, a.addr, "FREEZE", "job=j",
                            "gen=2", f"tree={m.pid}"], out=out)
        deadline = time.time() + 10
        while "FREEZE from uid 0" not in a.logtext().split("ABORT done")[-1]:
            assert time.time() < deadline, "the FREEZE did not arrive"
            time.sleep(0.01)
        a.ok("ABORT", "job=j")
        st = _runner.wait_for(bg, 10)
        bg = None
        with open(out) as f:
            got = f.read()
        assert _runner.exit_code(st) == 1 and "superseded by ABORT" in got, got
        assert "error -125" in got, got
        assert _runner.alive(m.pid)
        m.mutate()
        m.verify(1)
    finally:
        if bg:
            _runner.kill_tree(bg)
        if m:
            m.kill()
        a.stop()


def dump_progress_events(env):
    """while trees write, an EVENT each second (the coordinator's sign of life): two
    trees, one slot, each writing 1.5 s"""
    a = Agent(env, "--crd", slow_crd(env), max_parallel=1,
              environ={"SLOW_CRD_S": "0", "SLOW_DUMP_S": "1.5"})
    ms = []
    try:
        ms = [Memgen(env, "w1"), Memgen(env, "w2")]
        a.ok("FREEZE", "job=j", f"tree={ms[0].pid}", f"tree={ms[1].pid}")
        rep = a.ok("DUMP", "job=j")
        events = rep.get("events", [])
        # 3 s of writing: 2 or 3 ticks, each with both trees
        assert 4 <= len(events) <= 6, f"events: {rep['out']}"
        a.ok("ABORT", "job=j")
    finally:
        for m in ms:
            m.kill()
        a.stop()


def coordinator_gone(env):
    """a coordinator that dies: its FREEZE's connection closes -> the agent aborts; a job
    held frozen past --hold-timeout without a request -> the agent lets it go"""
    a = Agent(env, "--crd", slow_crd(env))
    m, bg = None, None
    try:
        m = Memgen(env, "w1")
        bg = _runner.spawn([os.path.join(env.builddir, "tests", "rpc", "rpc_send"),
                            "--munge-socket", a.munged.socket, a.addr, "FREEZE", "job=j",
                            f"tree={m.pid}"])
        deadline = time.time() + 10
        while "FREEZE from uid 0" not in a.logtext():
            assert time.time() < deadline, "the FREEZE did not arrive"
            time.sleep(0.01)
        _runner.kill_tree(bg)
        bg = None
        deadline = time.time() + 10
        while "job j: ABORT" not in a.logtext() and "closed: aborting" not in a.logtext():
            assert time.time() < deadline, f"no abort: {a.logtext()[-1500:]}"
            time.sleep(0.01)
        a.ok("ABORT", "job=j")
        assert _runner.alive(m.pid) and _runner.proc_status(m.pid, "TracerPid") == "0"
    finally:
        if bg:
            _runner.kill_tree(bg)
        a.stop()
    a = Agent(env, "--hold-timeout", "1")
    try:
        a.ok("FREEZE", "job=j", f"tree={m.pid}")
        assert _runner.proc_status(m.pid, "TracerPid") != "0", "not frozen"
        deadline = time.time() + 10
        while _runner.proc_status(m.pid, "TracerPid") != "0":
            assert time.time() < deadline, f"still held: {a.logtext()[-1500:]}"
            time.sleep(0.05)
        assert "held frozen for hold_timeout without a request" in a.logtext(), \
            a.logtext()[-1500:]
        code, rep = a.call("DUMP", "job=j")
        assert code == 1 and "the job is idle" in rep["message"], rep["out"]
        # a FREEZE deadline of 500 ms: no DUMP by then (+1 s), the coordinator gave up
        a.ok("FREEZE", "job=j", f"tree={m.pid}", "deadline=500")
        t0 = time.time()
        while _runner.proc_status(m.pid, "TracerPid") != "0":
            assert time.time() < t0 + 10, f"still held: {a.logtext()[-1500:]}"
            time.sleep(0.05)
        assert "held frozen for the FREEZE deadline" in a.logtext(), a.logtext()[-1500:]
        # dumped, and no THAW: let go, but the images stay (the coordinator may commit)
        a.ok("FREEZE", "job=j", "gen=5", f"tree={m.pid}")
        a.ok("DUMP", "job=j")
        t0 = time.time()
        while _runner.proc_status(m.pid, "TracerPid") != "0":
            assert time.time() < t0 + 10, f"still held: {a.logtext()[-1500:]}"
            time.sleep(0.05)
        assert "held dumped for hold_timeout" in a.logtext(), a.logtext()[-1500:]
        done = os.path.join(a.store, "jobs", "j", "gen-5.partial", f"n0-{m.pid}.done")
        assert os.path.exists(done), "the agent removed images its coordinator may commit"
        m.mutate()
        m.verify(1)
    finally:
        m.kill()
        a.stop()


def config_file(env):
    """settings from the config file, the command line winning; a pid file while it runs;
    a bad key refuses to start, naming file and line"""
    conf = os.path.join(env.tmpdir, "agent.conf")
    pidfile = os.path.join(env.tmpdir, "agent.pid")
    with open(conf, "w") as f:
        f.write("# comment\n\nname = fromfile\nmax_parallel = 3\n"
                f"allow_users = root, {NOBODY}\npidfile = {pidfile}\n")
    a = Agent(env, "--config", conf, "--name", "cli", max_parallel=None)
    try:
        log = a.logtext()
        assert "node cli listening" in log and "max 3 parallel" in log, log
        with open(pidfile) as f:
            assert int(f.read()) == a.pid
        rep = a.ok("PING")
        assert rep["node"].startswith(f"node cli agent {a.addr} ip 127.0.0.1 topology cores="), \
            rep["node"]
    finally:
        a.stop()
    assert not os.path.exists(pidfile), "the pid file outlived the agent"
    with open(conf, "a") as f:
        f.write("frobnicate = 1\n")
    r = _runner.run([os.path.join(env.builddir, "agent", "crjob-agent"), "--config", conf])
    assert r.code == 2 and f"{conf}:7: unknown key 'frobnicate'" in r.out, r.out


def sigterm_releases(env):
    """SIGTERM while a tree is held frozen: the agent lets it go and exits; it runs on.
    SIGKILL: its crd notices (the hook's socket closes) and lets the tree go too"""
    a = Agent(env)
    m = None
    try:
        m = Memgen(env, "w1")
        a.ok("FREEZE", "job=j", f"tree={m.pid}")
        assert _runner.proc_status(m.pid, "TracerPid") != "0", "not frozen"
        os.kill(a.pid, signal.SIGTERM)
        st = _runner.wait_for(a.pid, 30)
        assert _runner.exit_code(st) == 0, f"agent exit {st}: {a.logtext()[-2000:]}"
        a.pid = None
        assert _runner.alive(m.pid) and _runner.proc_status(m.pid, "TracerPid") == "0", \
            "the tree was not released"
        m.mutate()
        # SIGKILL while frozen: the hook's socket closes with the agent, crd lets go
        a.stop()	# the first agent's munged
        a = Agent(env)
        a.ok("FREEZE", "job=k", f"tree={m.pid}")
        assert _runner.proc_status(m.pid, "TracerPid") != "0", "not frozen"
        os.kill(a.pid, signal.SIGKILL)
        _runner.wait_for(a.pid, 10)
        a.pid = None
        deadline = time.time() + 30
        while _runner.proc_status(m.pid, "TracerPid") != "0":
            assert time.time() < deadline, "a killed agent left the tree frozen"
            time.sleep(0.02)
        # its crd children were adopted by the runner: wait until they are gone
        m.mutate()
        m.verify(2)
    finally:
        if m:
            m.kill()
        a.stop()


def spawn_refused(env):
    """SPAWN (crjob spawn) starts nothing where the caller's Slurm job has no extern step
    on the node, nor for a job id that is not Slurm's, nor as another user: refused with
    the reason, logged, and the agent serves on"""
    a = Agent(env)
    try:
        crjob = os.path.join(env.builddir, "crjob", "crjob")
        mark = os.path.join(env.tmpdir, "spawned")
        for job, user, why in (("4242", None, "no extern step of Slurm job 4242"),
                               ("j1", None, "not a Slurm job id"),
                               ("4242", 65534, "no extern step of Slurm job 4242 of uid 65534")):
            argv = [crjob, "--munge-socket", a.munged.socket, "spawn", job, "--agent", a.addr,
                    "--", "/bin/touch", mark]
            if user is not None:
                argv = [shutil.which("setpriv"), f"--reuid={user}", f"--regid={user}",
                        "--clear-groups"] + argv
            r = _runner.run(argv)
            assert r.code == 1 and why in r.out, f"spawn of job {job} not refused: {r.code} {r.out}"
        assert not os.path.exists(mark), "a refused SPAWN ran its program"
        assert "refused SPAWN of job 4242 from uid 65534" in a.logtext(), a.logtext()[-2000:]
        a.ok("PING")
    finally:
        a.stop()


def restore_from_other_job(env):
    """RESTORE of another job's generation (from=, Slurm's --restart-from): refused for an
    owner whose job directory it is not (nothing restored) and for a bad job id; root's
    own restores it into the new job, which runs from that generation"""
    a = Agent(env)
    m = None
    try:
        m = Memgen(env, "w1")
        m.mutate()
        rep = checkpoint(a, "a", [m], 1, "stop=1")
        tree = rep["trees"][0]
        a.ok("THAW", "job=a")
        deadline = time.time() + 10
        while _runner.alive(m.pid):
            assert time.time() < deadline, "stop: the tree was not killed"
            time.sleep(0.01)
        m.kill()
        commit(env, a.store, "a", 1, [tree["writer"]])
        restore = ("gen=1", "node=n0", f"tree={m.pid}:{tree['writer']}:0")
        code, rep = a.call("RESTORE", "job=b", "from=a", f"owner={NOBODY}", *restore,
                           user=NOBODY)
        assert code == 1 and "the checkpoints of job a belong to uid 0, not to the owner " \
            f"{NOBODY}" in rep["message"], f"nobody restored root's job: {rep['out']}"
        assert not _runner.alive(m.pid), "a tree was restored for nobody"
        code, rep = a.call("RESTORE", "job=b", "from=../a", *restore)
        assert code == 1 and "bad job id" in rep["message"], rep["out"]
        rep = a.ok("RESTORE", "job=b", "from=a", *restore)
        assert rep["trees"][0]["pid"] == m.pid, rep["out"]
        a.ok("RESUME", "job=b")
        m.verify(1)
    finally:
        if m:
            m.kill()
        a.stop()


CASES = [("freeze-dump-thaw", freeze_dump_thaw),
         ("abort-runs-on", abort_runs_on),
         ("restore-resume", restore_resume),
         ("restore-kill", restore_kill),
         ("restore-from-other-job", restore_from_other_job),
         ("refused-requests", refused_requests),
         ("garbage-frame", garbage_frame),
         ("dump-failure", dump_failure),
         ("freeze-deadline-abort", freeze_deadline_abort),
         ("dump-progress-events", dump_progress_events),
         ("coordinator-gone", coordinator_gone),
         ("config-file", config_file),
         ("sigterm-releases", sigterm_releases),
         ("spawn-refused", spawn_refused)]
