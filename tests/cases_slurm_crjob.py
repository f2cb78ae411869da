"""crjob on a real Slurm cluster (tests/slurm/cluster, agents on every node,
the SPANK plugin loaded): an unmodified MPI job started with mpirun inside
sbatch --checkpoint, its remote daemons started by crmpi-rsh, checkpointed
with `crjob checkpoint JOBID` while it runs."""
import os
import re
import shutil
import sys
import time
import unittest

_runner = sys.modules["__main__"]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import caseload  # noqa: E402


def _slurm():
    """tests/cases_slurm.py: its Cluster and reference run"""
    return caseload.load("cases_slurm")


ITERS = 120
SLEEP_MS = 100


def _need_crjob(env):
    for p in ("crjob/crjob", "coord/crjob-coord", "agent/crjob-agent",
              "slurm-spank/spank_crjob.so"):
        if not os.path.exists(os.path.join(env.builddir, p)):
            raise unittest.SkipTest(f"{p} is not built")


def _hosts_file(c):
    """crmpi-rsh's nodes: network namespace, address, name"""
    path = os.path.join(c.work, "crmpi-hosts")
    with open(path, "w") as f:
        for n in c.state["nodes"]:
            f.write(f"{n['netns']} {n['ip']} {n['name']}\n")
    return path


def _mpirun_script(env, c, iters=ITERS):
    """a batch script that runs mpi_app on all its nodes with mpirun and crmpi-rsh"""
    s = _slurm()
    app = s._app(env, "openmpi")
    rsh = os.path.join(env.srcdir, "crmpi", "crmpi-rsh")
    return c.script_file("mpirun.sh", f"""
echo batch $$ restart=${{SLURM_RESTART_COUNT:--}}
export OMPI_MCA_plm=rsh OMPI_MCA_plm_rsh_agent={rsh} CRMPI_HOSTS={_hosts_file(c)}
export OMPI_MCA_btl=self,tcp,vader OMPI_MCA_btl_tcp_if_include=eth0 \\
    OMPI_MCA_oob_tcp_if_include=eth0 OMPI_MCA_btl_vader_single_copy_mechanism=none
export TMPDIR={c.work}
mpirun.openmpi -np {s.NODES * s.PPN} --map-by ppr:{s.PPN}:node {app} {iters} {SLEEP_MS}
echo mpirun exit $?
""")


def _gens(ls):
    """generation numbers in `crd store ls JOB` output (other lines: warnings)"""
    return [int(w[1]) for w in (l.split() for l in ls.splitlines())
            if len(w) > 1 and w[1].isdigit()]


def _iterations(text):
    return [int(x) for x in re.findall(r"^it (\d+)$", text, re.M)]


def _wait_iteration(c, jobid, out, n, timeout=90):
    deadline = time.time() + timeout
    while not [i for i in _iterations(_slurm()._read(out)) if i >= n]:
        j = c.job(jobid)
        assert time.time() < deadline and j["JobState"] in ("PENDING", "RUNNING"), \
            f"job {jobid} did not reach iteration {n} ({j['JobState']}): " \
            f"{_slurm()._read(out)[-2000:]}"
        time.sleep(0.2)


def _crjob(c, *args, user=None):
    argv = [os.path.join(c.env.builddir, "crjob", "crjob"), *args]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] + argv
    return c.cmd(*argv, timeout=120, extra=_crjob_env(c))


def _crjob_env(c):
    return {"CRJOB_STORE": os.path.join(c.dir, "store"),
            "CRJOB_MUNGE_SOCKET": os.path.join(c.dir, "munge", "munge.socket.2")}


def _requeue_elsewhere(c, jobid, first):
    """requeue the job held, exclude the nodes it ran on (first), release it"""
    for argv in (("requeuehold", jobid), ("update", f"JobId={jobid}",
                                           f"ExcNodeList={first}"), ("release", jobid)):
        code, text = c.cmd("scontrol", *argv)
        assert code == 0, f"scontrol {' '.join(argv)}: {text}"


def _wait_registered(c, jobid, nodes, timeout=30):
    """until the coordinator knows a tree on every node (plugin, crmpi-rsh)"""
    deadline = time.time() + timeout
    while True:
        code, out = _crjob(c, "--json", "status", jobid)
        names = set(re.findall(r'"name":\s*"([^"]+)"', out)) & \
            {n["name"] for n in c.state["nodes"]}
        if code == 0 and len(names) >= nodes:
            return
        assert time.time() < deadline, f"job {jobid}: trees not registered: {code} {out}"
        time.sleep(0.3)


def checkpoint_mid_run(env):
    """sbatch --checkpoint, mpirun on 3 nodes x 2 ranks: `crjob checkpoint JOBID` mid-run
    commits a generation of every node, the job goes on and ends with the result of an
    uninterrupted run; another user's `crjob checkpoint` is refused"""
    _need_crjob(env)
    s = _slurm()
    want = s.reference(env, ITERS)
    c = s.Cluster(env)
    try:
        out = os.path.join(c.work, "job.out")
        jobid = c.sbatch("--checkpoint", "-N", str(s.NODES), "-t", "5", "-o", out,
                         _mpirun_script(env, c), extra=_crjob_env(c))
        _wait_iteration(c, jobid, out, 20)
        _wait_registered(c, jobid, s.NODES)
        code, text = _crjob(c, "checkpoint", jobid, user=65534)
        assert code == 4, f"another user's checkpoint was not refused ({code}): {text}"
        code, text = _crjob(c, "checkpoint", jobid)
        assert code == 0 and "generation 1 committed" in text, \
            f"crjob checkpoint failed ({code}): {text}"
        at = _iterations(s._read(out))[-1]
        code, hist = _crjob(c, "history", jobid)
        assert code == 0 and re.search(r"^1\s", hist, re.M), f"history: {code} {hist}"
        j = c.wait_done(jobid, 120)
        text = s._read(out)
        assert j["JobState"] == "COMPLETED", f"job {j['JobState']}: {text[-2000:]}"
        assert s._results(text) == [want], f"result {s._results(text)}, want {want}: {text}"
        assert _iterations(text)[-1] == ITERS - 1 and at < ITERS - 1, _iterations(text)
        r = _runner.run([env.crd, "store", "verify", jobid, "1", "--store",
                         os.path.join(c.dir, "store")])
        assert r.code == 0, f"verify of generation 1 failed: {r.out}"
    finally:
        c.down()


CASES = [("mpirun-checkpoint-mid-run", checkpoint_mid_run)]


def requeue_resumes_elsewhere(env):
    """checkpoint, then `scontrol requeue` with the old nodes excluded: the batch step
    restores the generation on 3 other nodes instead of running the script again, the
    job ends with the result of an uninterrupted run, and with its script's exit code
    (`exit 3` after mpirun: FAILED 3:0, as without the restart)"""
    _need_crjob(env)
    s = _slurm()
    want = s.reference(env, ITERS)
    c = s.Cluster(env, nodes=2 * s.NODES)
    try:
        out = os.path.join(c.work, "job.out")
        script = _mpirun_script(env, c)
        with open(script, "a") as f:
            f.write("exit 3\n")
        jobid = c.sbatch("--checkpoint", "-N", str(s.NODES), "-t", "5", "-o", out, script,
                         extra=_crjob_env(c))
        _wait_iteration(c, jobid, out, 20)
        _wait_registered(c, jobid, s.NODES)
        first = c.job(jobid)["NodeList"]
        code, text = _crjob(c, "checkpoint", jobid)
        assert code == 0, f"crjob checkpoint failed ({code}): {text}"
        _requeue_elsewhere(c, jobid, first)
        j = c.wait_done(jobid, 240)
        text = s._read(out)
        assert j["Restarts"] == "1" and j["NodeList"] != first, \
            f"ran on {j['NodeList']} after {first}, restarts {j['Restarts']}"
        assert len(re.findall(r"^batch ", text, re.M)) == 1, \
            f"the batch script ran again instead of being restored: {text[-3000:]}"
        assert s._results(text) == [want], f"result {s._results(text)}, want {want}: {text}"
        assert j["JobState"] == "FAILED" and j["ExitCode"] == "3:0", \
            f"job {j['JobState']} exit code {j['ExitCode']}, want FAILED 3:0: {text[-3000:]}"
    finally:
        c.down()


CASES.append(("mpirun-requeue-resumes-elsewhere", requeue_resumes_elsewhere))


def periodic_with_retention(env):
    """sbatch --checkpoint=5s: generations appear while the job runs, the last 3 are
    kept (keep=3 in plugstack.conf), each verifies, and the job's result is right"""
    _need_crjob(env)
    s = _slurm()
    s.reference(env, ITERS * 2)
    c = s.Cluster(env)
    store = os.path.join(c.dir, "store")
    try:
        out = os.path.join(c.work, "job.out")
        jobid = c.sbatch("--checkpoint=5s", "-N", str(s.NODES), "-t", "5", "-o", out,
                         _mpirun_script(env, c, iters=ITERS * 2), extra=_crjob_env(c))
        _wait_iteration(c, jobid, out, 10)
        _wait_registered(c, jobid, s.NODES)
        deadline = time.time() + 90
        while True:
            r = _runner.run([env.crd, "store", "ls", jobid, "--store", store])
            gens = _gens(r.out)
            if gens and max(gens) >= 5:
                break
            assert time.time() < deadline and c.job(jobid)["JobState"] == "RUNNING", \
                f"periodic generations: {gens}: {r.out} {s._read(out)[-1500:]}"
            time.sleep(1)
        assert len(gens) <= 3, f"retention: {len(gens)} generations kept: {gens}"
        for g in gens:
            r = _runner.run([env.crd, "store", "verify", jobid, str(g), "--store", store])
            assert r.code == 0, f"verify of generation {g}: {r.out}"
        j = c.wait_done(jobid, 120)
        text = s._read(out)
        assert j["JobState"] == "COMPLETED", f"job {j['JobState']}: {text[-2000:]}"
        assert s._results(text) == [s.reference(env, ITERS * 2)], text[-2000:]
    finally:
        c.down()


CASES.append(("periodic-with-retention", periodic_with_retention))


def _agent_pid(c, node):
    for p in c.state["procs"]:
        if p.get("node") == node and p.get("argv0") == "crjob-agent":
            return p["pid"]
    raise AssertionError(f"no agent recorded for {node}")


def node_dies_during_checkpoint(env):
    """a node's agent is killed while `crjob checkpoint` runs: the checkpoint fails
    naming the node, the job runs on and ends right, the previous generation stays
    complete and verifies"""
    _need_crjob(env)
    s = _slurm()
    want = s.reference(env, ITERS)
    c = s.Cluster(env)
    store = os.path.join(c.dir, "store")
    try:
        out = os.path.join(c.work, "job.out")
        jobid = c.sbatch("--checkpoint", "-N", str(s.NODES), "-t", "5", "-o", out,
                         _mpirun_script(env, c), extra=_crjob_env(c))
        _wait_iteration(c, jobid, out, 20)
        _wait_registered(c, jobid, s.NODES)
        code, text = _crjob(c, "checkpoint", jobid)
        assert code == 0, f"first checkpoint failed ({code}): {text}"
        victim = c.state["nodes"][1]["name"]
        log = os.path.join(c.work, "ckpt2.log")
        argv = [os.path.join(env.builddir, "crjob", "crjob"), "checkpoint", jobid]
        pid = _runner.spawn(argv, out=log, env=dict(c.senv, **_crjob_env(c)))
        time.sleep(0.05)
        os.kill(_agent_pid(c, victim), 9)
        st = _runner.wait_for(pid, 120)
        text = s._read(log)
        assert st is not None and _runner.exit_code(st) == 1, \
            f"the checkpoint did not fail ({st}): {text}"
        assert victim in text, f"the failure does not name {victim}: {text}"
        r = _runner.run([env.crd, "store", "ls", jobid, "--store", store])
        gens = _gens(r.out)
        assert gens == [1], f"generations after the failed checkpoint: {r.out}"
        r = _runner.run([env.crd, "store", "verify", jobid, "1", "--store", store])
        assert r.code == 0, f"verify of generation 1: {r.out}"
        j = c.wait_done(jobid, 120)
        text = s._read(out)
        assert j["JobState"] == "COMPLETED", f"job {j['JobState']}: {text[-2000:]}"
        assert s._results(text) == [want], f"result {s._results(text)}, want {want}"
    finally:
        c.down()


CASES.append(("node-dies-during-checkpoint", node_dies_during_checkpoint))


def _netns_pids(netns):
    """every process in the network namespace bound at netns (a node's processes)"""
    st = os.stat(netns)
    want = f"net:[{st.st_ino}]"
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{d}/ns/net") == want:
                pids.append(int(d))
        except OSError:
            pass    # gone meanwhile, or a kernel thread
    return pids


def _kill_node(c, node):
    """the node dies: its slurmd and agent (by their recorded PIDs) and every other
    process in its network namespace (slurmstepds, orted and the job's ranks) are
    SIGKILLed; returns what was killed"""
    n = next(x for x in c.state["nodes"] if x["name"] == node)
    daemons = [p["pid"] for p in c.state["procs"]
               if p.get("node") == node and p.get("argv0") in ("slurmd", "crjob-agent")]
    assert len(daemons) == 2, f"{node}: recorded slurmd and agent: {c.state['procs']}"
    killed = []
    # a fork racing the kill may leave a child: look again until nothing is left
    for _ in range(10):
        pids = _netns_pids(n["netns"])
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, 9)
                killed.append(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    assert not _netns_pids(n["netns"]), f"{node}: processes left: {_netns_pids(n['netns'])}"
    assert set(daemons) <= set(killed), f"{node}: slurmd and agent {daemons} not among {killed}"
    return killed


def node_dies_between_checkpoints(env):
    """a node dies after a checkpoint while the job runs on (its slurmd, agent, orted
    and ranks SIGKILLed), Slurm takes it down and requeues the job, which runs again on
    3 other nodes: the batch step restores the last generation there instead of running
    the script, the job goes on from that checkpoint (not from the start) and ends with
    the result of an uninterrupted run"""
    _need_crjob(env)
    s = _slurm()
    want = s.reference(env, ITERS)
    c = s.Cluster(env, nodes=2 * s.NODES)
    store = os.path.join(c.dir, "store")
    try:
        out = os.path.join(c.work, "job.out")
        jobid = c.sbatch("--checkpoint", "-N", str(s.NODES), "-t", "5", "-o", out,
                         _mpirun_script(env, c), extra=_crjob_env(c))
        _wait_iteration(c, jobid, out, 20)
        _wait_registered(c, jobid, s.NODES)
        first = c.job(jobid)["NodeList"]
        code, names = c.cmd("scontrol", "show", "hostnames", first)
        names = names.split()
        assert code == 0 and len(names) == s.NODES, f"nodes of {first}: {names}"
        before = _iterations(s._read(out))[-1]
        code, text = _crjob(c, "checkpoint", jobid)
        assert code == 0 and "generation 1 committed" in text, \
            f"crjob checkpoint failed ({code}): {text}"
        at = _iterations(s._read(out))[-1]
        # the job runs on past its checkpoint before the node dies
        _wait_iteration(c, jobid, out, at + 10)
        victim = names[1]
        _kill_node(c, victim)
        died_at = _iterations(s._read(out))[-1]
        # what a health check or an administrator does about a dead node: Slurm then
        # ends the job everywhere and requeues it (JobRequeue=1)
        code, text = c.cmd("scontrol", "update", f"NodeName={victim}", "State=DOWN",
                           "Reason=crjob-test-node-died")
        assert code == 0, f"scontrol update {victim} down: {text}"
        c.wait_job(jobid, lambda j: j["Restarts"] == "1" and j["JobState"] == "PENDING",
                   "was not requeued after its node died", 90)
        # held while the old nodes are excluded (a requeued job waits out the
        # credential expiry before it can run again: no race)
        for argv in (("hold", jobid), ("update", f"JobId={jobid}", f"ExcNodeList={first}"),
                     ("release", jobid)):
            code, text = c.cmd("scontrol", *argv)
            assert code == 0, f"scontrol {' '.join(argv)}: {text}"
        j = c.wait_done(jobid, 240)
        text = s._read(out)
        assert j["JobState"] == "COMPLETED", f"job {j['JobState']}: {text[-3000:]}"
        code, again = c.cmd("scontrol", "show", "hostnames", j["NodeList"])
        assert j["Restarts"] == "1" and not set(again.split()) & set(names), \
            f"ran on {j['NodeList']} after {first}, restarts {j['Restarts']}"
        assert len(re.findall(r"^batch ", text, re.M)) == 1, \
            f"the batch script ran again instead of being restored: {text[-3000:]}"
        its = _iterations(text)
        assert its.count(0) == 1, f"the job started over: {its}"
        # rank 0 prints every ITERS/10 iterations: after the restore it prints again what
        # it had printed between the checkpoint and the node's death, then goes on
        back = [i for i in range(1, len(its)) if its[i] <= its[i - 1]]
        assert len(back) == 1, f"not one step back to the checkpoint: {its}"
        resumed = its[back[0]]
        assert before < resumed <= died_at, \
            f"resumed at {resumed}, not after the checkpoint (printed {before} before it, " \
            f"{at} after it) and before the death ({died_at}): {its}"
        every = its[1]
        assert its[back[0]:] == [i for i in range(resumed, ITERS)
                                 if i % every == 0 or i == ITERS - 1], f"iterations {its}"
        assert s._results(text) == [want], f"result {s._results(text)}, want {want}: {text}"
        r = _runner.run([env.crd, "store", "ls", jobid, "--store", store])
        # the checkpoint Slurm's SIGTERM asked for failed (a node was dead): no generation 2
        assert _gens(r.out) == [1], f"generations: {r.out}"
    finally:
        c.down()


CASES.append(("node-dies-between-checkpoints", node_dies_between_checkpoints))


NOBODY = 65534


def _as(user, *argv):
    return [shutil.which("setpriv"), f"--reuid={user}", f"--regid={user}", "--clear-groups",
            *argv]


def other_user_refused(env):
    """another user (nobody, not root) on a running --checkpoint job of root's: `crjob
    checkpoint JOBID` is refused (exit 4, saying whose job it is) and changes nothing (no
    generation, the job runs on); `sbatch --restart-from=JOBID` is refused at submission
    naming the job and its owner; submitted past that check (sbatch with a plugstack.conf
    of the user's own) the job starts from its beginning (refused in the job, logged, the
    agent restores nothing); the job's checkpoints are not readable by that user; the job
    ends right"""
    _need_crjob(env)
    s = _slurm()
    want = s.reference(env, ITERS)
    c = s.Cluster(env, nodes=s.NODES + 1)
    store = os.path.join(c.dir, "store")
    crd = os.path.join(env.builddir, "crd", "crd")
    try:
        out = os.path.join(c.work, "job.out")
        jobid = c.sbatch("--checkpoint", "-N", str(s.NODES), "-t", "5", "-o", out,
                         _mpirun_script(env, c), extra=_crjob_env(c))
        _wait_iteration(c, jobid, out, 20)
        _wait_registered(c, jobid, s.NODES)
        at = _iterations(s._read(out))[-1]
        code, text = _crjob(c, "checkpoint", jobid, user=NOBODY)
        assert code == 4 and f"job {jobid} belongs to uid 0" in text, \
            f"another user's checkpoint was not refused clearly ({code}): {text}"
        r = _runner.run([crd, "store", "ls", jobid, "--store", store])
        assert _gens(r.out) == [], f"generations after the refused checkpoint: {r.out}"
        # the job runs on
        _wait_iteration(c, jobid, out, at + 10)
        code, text = _crjob(c, "checkpoint", jobid)
        assert code == 0 and "generation 1 committed" in text, \
            f"the owner's checkpoint failed ({code}): {text}"

        # --restart-from at submission
        bout = os.path.join(c.work, "other.out")
        code, text = c.cmd(*_as(NOBODY, "sbatch", "--parsable", f"--restart-from={jobid}",
                                "-N", "1", "-t", "2", "-D", c.work, "-o", bout, "--wrap",
                                "echo other user ran"), extra=_crjob_env(c))
        assert code != 0 and f"--restart-from={jobid}" in text and \
            f"checkpoints of job {jobid} belong to uid 0" in text, \
            f"sbatch --restart-from of another user's job was not refused ({code}): {text}"

        # sbatch's check runs on the user's side, with the user's configuration: one
        # whose plugstack.conf names another store lets the option through, and the job
        # itself refuses it
        etc = os.path.join(c.work, "user-etc")
        os.makedirs(etc)
        with open(os.path.join(c.dir, "etc", "plugstack.conf")) as f:
            plugstack = f.read().replace(f"store={store} ", f"store={c.work}/elsewhere ")
        with open(os.path.join(etc, "plugstack.conf"), "w") as f:
            f.write(plugstack)
        with open(os.path.join(c.dir, "etc", "slurm.conf")) as f:
            conf = re.sub(r"^PlugStackConfig=.*$", f"PlugStackConfig={etc}/plugstack.conf",
                          f.read(), flags=re.M)
        with open(os.path.join(etc, "slurm.conf"), "w") as f:
            f.write(conf)
        free = c.state["nodes"][-1]["name"]
        code, text = c.cmd(*_as(NOBODY, "sbatch", "--parsable", f"--restart-from={jobid}",
                                "-N", "1", "-w", free, "-t", "2", "-D", c.work, "-o", bout,
                                "--wrap", "echo other user ran "
                                "gen=${CRJOB_RESTORE_GENERATION:--}; "
                                f"ls {store}/jobs/{jobid} || echo not readable"),
                           extra=dict(_crjob_env(c), SLURM_CONF=os.path.join(etc, "slurm.conf")))
        assert code == 0, f"sbatch as nobody with its own plugstack.conf: {text}"
        other = text.strip().split(";")[0]
        j = c.wait_done(other, 90)
        btext = s._read(bout)
        assert j["JobState"] == "COMPLETED" and "other user ran gen=-" in btext and \
            "not readable" in btext, f"the other user's job: {j['JobState']}: {btext}"
        log = c.slurmd_log(free)
        assert f"--restart-from={jobid}: the checkpoints of job {jobid} belong to uid 0" in log, \
            f"the job did not say why it does not restore {jobid}: {log[-3000:]}"
        agent_log = s._read(os.path.join(c.dir, free, "agent.log"))
        assert "restor" not in agent_log, f"the agent restored something: {agent_log}"

        # nothing of the job is readable by that user
        r = _runner.run(_as(NOBODY, crd, "store", "ls", jobid, "--store", store))
        assert _gens(r.out) == [], f"another user lists the job's generations: {r.out}"
        code, text = c.cmd(*_as(NOBODY, "cat", os.path.join(store, "jobs", jobid, "gen-1",
                                                              "MANIFEST")))
        assert code != 0 and "Permission denied" in text, \
            f"another user reads the job's checkpoint ({code}): {text[:300]}"

        j = c.wait_done(jobid, 120)
        text = s._read(out)
        assert j["JobState"] == "COMPLETED", f"job {j['JobState']}: {text[-2000:]}"
        assert s._results(text) == [want], f"result {s._results(text)}, want {want}: {text}"
        r = _runner.run([crd, "store", "ls", jobid, "--store", store])
        assert _gens(r.out) == [1], f"generations: {r.out}"
    finally:
        c.down()


CASES.append(("other-user-refused", other_user_refused))


def _restart_from(env, user):
    _need_crjob(env)
    s = _slurm()
    iters = ITERS
    want = s.reference(env, iters)
    c = s.Cluster(env, nodes=2 * s.NODES)
    store = os.path.join(c.dir, "store")
    crd = os.path.join(env.builddir, "crd", "crd")

    def sbatch(*args):
        if user is None:
            return c.sbatch(*args, extra=_crjob_env(c))
        code, text = c.cmd(*_as(user, "sbatch", "--parsable", "-D", c.work, *args),
                           extra=_crjob_env(c))
        assert code == 0, f"sbatch {' '.join(args)} as {user} failed: {text}"
        return text.strip().split(";")[0]

    try:
        out = os.path.join(c.work, "job.out")
        script = _mpirun_script(env, c, iters=iters)
        if user is not None:
            # a user's coordinator makes the job's directory itself (an administrator's
            # step, docs/distributed.md); the agents start a user's orted (crjob spawn)
            for sub in ("jobs", "coord"):
                os.makedirs(os.path.join(store, sub), exist_ok=True)
                os.chmod(os.path.join(store, sub), 0o1777)
            with open(script) as f:
                body = f.read()
            with open(script, "w") as f:
                f.write(body.replace("export TMPDIR=", "export CRMPI_VIA=agent\nexport TMPDIR=",
                                     1))
        jobid = sbatch("--checkpoint", "-N", str(s.NODES), "-t", "5", "-o", out, script)
        _wait_iteration(c, jobid, out, 20)
        _wait_registered(c, jobid, s.NODES)
        first = c.job(jobid)["NodeList"]
        before = _iterations(s._read(out))[-1]
        code, text = _crjob(c, "checkpoint", jobid, "--stop", user=user)
        assert code == 0 and "generation 1 committed" in text, \
            f"crjob checkpoint --stop failed ({code}): {text}"
        j = c.wait_done(jobid, 60)
        stopped = _iterations(s._read(out))
        assert stopped[-1] < iters - 1 and not s._results(s._read(out)), \
            f"the job was not stopped ({j['JobState']}): {stopped}"

        nout = os.path.join(c.work, "new.out")
        # not where the old job's killed connections may still hold its ports (crd keeps
        # a killed tree's network locked: its orphaned sockets linger there a while)
        new = sbatch(f"--restart-from={jobid}", "-N", str(s.NODES), "-x", first, "-t", "5",
                     "-o", nout, script)
        assert new != jobid
        # the old job's program runs again, in the new job, from its checkpoint
        deadline = time.time() + 120
        while len(_iterations(s._read(out))) <= len(stopped):
            j = c.job(new)
            assert time.time() < deadline and j["JobState"] in ("PENDING", "RUNNING"), \
                f"job {new} did not resume job {jobid} ({j['JobState']}): " \
                f"{s._read(nout)[-2000:]} {s._read(out)[-1000:]}"
            time.sleep(0.2)
        _wait_registered(c, new, s.NODES)
        code, text = _crjob(c, "checkpoint", new, user=user)
        assert code == 0 and "generation 1 committed" in text, \
            f"crjob checkpoint of the new job failed ({code}): {text}"
        j = c.wait_done(new, 300)
        text, ntext = s._read(out), s._read(nout)
        assert j["JobState"] == "COMPLETED", f"job {new} {j['JobState']}: {ntext[-3000:]}"
        code, names = c.cmd("scontrol", "show", "hostnames", f"{first},{j['NodeList']}")
        assert len(set(names.split())) == 2 * s.NODES, f"ran on {j['NodeList']} after {first}"
        assert not re.search(r"^batch ", ntext, re.M) and \
            len(re.findall(r"^batch ", text, re.M)) == 1, \
            f"the batch script ran again instead of the restore: {ntext[-2000:]}"
        assert f"crjob resume: job {new}" in ntext, ntext[-2000:]
        its = _iterations(text)
        assert its.count(0) == 1, f"the program started over: {its}"
        resumed = its[len(stopped)]
        assert before < resumed <= stopped[-1] + iters // 10 and its[-1] == iters - 1, \
            f"resumed at {resumed}, checkpoint after {before}, stopped at {stopped[-1]}: {its}"
        assert s._results(text) == [want], f"result {s._results(text)}, want {want}: {text}"
        r = _runner.run([crd, "store", "ls", new, "--store", store])
        assert _gens(r.out) == [1], f"generations of job {new}: {r.out}"
        r = _runner.run([crd, "store", "ls", jobid, "--store", store])
        assert _gens(r.out) == [1], f"generations of job {jobid}: {r.out}"
        for job in (jobid, new):
            st = os.stat(os.path.join(store, "jobs", job))
            assert st.st_uid == (user or 0) and st.st_mode & 0o777 == 0o700, \
                f"job {job}'s directory: uid {st.st_uid} mode {st.st_mode:o}"
    finally:
        c.down()


def restart_from_owner(env):
    """a user's job (nobody's, not root's: its coordinator, crjob, --restart-from run as
    that user, mpirun's remote daemons started by the agents with CRMPI_VIA=agent): the
    owner stops it with a checkpoint (`crjob checkpoint JOBID --stop`) and submits a new
    one with `sbatch --restart-from=JOBID` on other nodes: its batch step restores that
    generation instead of running its script (slurmd's copy of the script recreated in the
    new node's spool for the user), the old job's program goes on from its checkpoint (in
    its own output file) and ends with the result of an uninterrupted run; the new job's
    coordinator has the restored trees: `crjob checkpoint NEWJOB` makes its generation 1;
    the jobs' directories are the user's"""
    _restart_from(env, NOBODY)


CASES.append(("restart-from-owner", restart_from_owner))
