"""A real Slurm cluster of network-namespace nodes (tests/slurm/cluster): MPI jobs
across nodes, requeue, preemption, and the crjob SPANK plugin.

Every case brings its own cluster up in its temporary directory and takes it
down again (by the PIDs the cluster script recorded), so nothing outlives it.
"""
import json
import os
import pwd
import re
import shutil
import sys
import time
import unittest

_runner = sys.modules["__main__"]

NODES = 3
PPN = 2
ITERS = 20
MIB = 1 << 20
SLURM_PLUGINS = "/usr/lib/x86_64-linux-gnu/slurm-wlm"

# the result of an uninterrupted run of mpi_app, by iteration count
_reference = {}


def _need(*progs):
    for p in progs:
        if not (shutil.which(p) or os.path.exists(f"/usr/sbin/{p}")):
            raise unittest.SkipTest(f"{p} is not installed (apt-get install slurm-wlm munge "
                                    "openmpi-bin libopenmpi-dev mpich libmpich-dev)")


def _app(env, mpi):
    exe = os.path.join(env.builddir, "tests", "slurm", f"mpi_app.{mpi}")
    if not os.access(exe, os.X_OK):
        raise unittest.SkipTest(f"{exe} is not built (configure found no working mpicc.{mpi})")
    return exe


def _spawn_wait(argv, env, out, timeout):
    pid = _runner.spawn(argv, out=out, env=env)
    st = _runner.wait_for(pid, timeout)
    if st is None:
        _runner.kill_tree(pid)
        raise AssertionError(f"{' '.join(argv)}: timed out: {_read(out)[-2000:]}")
    return _runner.exit_code(st)


def _read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _results(text):
    return re.findall(r"^RESULT ([0-9a-f]{16})$", text, re.M)


def reference(env, iters, big=4 * MIB):
    """RESULT of mpi_app with NODES*PPN ranks on this host, no cluster, no checkpoint"""
    if (iters, big) in _reference:
        return _reference[iters, big]
    out = os.path.join(env.tmpdir, f"reference-{iters}-{big}.log")
    e = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
             OMPI_MCA_btl="self,vader", OMPI_MCA_btl_vader_single_copy_mechanism="none",
             TMPDIR=env.tmpdir)
    n = str(NODES * PPN)
    if shutil.which("mpiexec.hydra") and os.access(
            os.path.join(env.builddir, "tests", "slurm", "mpi_app.mpich"), os.X_OK):
        argv = [shutil.which("mpiexec.hydra"), "-np", n, _app(env, "mpich"), str(iters), "0",
                str(big)]
    else:
        argv = [shutil.which("mpirun.openmpi"), "--oversubscribe", "-np", n,
                _app(env, "openmpi"), str(iters), "0", str(big)]
    code = _spawn_wait(argv, e, out, 120)
    res = _results(_read(out))
    assert code == 0 and len(res) == 1, f"reference run failed ({code}): {_read(out)[-2000:]}"
    _reference[iters, big] = res[0]
    return res[0]


class Cluster:
    def __init__(self, env, nodes=NODES, up_args=()):
        _need("slurmctld", "slurmd", "munged", "srun", "sbatch", "scontrol", "nsenter",
              "unshare", "ip")
        try:
            pwd.getpwnam("munge")
        except KeyError:
            raise unittest.SkipTest("no user munge (apt-get install munge)")
        self.env = env
        # munged runs as user munge: it must reach its directory
        for d in (os.path.dirname(env.tmpdir), env.tmpdir):
            os.chmod(d, 0o755)
        self.dir = os.path.join(env.tmpdir, "cluster")
        self.work = os.path.join(env.tmpdir, "work")
        os.makedirs(self.work, exist_ok=True)
        os.chmod(self.work, 0o777)
        self.script = os.path.join(env.srcdir, "tests", "slurm", "cluster")
        self.state = None
        r = self.cluster("up", "--nodes", str(nodes), *up_args)
        assert r.code == 0, f"cluster up failed: {r.out}"
        with open(os.path.join(self.dir, "state.json")) as f:
            self.state = json.load(f)
        self.senv = dict(os.environ, SLURM_CONF=os.path.join(self.dir, "etc", "slurm.conf"),
                         OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        self.senv.pop("SLURM_JOB_ID", None)

    def cluster(self, *args):
        return _runner.run([sys.executable, self.script] + list(args) +
                           ["--dir", self.dir, "--builddir", self.env.builddir], timeout=120)

    def down(self):
        r = self.cluster("down")
        assert r.code == 0, f"cluster down failed: {r.out}"

    def cmd(self, *argv, timeout=60, extra=None):
        out = os.path.join(self.env.tmpdir, f"cmd-{time.time()}.log")
        e = dict(self.senv, **(extra or {}))
        prog = shutil.which(argv[0]) or argv[0]
        code = _spawn_wait([prog] + list(argv[1:]), e, out, timeout)
        text = _read(out)
        os.unlink(out)
        return code, text

    def sbatch(self, *args, extra=None):
        code, out = self.cmd("sbatch", "--parsable", *args, extra=extra)
        assert code == 0, f"sbatch {' '.join(args)} failed: {out}"
        return out.strip().split(";")[0]

    def job(self, jobid):
        """scontrol's fields of a job"""
        code, out = self.cmd("scontrol", "show", "job", "-o", jobid)
        assert code == 0, f"scontrol show job {jobid}: {out}"
        return dict(f.split("=", 1) for f in out.split() if "=" in f)

    def wait_job(self, jobid, pred, what, timeout):
        deadline = time.time() + timeout
        while True:
            j = self.job(jobid)
            if pred(j):
                return j
            assert time.time() < deadline, \
                f"job {jobid}: {what}: timed out in state {j.get('JobState')} " \
                f"({j.get('Reason')}, restarts {j.get('Restarts')})"
            time.sleep(0.5)

    def wait_done(self, jobid, timeout):
        return self.wait_job(jobid, lambda j: j["JobState"] in (
            "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"),
            "did not end", timeout)

    def veth_rx(self):
        """bytes each node sent into the bridge (host side of its veth)"""
        out = []
        for i in range(len(self.state["nodes"])):
            with open(f"/sys/class/net/crjsv{self.state['tag']}{i}/statistics/rx_bytes") as f:
                out.append(int(f.read()))
        return out

    def slurmd_log(self, node):
        return _read(os.path.join(self.dir, node, "slurmd.log"))

    def script_file(self, name, body):
        path = os.path.join(self.work, name)
        with open(path, "w") as f:
            f.write("#!/bin/sh\n" + body)
        os.chmod(path, 0o755)
        return path


def _stubs(env):
    """crjob and crjob-coord that log their arguments to calls.log and succeed;
    `crjob resume ... -- SCRIPT` runs SCRIPT, as a resume that cannot restore does,
    and so does `crjob batch ... -- SCRIPT` (the batch task's wrapper)"""
    stubs = os.path.join(env.tmpdir, "stubs")
    os.makedirs(stubs)
    calls = os.path.join(stubs, "calls.log")
    resume = ('case " $* " in *" resume "*|*" batch "*)\n'
              '\twhile [ $# -gt 0 ] && [ "$1" != -- ]; do shift; done\n'
              '\tshift; exec "$@";;\nesac\n')
    for name in ("crjob", "crjob-coord"):
        with open(os.path.join(stubs, name), "w") as f:
            f.write(f'#!/bin/sh\necho "{name} $*" >> {calls}\n' +
                    (resume if name == "crjob" else ""))
        os.chmod(os.path.join(stubs, name), 0o755)
    os.chmod(stubs, 0o777)
    return calls, ("--crjob", os.path.join(stubs, "crjob"),
                   "--coord", os.path.join(stubs, "crjob-coord"))


def _with_cluster(fn):
    """fn(env, c) on a cluster of its own whose plugin calls stubs of crjob and
    crjob-coord (c.calls logs them): what the plugin does does not depend on
    the coordinator being built"""
    def case(env):
        calls, up_args = _stubs(env)
        c = Cluster(env, up_args=up_args)
        c.calls = calls
        try:
            fn(env, c)
        finally:
            c.down()
    case.__doc__ = fn.__doc__
    return case


def _proc_gone(p):
    try:
        with open(f"/proc/{p['pid']}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19] != p["start"]
    except (OSError, IndexError):
        return True


def up_down_leaves_nothing(env):
    """cluster up (twice: idempotent) runs a step on every node; down (twice) leaves nothing"""
    c = Cluster(env)
    try:
        st = c.state
        assert len(st["nodes"]) == NODES
        assert all(not _proc_gone(p) for p in st["procs"]), "a daemon is not running"
        r = c.cluster("up", "--nodes", str(NODES))
        assert r.code == 0 and "already up" in r.out, f"second up: {r.out}"
        with open(os.path.join(c.dir, "state.json")) as f:
            assert json.load(f)["procs"] == st["procs"], "second up restarted daemons"
        code, out = c.cmd("srun", "-N", str(NODES), "-t", "1", "sh", "-c",
                          "echo $(hostname) $(ip -4 -o addr show eth0 | awk '{print $4}')")
        assert code == 0, f"srun failed: {out}"
        seen = sorted(out.split("\n")[:NODES])
        want = sorted(f"{n['name']} {n['ip']}/24" for n in st["nodes"])
        assert seen == want, f"steps ran on {seen}, not {want}"
        env_file = _read(os.path.join(c.dir, "env"))
        for k in ("SLURM_CONF", "PATH", "CRJOB_MUNGE_SOCKET", "CRJOB_NODES", "CRJOB_STORE"):
            assert f"export {k}=" in env_file, f"env file lacks {k}"
    finally:
        c.down()
    left = [p for p in st["procs"] if not _proc_gone(p)]
    assert not left, f"daemons left running: {left}"
    left = [n["netns"] for n in st["nodes"] if os.path.exists(n["netns"])]
    assert not left, f"namespaces left: {left}"
    assert not os.path.exists(f"/sys/class/net/{st['bridge']}"), f"bridge {st['bridge']} left"
    assert not os.path.exists(c.dir), f"{c.dir} left"
    r = c.cluster("down")
    assert r.code == 0, f"second down failed: {r.out}"


def _check_run(env, c, out, before, iters):
    text = _read(out)
    res = _results(text)
    assert res == [reference(env, iters)], \
        f"RESULT {res}, want {reference(env, iters)}: {text[-3000:]}"
    hosts = re.search(r"hosts=(\S+)", text).group(1).split(",")
    want = [n["name"] for n in c.state["nodes"] for _ in range(PPN)]
    assert sorted(hosts) == sorted(want), f"ranks ran on {hosts}"
    sent = [a - b for a, b in zip(c.veth_rx(), before)]
    # each node's ranks send a 4 MiB message to another node every iteration
    assert all(s >= iters * PPN * 4 * MIB for s in sent), \
        f"bytes each node sent on the network: {sent}: not TCP between nodes"


@_with_cluster
def openmpi_srun_pmix(env, c):
    """Open MPI, srun --mpi=pmix, 3 nodes x 2 ranks over TCP: the reference RESULT"""
    if not os.path.exists(os.path.join(SLURM_PLUGINS, "mpi_pmix.so")):
        raise unittest.SkipTest("Slurm's mpi/pmix plugin is missing")
    app = _app(env, "openmpi")
    out = os.path.join(c.work, "srun.out")
    before = c.veth_rx()
    code = _spawn_wait([shutil.which("srun"), "--mpi=pmix", "-N", str(NODES), "-n",
                        str(NODES * PPN), "--ntasks-per-node", str(PPN), "-t", "2", app,
                        str(ITERS), "10"],
                       dict(c.senv, OMPI_MCA_btl="self,tcp,vader",
                            OMPI_MCA_btl_tcp_if_include="eth0"), out, 150)
    assert code == 0, f"srun exited {code}: {_read(out)[-3000:]}"
    _check_run(env, c, out, before, ITERS)


def _batch(env, c, name, body, ucx_hangs=False):
    """run body as a batch job on all nodes, check its RESULT and traffic.

    ucx_hangs: MPICH over UCX's TCP transport (UCX 1.13) hangs now and then
    here, in MPI_Finalize after the last iteration (openucx/ucx#8738: TCP
    stops progressing endpoints before they are flushed) and, more rarely, at
    the start.  A job that printed the right RESULT and then hangs is
    cancelled and counts (the result and the traffic are checked); a job that
    hangs before its RESULT is run once more.
    """
    for attempt in range(2 if ucx_hangs else 1):
        out = os.path.join(c.work, f"{name}-{attempt}.out")
        before = c.veth_rx()
        jobid = c.sbatch("-N", str(NODES), "-t", "2", "-o", out,
                         c.script_file(f"{name}.sh", body))
        if ucx_hangs:
            deadline = time.time() + 60
            while not _results(_read(out)) and c.job(jobid)["JobState"] in (
                    "PENDING", "RUNNING") and time.time() < deadline:
                time.sleep(0.5)
            if not _results(_read(out)) and c.job(jobid)["JobState"] == "RUNNING":
                c.cmd("scancel", jobid)
                c.wait_done(jobid, 60)
                continue
            deadline = time.time() + 20
            while c.job(jobid)["JobState"] == "RUNNING" and time.time() < deadline:
                time.sleep(0.5)
            if c.job(jobid)["JobState"] == "RUNNING":
                c.cmd("scancel", jobid)
                c.wait_done(jobid, 60)
                _check_run(env, c, out, before, ITERS)
                return
        j = c.wait_done(jobid, 150)
        assert j["JobState"] == "COMPLETED", f"job {jobid} {j['JobState']}: {_read(out)[-3000:]}"
        _check_run(env, c, out, before, ITERS)
        return
    raise AssertionError(f"the job hung twice before its RESULT: {_read(out)[-2000:]}")


@_with_cluster
def openmpi_mpirun_sbatch(env, c):
    """Open MPI, mpirun inside sbatch, 3 nodes x 2 ranks over TCP: the reference RESULT"""
    _need("mpirun.openmpi")
    _batch(env, c, "mpirun", f"""
exec mpirun.openmpi --mca btl self,tcp,vader --mca btl_tcp_if_include eth0 \\
    --mca oob_tcp_if_include eth0 -np {NODES * PPN} --map-by ppr:{PPN}:node \\
    {_app(env, "openmpi")} {ITERS} 10
""")


@_with_cluster
def mpich_hydra_sbatch(env, c):
    """MPICH, mpiexec.hydra -iface eth0 inside sbatch, UCX_TLS=tcp: the reference RESULT"""
    _need("mpiexec.hydra")
    _batch(env, c, "hydra", f"""
export UCX_TLS=tcp UCX_NET_DEVICES=eth0
exec mpiexec.hydra -iface eth0 -np {NODES * PPN} -ppn {PPN} {_app(env, "mpich")} {ITERS} 10
""", ucx_hangs=True)


LONG_ITERS = 40
LONG_BIG = MIB      # the long jobs only need to run a while: spare the 2 CPUs


def _long_job(env, c):
    """a batch script whose MPI step runs for some seconds; it stays alive when the
    step is killed, as a checkpointing job's batch step must (preemption kills the
    step at once and the job only after GraceTime)"""
    return c.script_file("long.sh", f"""
echo batch restart=${{SLURM_RESTART_COUNT:--}} restore-generation=${{CRJOB_RESTORE_GENERATION:--}}
export OMPI_MCA_btl=self,tcp,vader OMPI_MCA_btl_tcp_if_include=eth0
srun --mpi=pmix -N {NODES} -n {NODES * PPN} --ntasks-per-node {PPN} \\
    {_app(env, "openmpi")} {LONG_ITERS} 50 {LONG_BIG} || sleep 120
""")


def _wait_progress(c, jobid, out, n):
    deadline = time.time() + 60
    while len(re.findall(r"^it ", _read(out), re.M)) < n:
        j = c.job(jobid)
        assert time.time() < deadline and j["JobState"] in ("PENDING", "RUNNING"), \
            f"job {jobid} made no progress ({j['JobState']}): {_read(out)[-2000:]}"
        time.sleep(0.2)


def _check_restarted(env, c, jobid, out):
    j = c.wait_done(jobid, 180)
    text = _read(out)
    assert j["JobState"] == "COMPLETED" and j["Restarts"] == "1", \
        f"job {jobid}: {j['JobState']}, restarts {j['Restarts']}: {text[-3000:]}"
    starts = re.findall(r"^start .*restart=(\S+)", text, re.M)
    assert starts == ["-", "1"], f"the runs saw SLURM_RESTART_COUNT {starts}: {text[-3000:]}"
    # no restore yet: the second run starts from iteration 0 and gets the full result
    its = [int(x) for x in re.findall(r"^it (\d+)$", text, re.M)]
    assert its.count(0) == 2, f"iterations {its}"
    assert _results(text) == [reference(env, LONG_ITERS, LONG_BIG)], \
        f"RESULT {_results(text)}: {text[-2000:]}"
    return text


def _make_generation(env, c, jobid):
    """a real committed generation of jobid in the cluster's store (of a sleep)"""
    crd = os.path.join(env.builddir, "crd", "crd")
    if not os.access(crd, os.X_OK):
        return None
    pid = _runner.spawn([shutil.which("sleep"), "1000"])
    try:
        r = _runner.run([crd, "dump", "-t", str(pid), "--store", os.path.join(c.dir, "store"),
                         "--job", jobid, "--leave-running"])
        assert r.code == 0, f"crd dump into the store failed: {r.out}"
        r = _runner.run([crd, "store", "ls", jobid, "--store", os.path.join(c.dir, "store")])
        gens = [int(l.split()[1]) for l in r.out.splitlines()[1:] if l.split()[:1] == [jobid]]
        assert r.code == 0 and gens, f"crd store ls: {r.out}"
        return max(gens)
    finally:
        _runner.kill_tree(pid)


@_with_cluster
def requeue_restarts(env, c):
    """scontrol requeue of a running --checkpoint job: the plugin asks for a
    checkpoint first (stub crjob), the job runs again with SLURM_RESTART_COUNT=1,
    the plugin finds the job's committed generation and runs `crjob resume` with the
    batch script after --; the stub cannot restore, so the script starts over and the
    job ends with the reference RESULT (the real resume: tests/cases_slurm_crjob.py)"""
    _need("mpirun.openmpi")
    out = os.path.join(c.work, "long.out")
    jobid = c.sbatch("-H", "--checkpoint", "-N", str(NODES), "-t", "3", "--open-mode=append",
                     "-o", out, _long_job(env, c))
    gen = _make_generation(env, c, jobid)
    code, o = c.cmd("scontrol", "release", jobid)
    assert code == 0, f"scontrol release: {o}"
    _wait_progress(c, jobid, out, 3)
    code, o = c.cmd("scontrol", "requeue", jobid)
    assert code == 0, f"scontrol requeue: {o}"
    text = _check_restarted(env, c, jobid, out)
    node1 = c.state["nodes"][0]["name"]
    # scontrol requeue's SIGTERM to the step's tasks asked for a checkpoint first
    stop = f"crjob --store {os.path.join(c.dir, 'store')} --munge-socket {c.state['munge_socket']} " \
        f"checkpoint {jobid} --stop"
    got = _read(c.calls).splitlines()
    # by the step's watcher, and maybe the batch shell's (both get requeue's SIGTERM)
    assert 1 <= got.count(stop) <= 2, f"checkpoint --stop asked {got.count(stop)} times: {got}"
    if gen is not None:
        assert re.search(rf"^batch restart=1 restore-generation={gen}$", text, re.M), \
            f"the restarted batch step did not learn generation {gen}: {text[:2000]}"
        resume = f"crjob --store {os.path.join(c.dir, 'store')} resume {jobid} " \
            f"--generation {gen} --node {node1},"
        assert [l for l in got if l.startswith(resume)], \
            f"the batch step did not ask to resume instead of starting over: {got}"
        assert f"generation {gen} of job {jobid}" in c.slurmd_log(node1), \
            "the plugin did not log the generation it found"


def requeue_restores_batch(env):
    """restore instead of launch (plugstack restore=1): a one-node --checkpoint batch
    job is checkpointed into the store (crd dump --leave-running of its batch
    tree), requeued, and on its second run the plugin execs crd restore in place
    of the script: the job goes on from the checkpoint, not from the beginning"""
    if not os.path.exists(os.path.join(env.builddir, "slurm-spank", "spank_crjob.so")):
        raise unittest.SkipTest("spank_crjob.so is not built (no slurm/spank.h: libslurm-dev)")
    crd = os.path.join(env.builddir, "crd", "crd")
    calls, up_args = _stubs(env)
    c = Cluster(env, up_args=up_args + ("--spank-arg", "restore=1"))
    try:
        node1 = c.state["nodes"][0]["name"]
        out = os.path.join(c.work, "count.out")
        script = c.script_file("count.sh", """
i=0
while [ $i -lt 30 ]; do echo "count $i"; i=$((i+1)); sleep 0.5; done
echo done
""")
        jobid = c.sbatch("--checkpoint", "-N", "1", "-w", node1, "-t", "2",
                         "--open-mode=append", "-o", out, script)
        deadline = time.time() + 60
        while "count 4" not in _read(out):
            assert time.time() < deadline, f"the job did not count: {_read(out)}"
            time.sleep(0.2)
        m = re.search(rf"crjob: job {jobid} step batch node {node1} tasks (\d+)",
                      c.slurmd_log(node1))
        assert m, "the batch step was not registered"
        r = _runner.run([crd, "dump", "-t", m.group(1), "--store", os.path.join(c.dir, "store"),
                         "--job", jobid, "--leave-running"])
        assert r.code == 0, f"crd dump of the batch step failed: {r.out}"
        at = max(int(x) for x in re.findall(r"^count (\d+)$", _read(out), re.M))
        code, o = c.cmd("scontrol", "requeue", jobid)
        assert code == 0, f"scontrol requeue: {o}"
        j = c.wait_done(jobid, 120)
        text = _read(out)
        assert j["JobState"] == "COMPLETED" and j["Restarts"] == "1", \
            f"job {jobid}: {j['JobState']}, restarts {j['Restarts']}: {text}"
        counts = [int(x) for x in re.findall(r"^count (\d+)$", text, re.M)]
        assert counts.count(0) == 1, f"the job started over: {counts}"
        assert text.rstrip().endswith("done") and counts[-1] == 29, f"did not finish: {text}"
        # after the requeue the count goes on from where the dump saw it (<= at + 1)
        assert "DUE TO JOB REQUEUE" in text, f"not requeued: {text}"
        after = [int(x) for x in re.findall(r"^count (\d+)$", text.split("DUE TO JOB REQUEUE")[1],
                                            re.M)]
        assert after and 0 < after[0] <= at + 1 and after == list(range(after[0], 30)), \
            f"the restored job did not go on from the checkpoint (count {at}): {counts}"
        assert f"job {jobid}: restoring the batch step from generation" in c.slurmd_log(node1)
    finally:
        c.down()


def _preempt(env, c, *low_args):
    out = os.path.join(c.work, "long.out")
    low = c.sbatch("-p", "low", "--requeue", *low_args, "-N", str(NODES), "-t", "3",
                   "--open-mode=append", "-o", out, _long_job(env, c))
    _wait_progress(c, low, out, 3)
    node1 = c.state["nodes"][0]["name"]
    hout = os.path.join(c.work, "high.out")
    high = c.sbatch("-p", "high", "-N", "1", "-w", node1, "-t", "1", "-o", hout,
                    "--wrap", "echo high on $(hostname)")
    c.wait_job(low, lambda j: j["Restarts"] == "1", "was not requeued", 60)
    j = c.wait_done(high, 60)
    assert j["JobState"] == "COMPLETED" and f"high on {node1}" in _read(hout), \
        f"high job {j['JobState']}: {_read(hout)}"
    text = _check_restarted(env, c, low, out)
    assert "DUE TO PREEMPTION" in text, f"not preempted: {text[-2000:]}"
    return low


@_with_cluster
def preempt_requeues(env, c):
    """a job in partition low is preempted by one in high on the same node: requeued
    (GraceTime, then SLURM_RESTART_COUNT=1), the high job runs, the low one ends right"""
    _preempt(env, c)


def preempt_checkpoint_first(env):
    """preemption of a --checkpoint job: the SIGTERM Slurm sends the step's tasks makes
    the plugin ask for `crjob checkpoint JOBID --stop` first (crjob is a stub), then
    the tasks go (they block SIGTERM: SIGKILL), the job is requeued and ends right"""
    if not os.path.exists(os.path.join(env.builddir, "slurm-spank", "spank_crjob.so")):
        raise unittest.SkipTest("spank_crjob.so is not built (no slurm/spank.h: libslurm-dev)")
    calls, up_args = _stubs(env)
    c = Cluster(env, up_args=up_args)
    try:
        low = _preempt(env, c, "--checkpoint")
        store = os.path.join(c.dir, "store")
        got = _read(calls).splitlines()
        ms = c.state["munge_socket"]
        stops = [g for g in got
                 if g == f"crjob --store {store} --munge-socket {ms} checkpoint {low} --stop"]
        # the step's tasks at once; the batch shell's watcher again at the end of GraceTime
        assert 1 <= len(stops) <= 2, f"checkpoint --stop asked {len(stops)} times: {got}"
        node1 = c.state["nodes"][0]["name"]
        assert f"job {low} step 0: SIGTERM: checkpoint --stop" in c.slurmd_log(node1), \
            "the watcher of task 0 did not log the checkpoint"
    finally:
        c.down()


@_with_cluster
def spank_options(env, c):
    """sbatch/srun take --checkpoint[=INTERVAL], --checkpoint-dir, --restart-from; bad
    values are refused with a clear error; the values reach the tasks; each node's
    task PIDs of the srun step are logged (crjob missing: the job still completes)"""
    so = os.path.join(env.builddir, "slurm-spank", "spank_crjob.so")
    if not os.path.exists(so):
        raise unittest.SkipTest("spank_crjob.so is not built (no slurm/spank.h: libslurm-dev)")
    for bad, words in ((["--checkpoint=bogus"], ["--checkpoint=bogus", "interval"]),
                       (["--checkpoint=0"], ["--checkpoint=0", "interval"]),
                       (["--checkpoint=5x"], ["--checkpoint=5x", "interval"]),
                       (["--checkpoint-dir=relative"], ["--checkpoint-dir=relative", "absolute"]),
                       (["--restart-from=abc"], ["--restart-from=abc", "job id"])):
        code, o = c.cmd("sbatch", *bad, "--wrap", "true")
        assert code != 0 and all(w in o for w in words), f"sbatch {bad}: {code}: {o}"
        code, o = c.cmd("srun", *bad, "-t", "1", "true")
        assert code != 0 and all(w in o for w in words), f"srun {bad}: {code}: {o}"
    out = os.path.join(c.work, "opts.out")
    store = os.path.join(c.work, "mystore")
    jobid = c.sbatch("--checkpoint=20s", f"--checkpoint-dir={store}", "--restart-from=77",
                     "-N", "2", "-t", "1", "-o", out, "--wrap",
                     "echo batch ck=$CRJOB_CHECKPOINT store=$CRJOB_STORE from=$CRJOB_RESTART_FROM; "
                     "srun -N 2 -n 4 sh -c 'echo task $SLURMD_NODENAME $$ ck=$CRJOB_CHECKPOINT'")
    j = c.wait_done(jobid, 60)
    text = _read(out)
    assert j["JobState"] == "COMPLETED", f"job {j['JobState']}: {text}"
    assert f"batch ck=20 store={store} from=77" in text, f"options did not reach the job: {text}"
    tasks = re.findall(r"^task (\S+) (\d+) ck=(\S*)$", text, re.M)
    assert len(tasks) == 4 and all(t[2] == "20" for t in tasks), f"tasks saw {tasks}"
    for node in {t[0] for t in tasks}:
        pids = sorted(int(t[1]) for t in tasks if t[0] == node)
        m = re.search(rf"crjob: job {jobid} step 0 node {node} tasks (\S+)", c.slurmd_log(node))
        assert m, f"no registration of step 0 on {node}"
        assert sorted(int(p) for p in m.group(1).split("+")) == pids, \
            f"{node}: registered {m.group(1)}, tasks were {pids}"
    # without a value: on demand only (0); srun inside takes the exported "(null)"
    jobid = c.sbatch("--checkpoint", "-N", "1", "-t", "1", "-o", out, "--open-mode=append",
                     "--wrap", "srun sh -c 'echo bare ck=$CRJOB_CHECKPOINT'")
    j = c.wait_done(jobid, 60)
    assert j["JobState"] == "COMPLETED" and "bare ck=0" in _read(out), \
        f"--checkpoint without a value: {j['JobState']}: {_read(out)}"
    code, o = c.cmd("srun", "--checkpoint=5m", "-t", "1", "sh", "-c", "echo ck=$CRJOB_CHECKPOINT")
    assert code == 0 and "ck=300" in o, f"srun --checkpoint=5m: {code}: {o}"
    # no batch script, nothing to restore: the user is told, the job runs
    assert "srun outside a batch job cannot be restored: no checkpoints" in o, \
        f"srun --checkpoint outside a batch job said nothing: {o}"
    code, o = c.cmd("salloc", "--checkpoint", "-N", "1", "-t", "1", "true")
    assert code == 0 and "an salloc allocation has no batch script" in o, \
        f"salloc --checkpoint: {code}: {o}"


def spank_calls(env):
    """with --checkpoint=30s the plugin starts the coordinator from the batch step,
    registers the batch task's PID, tells when the srun step begins and ends on each
    node, and shuts the coordinator down at the end (crjob and crjob-coord are stubs
    that log)"""
    if not os.path.exists(os.path.join(env.builddir, "slurm-spank", "spank_crjob.so")):
        raise unittest.SkipTest("spank_crjob.so is not built (no slurm/spank.h: libslurm-dev)")
    calls, up_args = _stubs(env)
    c = Cluster(env, up_args=up_args)
    try:
        store = os.path.join(c.dir, "store")
        out = os.path.join(c.work, "calls.out")
        jobid = c.sbatch("--checkpoint=30s", "-N", "2", "-t", "1", "-o", out, "--wrap",
                         "echo batch $$; srun -N 2 -n 4 sh -c 'echo task $SLURMD_NODENAME $$'")
        j = c.wait_done(jobid, 60)
        text = _read(out)
        assert j["JobState"] == "COMPLETED", f"job {j['JobState']}: {text}"
        ip = {n["name"]: n["ip"] for n in c.state["nodes"]}
        node1 = c.state["nodes"][0]["name"]
        ms = c.state["munge_socket"]
        want = [f"crjob-coord --job {jobid} --store {store} --listen {ip[node1]}:0 --owner 0 "
                f"--keep 3 --munge-socket {ms} --interval 30",
                # the batch task is crjob batch, which registers the script it runs
                (f"crjob --store {store} --munge-socket {ms} batch {jobid} --node "
                 f"{node1},{ip[node1]}:7710,{ip[node1]} --stop-timeout 20 -- /", None),
                f"crjob --store {store} --munge-socket {ms} shutdown {jobid}"]
        # the srun step's tasks are not trees of the job: the coordinator hears of the
        # step on each node, so that it takes no checkpoint while the step runs
        tasks = re.findall(r"^task (\S+) (\d+)$", text, re.M)
        for node in sorted({t[0] for t in tasks}):
            for what in ("begun", "ended"):
                want.append(f"crjob --store {store} --munge-socket {ms} register {jobid} "
                            f"--step-{what} {jobid}.0@{node}")
        deadline = time.time() + 15
        while True:
            got = _read(calls).splitlines()
            missing = []
            for w in want:
                if isinstance(w, str):
                    ok = w in got
                elif w[1] is None:
                    ok = any(g.startswith(w[0]) for g in got)
                else:
                    ok = any(g.startswith(w[0]) and sorted(g[len(w[0]):].split("+")) == w[1]
                             for g in got)
                if not ok:
                    missing.append(w)
            if not missing:
                break
            assert time.time() < deadline, f"calls missing: {missing}; calls made: {got}"
            time.sleep(0.2)
    finally:
        c.down()


CASES = [("cluster/up-down-leaves-nothing", up_down_leaves_nothing),
         ("mpi/openmpi-srun-pmix", openmpi_srun_pmix),
         ("mpi/openmpi-mpirun-sbatch", openmpi_mpirun_sbatch),
         ("mpi/mpich-hydra-sbatch", mpich_hydra_sbatch),
         ("spank/options", spank_options),
         ("spank/calls-coordinator-and-crjob", spank_calls),
         ("requeue/restarts", requeue_restarts),
         ("requeue/restore-batch-step", requeue_restores_batch),
         ("preempt/low-requeued-by-high", preempt_requeues),
         ("preempt/checkpoint-first", preempt_checkpoint_first)]
