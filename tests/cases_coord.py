"""crjob-coord and crjob against fake agents (tests/cluster/fakeagent) on loopback."""
import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "cluster"))
import fakecluster  # noqa: E402

_runner = sys.modules["__main__"]


def _cluster(env, fn):
    c = fakecluster.Cluster(env.builddir, fakecluster.RunnerProcs(_runner), env.tmpdir)
    try:
        c.start()
        fn(c)
    finally:
        c.close()


def _ops(c, port=None):
    return [(p, op) for _, p, op, _ in c.agent_lines() if port is None or p == port]


def checkpoint_four(env):
    """a checkpoint with 4 agents commits a generation seen by crjob history and crd store ls"""
    def body(c):
        ports = c.fake_agents(4)
        c.start_coord(*c.node_args(ports))
        r = c.crjob("checkpoint", c.job)
        assert r.returncode == 0, f"checkpoint: {r.returncode}: {r.stderr}"
        assert "generation 1 committed" in r.stdout, r.stdout
        assert c.gens() == [1], c.gens()
        assert c.store_ls() == [1], c.store_ls()
        ops = _ops(c)
        for p in ports:
            assert [o for q, o in ops if q == p] == ["freeze", "dump", "thaw"], ops
        # every FREEZE reply came before any DUMP went out
        lines = c.agent_lines()
        assert max(t for t, _, o, _ in lines if o == "freeze") < \
            min(t for t, _, o, _ in lines if o == "dump"), lines
        st = c.json("status", c.job)["status"]
        assert st["phase"] == "idle" and st["last_gen"] == 1 and len(st["nodes"]) == 4, st
    _cluster(env, body)


def failing_agent(env):
    """an agent failing DUMP: exit 1 naming the node, ABORT to all, no new generation
    (without io threads)"""
    def body(c):
        ports = c.fake_agents(3)
        bad = c.fake_agents(1, "--fail-at", "dump")
        # all agent i/o in the main loop (io threads are the default elsewhere)
        c.start_coord("--io-threads", "0", *c.node_args(ports))
        r = c.crjob("checkpoint", c.job)
        assert r.returncode == 0, f"first checkpoint: {r.stderr}"
        r = c.crjob("register", c.job, "--node", c.spec(3, bad[0], [1003]))
        assert r.returncode == 0, f"register: {r.stderr}"
        r = c.crjob("checkpoint", c.job)
        assert r.returncode == 1, f"checkpoint with a failing agent: {r.returncode}: {r.stdout}"
        assert "node n3" in r.stderr and "fake failure at dump" in r.stderr, r.stderr
        assert c.gens() == [1] and c.store_ls() == [1], (c.gens(), c.store_ls())
        assert not os.path.exists(os.path.join(c.store, "jobs", c.job, "gen-2.partial")), \
            "the partial generation was left"
        v = _runner.run([c.exe("crd", "crd"), "store", "verify", c.job, "1", "--store", c.store])
        assert v.code == 0, f"generation 1 damaged: {v.out}"
        ops = _ops(c)
        for p in ports + bad:
            assert (p, "abort") in ops, f"no ABORT to {p}: {ops}"
            assert ops.count((p, "thaw")) == (1 if p in ports else 0), ops
        st = c.json("status", c.job)["status"]
        assert st["phase"] == "idle" and "node n3" in st["last_error"], st
    _cluster(env, body)


def hung_agent(env):
    """an agent that never answers FREEZE: the deadline aborts the checkpoint"""
    def body(c):
        ports = c.fake_agents(3)
        hung = c.fake_agents(1, "--drop-at", "freeze")
        c.start_coord("--freeze-timeout", "500", *c.node_args(ports + hung))
        t = time.time()
        r = c.crjob("checkpoint", c.job)
        took = time.time() - t
        assert r.returncode == 1, f"checkpoint with a hung agent: {r.returncode}: {r.stdout}"
        assert "node n3" in r.stderr and "deadline" in r.stderr, r.stderr
        assert took < 10, f"the deadline took {took:.1f} s"
        assert c.gens() == [] and c.store_ls() == [], c.gens()
        ops = _ops(c)
        for p in ports + hung:
            assert (p, "abort") in ops and (p, "dump") not in ops, ops
        # the job goes on: the next checkpoint without the hung agent works
        r = c.crjob("register", c.job, "--node", c.spec(3, ports[0], [1003]))
        r = c.crjob("checkpoint", c.job)
        assert r.returncode == 0, f"checkpoint after the abort: {r.stderr}"
    _cluster(env, body)


def silent_agent_dump(env):
    """an agent silent during DUMP (no EVENT, no REPLY) for the freeze timeout: abort"""
    def body(c):
        ports = c.fake_agents(3)
        mute = c.fake_agents(1, "--drop-at", "dump")
        c.start_coord("--freeze-timeout", "500", *c.node_args(ports + mute))
        r = c.crjob("checkpoint", c.job)
        assert r.returncode == 1, f"checkpoint with a silent agent: {r.returncode}: {r.stdout}"
        assert "node n3" in r.stderr and "no word" in r.stderr, r.stderr
        assert c.gens() == [] and c.store_ls() == [], c.gens()
        assert not os.path.exists(os.path.join(c.store, "jobs", c.job, "gen-1.partial")), \
            "the writers of the aborted generation were left"
        ops = _ops(c)
        for p in ports + mute:
            assert (p, "abort") in ops and (p, "thaw") not in ops, ops
    _cluster(env, body)


def sigterm_aborts(env):
    """SIGTERM to the coordinator while agents are frozen: ABORT to all, then it exits"""
    def body(c):
        ports = c.fake_agents(3)
        hung = c.fake_agents(1, "--drop-at", "freeze")
        c.start_coord("--freeze-timeout", "60000", *c.node_args(ports + hung))
        pid, out = c.crjob_bg("checkpoint", c.job)
        deadline = time.time() + 10
        while len([1 for _, o in _ops(c) if o == "freeze"]) < 4:
            assert time.time() < deadline, f"no FREEZE: {_ops(c)}"
            time.sleep(0.01)
        os.kill(c.coord_pid, signal.SIGTERM)
        assert c.wait_coord() == 0, "the coordinator did not exit cleanly"
        ops = _ops(c)
        for p in ports + hung:
            assert (p, "abort") in ops, f"no ABORT to {p}: {ops}"
        code = c.procs.wait(pid, 10)
        with open(out) as f:
            text = f.read()
        assert code == 1 and "signal 15" in text, (code, text)
        assert c.store_ls() == [] and not os.path.exists(
            os.path.join(c.store, "coord", c.job)), "left behind"
    _cluster(env, body)


def periodic_keep(env):
    """interval 1s with --keep 2: several generations made, 2 kept"""
    def body(c):
        ports = c.fake_agents(4)
        c.start_coord(*c.node_args(ports))
        r = c.crjob("interval", c.job, "1s", "--keep", "2")
        assert r.returncode == 0 and "interval 1s, keep 2" in r.stdout, (r.stdout, r.stderr)
        deadline = time.time() + 30
        while time.time() < deadline and (not c.gens() or c.gens()[-1] < 4):
            time.sleep(0.2)
        r = c.crjob("interval", c.job, "0")
        assert r.returncode == 0, r.stderr
        gens = c.gens()
        assert gens[-1] >= 4 and len(gens) == 2, f"generations kept: {gens}"
        assert c.store_ls() == gens, (c.store_ls(), gens)
        time.sleep(1.5)
        assert c.gens() == gens, "checkpoints went on after interval 0"
        r = c.crjob("interval", c.job, "10x")
        assert r.returncode == 2, f"bad interval: {r.returncode}"
    _cluster(env, body)


def coord_restarted(env):
    """the coordinator killed and started again: history, nodes and settings survive"""
    def body(c):
        ports = c.fake_agents(4)
        c.start_coord("--keep", "5", *c.node_args(ports))
        for _ in range(2):
            assert c.crjob("checkpoint", c.job).returncode == 0
        before = c.json("history", c.job)["generations"]
        c.stop_coord(signal.SIGKILL)
        # a checkpoint the killed coordinator left unfinished
        partial = os.path.join(c.store, "jobs", c.job, "gen-3.partial")
        os.mkdir(partial)
        with open(os.path.join(partial, "n0-1000.pack"), "w") as f:
            f.write("x")
        r = c.crjob("status", c.job)
        assert r.returncode == 3 and "unreachable" in r.stderr, (r.returncode, r.stderr)
        c.start_coord()
        after = c.json("history", c.job)["generations"]
        # the last generation's times were stored at its commit, before its thaw
        last_b, last_a = before.pop(), after.pop()
        assert after == before, f"history changed: {before} -> {after}"
        assert last_a["gen"] == last_b["gen"] and last_a["stored"] == last_b["stored"] and \
            0 < last_a["total_s"] <= last_b["total_s"], f"{last_b} -> {last_a}"
        assert not os.path.exists(partial), "the unfinished generation was left"
        st = c.json("status", c.job)["status"]
        assert len(st["nodes"]) == 4 and st["keep"] == 5 and st["last_gen"] == 2, st
        r = c.crjob("checkpoint", c.job)
        assert r.returncode == 0 and "generation 3" in r.stdout, r.stderr
        r = c.crjob("shutdown", c.job)
        assert r.returncode == 0, r.stderr
        assert c.wait_coord() == 0, "the coordinator did not exit cleanly after shutdown"
        assert not os.path.exists(os.path.join(c.store, "coord", c.job)), \
            "STORE/coord/JOB left after shutdown"
        r = c.crjob("status", c.job)
        assert r.returncode == 3, f"status without a coordinator: {r.returncode}"
    _cluster(env, body)


def restart_maps(env):
    """restart: old node i -> new node i, remap table, RESUME only after every RESTORE"""
    def body(c):
        old = c.fake_agents(4)
        c.start_coord(*c.node_args(old))
        assert c.crjob("checkpoint", c.job, "--stop").returncode == 0
        assert c.json("status", c.job)["status"]["phase"] == "stopped"
        c.stop_coord(signal.SIGKILL)
        c.start_coord()
        assert c.json("status", c.job)["status"]["phase"] == "stopped", "stop forgotten"
        r = c.crjob("checkpoint", c.job)
        assert r.returncode == 1 and "stopped" in r.stderr, (r.returncode, r.stderr)
        new = c.fake_agents(3) + c.fake_agents(1, "--delay-ms", "700", "--delay-at", "restore")
        args = []
        for i, p in enumerate(new):
            args += ["--node", f"m{i},127.0.0.1:{p},10.9.0.{i + 1}"]
        r = c.crjob("restart", c.job, *args[:-2])
        assert r.returncode == 1 and "3 given" in r.stderr, (r.returncode, r.stderr)
        r = c.crjob("restart", c.job, *args, "--pidns")
        assert r.returncode == 0, f"restart: {r.returncode}: {r.stderr}"
        lines = c.agent_lines()
        rst = {p: kv for _, p, o, kv in lines if o == "restore"}
        for i, p in enumerate(new):
            kv = rst[p]
            assert kv["node"] == f"n{i}" and kv["trees"] == f"{1000 + i}:n{i}-{1000 + i}", kv
            assert kv["pidns"] == "1", kv
            assert kv["remap"] == ",".join(f"10.0.0.{k + 1}=10.9.0.{k + 1}" for k in range(4)), kv
        slow_reply = max(t for t, p, o, _ in lines if o == "restore") + 0.7
        resumes = [t for t, p, o, _ in lines if o == "resume"]
        assert sorted(p for _, p, o, _ in lines if o == "resume") == sorted(new), lines
        assert min(resumes) >= slow_reply - 0.05, "RESUME before every RESTORE succeeded"
        st = c.json("status", c.job)["status"]
        assert [n["name"] for n in st["nodes"]] == [f"m{i}" for i in range(4)], st
        assert st["phase"] == "idle", st
        # the new layout survives the coordinator, and the next checkpoint uses it
        c.stop_coord(signal.SIGKILL)
        c.start_coord()
        st = c.json("status", c.job)["status"]
        assert [n["name"] for n in st["nodes"]] == [f"m{i}" for i in range(4)], st
        r = c.crjob("checkpoint", c.job)
        assert r.returncode == 0 and "generation 2" in r.stdout, r.stderr
        frz = {p: kv["trees"] for _, p, o, kv in c.agent_lines() if o == "freeze" and p in new}
        assert frz == {p: f"{1000 + i}:m{i}-{1000 + i}" for i, p in enumerate(new)}, frz
    _cluster(env, body)


def restart_fails(env):
    """a RESTORE failing on one new node: KILL to all new agents, no RESUME, exit 1;
    a KILL never answered does not hold the coordinator up"""
    def body(c):
        old = c.fake_agents(2)
        c.start_coord("--freeze-timeout", "500", *c.node_args(old))
        assert c.crjob("checkpoint", c.job).returncode == 0
        new = c.fake_agents(1, "--drop-at", "kill") + c.fake_agents(1, "--fail-at", "restore")
        r = c.crjob("restart", c.job, "--node", f"m0,127.0.0.1:{new[0]},10.9.0.1",
                    "--node", f"m1,127.0.0.1:{new[1]},10.9.0.2")
        assert r.returncode == 1 and "node m1" in r.stderr and "RESTORE" in r.stderr, r.stderr
        ops = _ops(c)
        for p in new:
            assert (p, "kill") in ops and (p, "resume") not in ops, ops
        st = c.json("status", c.job)["status"]
        assert [n["name"] for n in st["nodes"]] == ["n0", "n1"], st
        assert c.crjob("checkpoint", c.job).returncode == 0, "no checkpoint after it"
        assert c.crjob("shutdown", c.job).returncode == 0
        assert c.wait_coord() == 0, "the coordinator did not exit cleanly"
    _cluster(env, body)


def other_uid_denied(env):
    """a request from another uid: exit 4, logged, nothing changes"""
    def body(c):
        ports = c.fake_agents(2)
        c.start_coord(*c.node_args(ports))
        assert c.crjob("checkpoint", c.job).returncode == 0
        addr = c.coord_addr()
        for cmd in (["checkpoint", c.job], ["interval", c.job, "1s"], ["shutdown", c.job],
                    ["status", c.job]):
            r = c.crjob("--coord", addr, *cmd, user=65534)
            assert r.returncode == 4, f"{cmd} as uid 65534: {r.returncode}: {r.stderr}"
            assert "permission denied" in r.stderr, r.stderr
        assert c.gens() == [1]
        st = c.json("status", c.job)["status"]
        assert st["interval_s"] == 0 and st["phase"] == "idle", st
        assert "from uid 65534" in c.read("coord.log"), c.read("coord.log")
    _cluster(env, body)


def real_agent(env):
    """end to end with crjob-agent and a real tree: checkpoint, checkpoint --stop, restart
    (RESTORE + RESUME), the restored tree has the memory of the last generation"""
    import cases_agent
    if not os.path.exists(os.path.join(env.builddir, "agent", "crjob-agent")):
        raise unittest.SkipTest("crjob-agent not built")
    a = cases_agent.Agent(env)
    m = None
    c = fakecluster.Cluster(env.builddir, fakecluster.RunnerProcs(_runner), env.tmpdir,
                            munged=a.munged, store=a.store)
    try:
        m = cases_agent.Memgen(env, "w1")
        c.start()
        c.start_coord("--node", f"n0,{a.addr},127.0.0.1,{m.pid}")
        r = c.crjob("checkpoint", c.job)
        assert r.returncode == 0, f"checkpoint: {r.returncode}: {r.stderr} {a.logtext()[-2000:]}"
        assert _runner.alive(m.pid), "the tree did not survive its checkpoint"
        m.mutate()
        r = c.crjob("checkpoint", c.job, "--stop")
        assert r.returncode == 0 and "generation 2" in r.stdout, r.stderr
        deadline = time.time() + 10
        while _runner.alive(m.pid):
            assert time.time() < deadline, "--stop: the tree was not killed"
            time.sleep(0.01)
        m.kill()
        assert c.store_ls() == [1, 2], c.store_ls()
        st = c.json("status", c.job)["status"]
        assert st["phase"] == "stopped", st
        r = c.crjob("restart", c.job, "--node", f"n0,{a.addr},127.0.0.1")
        assert r.returncode == 0, f"restart: {r.returncode}: {r.stderr} {a.logtext()[-2000:]}"
        m.verify(1)
    finally:
        c.close()
        if m:
            m.kill()
        a.stop()


def progress_on_tty(env):
    """crjob checkpoint draws a progress bar on stderr when it is a terminal, not otherwise"""
    def body(c):
        ports = c.fake_agents(4, "--delay-ms", "150")
        c.start_coord(*c.node_args(ports))
        master, slave = os.openpty()
        try:
            pid = _runner.spawn([c.exe("crjob", "crjob"), "--store", c.store, "--munge-socket",
                                 c.munged.socket, "checkpoint", c.job], tty=slave)
            os.close(slave)
            slave = None
            out = b""
            while True:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            code = _runner.exit_code(_runner.wait_for(pid, 30))
        finally:
            os.close(master)
            if slave is not None:
                os.close(slave)
        text = out.decode(errors="replace")
        assert code == 0 and "generation 1 committed" in text, (code, text)
        assert "] dumping" in text and "/4 nodes" in text, f"no progress bar: {text!r}"
        r = c.crjob("checkpoint", c.job)
        assert r.returncode == 0 and "nodes" not in r.stderr, f"a bar on a pipe: {r.stderr!r}"
    _cluster(env, body)


def owner_not_root(env):
    """the coordinator and crjob as the job's owner (nobody), the agent as root: the
    owner's coordinator commits what root's crd wrote, and restarts the job"""
    import cases_agent
    if not os.path.exists(os.path.join(env.builddir, "agent", "crjob-agent")):
        raise unittest.SkipTest("crjob-agent not built")
    nobody = cases_agent.NOBODY
    a = cases_agent.Agent(env)
    m = None
    # as an administrator prepares a store for coordinators run by users
    for d in ("jobs", "coord"):
        os.makedirs(os.path.join(a.store, d), exist_ok=True)
        os.chmod(os.path.join(a.store, d), 0o1777)
    c = fakecluster.Cluster(env.builddir, fakecluster.RunnerProcs(_runner), env.tmpdir,
                            munged=a.munged, store=a.store)
    try:
        m = cases_agent.Memgen(env, "w1", user=nobody)
        c.start()
        c.start_coord("--node", f"n0,{a.addr},127.0.0.1,{m.pid}", user=nobody)
        st = c.json("status", c.job)["status"]
        assert st["owner"] == nobody, st
        r = c.crjob("checkpoint", c.job, user=nobody)
        assert r.returncode == 0, f"checkpoint: {r.returncode}: {r.stderr} " \
            f"{c.read('coord.log')} {a.logtext()[-1500:]}"
        m.mutate()
        r = c.crjob("checkpoint", c.job, "--stop", user=nobody)
        assert r.returncode == 0, f"checkpoint --stop: {r.stderr} {c.read('coord.log')}"
        deadline = time.time() + 10
        while _runner.alive(m.pid):
            assert time.time() < deadline, "--stop: the tree was not killed"
            time.sleep(0.01)
        m.kill()
        assert c.store_ls() == [1, 2], c.store_ls()
        r = c.crjob("restart", c.job, "--node", f"n0,{a.addr},127.0.0.1", user=nobody)
        assert r.returncode == 0, f"restart: {r.returncode}: {r.stderr} {a.logtext()[-1500:]}"
        assert _runner.proc_status(m.pid, "Uid").split()[0] == str(nobody), "restored as root"
        m.verify(1)
    finally:
        c.close()
        if m:
            m.kill()
        a.stop()


def cli_usage(env):
    """usage errors exit 2, an unknown job exits 3"""
    def body(c):
        assert c.crjob("frobnicate").returncode == 2
        assert c.crjob("checkpoint").returncode == 2
        assert c.crjob("restart", "x").returncode == 2
        r = c.crjob("status", "nosuchjob")
        assert r.returncode == 3 and "nosuchjob" in r.stderr, (r.returncode, r.stderr)
        r = c.crjob("list")
        assert r.returncode == 0 and "JOB" in r.stdout, r.stdout
    _cluster(env, body)


def launch_marked(env):
    """an MPI daemon's launch (crmpi-rsh: --step-begun J.launch-PID@NODE) keeps
    checkpoints off, with that reason, until the registration of the daemon's tree ends
    it in the same message; a launch or a tree registered while a checkpoint runs aborts
    that checkpoint (no generation without a tree of the job), and the next one works"""
    def body(c):
        ports = c.fake_agents(2)
        slow = c.fake_agents(1, "--delay-ms", "1500", "--delay-at", "dump")
        c.start_coord(*c.node_args(ports))
        launch = f"{c.job}.launch-77@n2"
        r = c.crjob("register", c.job, "--step-begun", launch)
        assert r.returncode == 0, f"register --step-begun: {r.stderr}"
        r = c.crjob("checkpoint", c.job)
        assert r.returncode == 1 and "MPI daemon is being started" in r.stderr and \
            launch in r.stderr, f"checkpoint during a launch: {r.returncode}: {r.stderr}"
        r = c.crjob("status", c.job)
        assert launch in r.stdout, f"status does not name the launch: {r.stdout}"
        assert c.gens() == [], c.gens()
        r = c.crjob("register", c.job, "--node", c.spec(2, slow[0], [1002]),
                    "--step-ended", launch)
        assert r.returncode == 0, f"register --node --step-ended: {r.stderr}"
        # a checkpoint in its DUMP (the slow agent), then another launch begins
        pid, out = c.crjob_bg("checkpoint", c.job)
        deadline = time.time() + 10
        while len([1 for _, o in _ops(c) if o == "dump"]) < 3:
            assert time.time() < deadline, f"no DUMP: {_ops(c)}"
            time.sleep(0.01)
        # refused as busy, asked again by crjob register until the abort is over
        r = c.crjob("register", c.job, "--step-begun", f"{c.job}.launch-78@n3")
        assert r.returncode == 0 and not r.stderr, \
            f"register --step-begun during a checkpoint: {r.returncode}: {r.stderr}"
        code = c.procs.wait(pid, 30)
        with open(out) as f:
            text = f.read()
        assert code == 1 and f"{c.job}.launch-78@n3 during the checkpoint" in text, \
            f"checkpoint not aborted by the launch: {code}: {text}"
        assert c.gens() == [] and c.store_ls() == [], c.gens()
        for p in ports + slow:
            assert (p, "abort") in _ops(c, p), _ops(c)
        r = c.crjob("register", c.job, "--node", c.spec(3, ports[0], [1003]),
                    "--step-ended", f"{c.job}.launch-78@n3")
        r = c.crjob("checkpoint", c.job)
        assert r.returncode == 0 and "generation 1 committed" in r.stdout, \
            f"checkpoint after the launches: {r.returncode}: {r.stderr}"
    _cluster(env, body)


CASES = [("checkpoint-4-agents", checkpoint_four),
         ("launch-marked", launch_marked),
         ("failing-agent", failing_agent),
         ("hung-agent-deadline", hung_agent),
         ("silent-agent-dump", silent_agent_dump),
         ("sigterm-aborts", sigterm_aborts),
         ("interval-keep", periodic_keep),
         ("coordinator-restarted", coord_restarted),
         ("restart-maps-nodes", restart_maps),
         ("restart-restore-fails", restart_fails),
         ("other-uid-denied", other_uid_denied),
         ("progress-on-tty", progress_on_tty),
         ("cli-usage", cli_usage),
         ("real-agent-end-to-end", real_agent),
         ("owner-not-root", owner_not_root)]
