"""Preemption and time limits of a real --checkpoint job (tests/slurm/cluster, agents
on every node, the SPANK plugin loaded): an unmodified mpirun job whose batch task
is `crjob batch` is checkpointed when Slurm's SIGTERM comes, requeued, and resumes
from that checkpoint on the nodes it gets next."""
import os
import re
import sys
import time

_runner = sys.modules["__main__"]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import caseload  # noqa: E402


def _slurm():
    return caseload.load("cases_slurm")


def _crj():
    return caseload.load("cases_slurm_crjob")


MIB = 1 << 20
# the preempted job: about 20 s of work, 1 MiB between nodes each iteration
# (kept short since restored jobs ran several times slower, until crd stopped
# fixing the size of restored sockets' buffers: docs/slurm.md)
ITERS = 80
SLEEP_MS = 250
BIG = MIB
STOP = "SIGTERM: checkpoint, then stop"     # crjob batch, when Slurm's SIGTERM comes


def _every(iters):
    """mpi_app's rank 0 prints "it N" that often"""
    return max(iters // 10, 1)


def _script(env, c, iters, sleep_ms=100, big=4 * MIB, srun=False):
    """a batch script that runs mpi_app on all its nodes with mpirun and crmpi-rsh, or
    with `srun --mpi=pmix` (which the plugin's crmpi= steers to mpirun and crmpi-rsh)"""
    s = _slurm()
    rsh = os.path.join(env.srcdir, "crmpi", "crmpi-rsh")
    if srun:
        return c.script_file("srun.sh", f"""
echo batch $$ restart=${{SLURM_RESTART_COUNT:--}}
export OMPI_MCA_btl=self,tcp,vader OMPI_MCA_btl_tcp_if_include=eth0
srun --mpi=pmix -n {s.NODES * s.PPN} {s._app(env, "openmpi")} {iters} {sleep_ms} {big}
echo launcher exit $?
""")
    return c.script_file("mpirun.sh", f"""
echo batch $$ restart=${{SLURM_RESTART_COUNT:--}}
export OMPI_MCA_plm=rsh OMPI_MCA_plm_rsh_agent={rsh} CRMPI_HOSTS={_crj()._hosts_file(c)}
export OMPI_MCA_btl=self,tcp,vader OMPI_MCA_btl_tcp_if_include=eth0 \\
    OMPI_MCA_oob_tcp_if_include=eth0 OMPI_MCA_btl_vader_single_copy_mechanism=none
export TMPDIR={c.work}
mpirun.openmpi -np {s.NODES * s.PPN} --map-by ppr:{s.PPN}:node {s._app(env, "openmpi")} \\
    {iters} {sleep_ms} {big}
echo launcher exit $?
""")


def _gens(c, jobid):
    r = _runner.run([c.env.crd, "store", "ls", jobid, "--store", os.path.join(c.dir, "store")])
    return _crj()._gens(r.out)


def _wait_registered(c, jobid, nodes, timeout=30):
    """until the coordinator knows a tree on `nodes` nodes (crjob batch, crmpi-rsh)"""
    names = "|".join(re.escape(n["name"]) for n in c.state["nodes"])
    deadline = time.time() + timeout
    while True:
        code, out = _crj()._crjob(c, "--json", "status", jobid)
        if code == 0 and len(set(re.findall(rf'"name":\s*"({names})"', out))) >= nodes:
            return
        assert time.time() < deadline, f"job {jobid}: trees not registered: {code} {out}"
        time.sleep(0.3)


def _batch_pid_registered(c, jobid, text):
    """the batch tree the coordinator knows is the script's shell (`batch $$`), not
    crjob batch, Slurm's task"""
    shell = re.search(r"^batch (\d+) ", text, re.M).group(1)
    code, out = _crj()._crjob(c, "--json", "status", jobid)
    assert code == 0 and re.search(rf'"pid":\s*{shell}\b', out), \
        f"the script's shell {shell} is not a registered tree: {out}"


def _start(env, c, iters, args, sleep_ms=100, big=4 * MIB, srun=False):
    """sbatch --checkpoint of the mpirun (or srun) job on 3 nodes; once it runs and all
    its trees are registered: its id, output file, nodes"""
    s = _slurm()
    out = os.path.join(c.work, "job.out")
    jobid = c.sbatch("--requeue", "--checkpoint", *args, "-N", str(s.NODES),
                     f"--ntasks-per-node={s.PPN}", "-o", out,
                     _script(env, c, iters, sleep_ms, big, srun), extra=_crj()._crjob_env(c))
    _crj()._wait_iteration(c, jobid, out, 1)
    _wait_registered(c, jobid, s.NODES)
    _batch_pid_registered(c, jobid, s._read(out))
    assert _gens(c, jobid) == [], "a generation before any SIGTERM"
    return jobid, out, c.job(jobid)


def _wait_stopped(c, jobid, out, timeout=120):
    """the output once crjob batch has told how its checkpoint at SIGTERM went"""
    deadline = time.time() + timeout
    while True:
        text = _slurm()._read(out)
        if re.search(rf"^(job {jobid}: generation \d+ committed|crjob batch: job {jobid}: "
                     r"no checkpoint)", text, re.M):
            return text
        assert time.time() < deadline and c.job(jobid)["JobState"] != "COMPLETED", \
            f"crjob batch did not checkpoint: {text[-3000:]}"
        time.sleep(0.2)


def _wait_line(out, pattern, timeout=30):
    """the output once a line matches pattern"""
    deadline = time.time() + timeout
    while not re.search(pattern, _slurm()._read(out), re.M):
        assert time.time() < deadline, f"no line {pattern}: {_slurm()._read(out)[-3000:]}"
        time.sleep(0.2)
    return _slurm()._read(out)


def _check_stopped(env, c, jobid, text, iters):
    """one generation, committed after the SIGTERM and verified; the iteration the
    job had printed last before it"""
    m = re.search(rf"^job {jobid}: generation (\d+) committed.*$", text, re.M)
    assert STOP in text and m and text.index(STOP) < m.start(), \
        f"no checkpoint at Slurm's SIGTERM: {text[-3000:]}"
    gen = int(m.group(1))
    assert _gens(c, jobid) == [gen], f"generations {_gens(c, jobid)}, want [{gen}]"
    r = _runner.run([env.crd, "store", "verify", jobid, str(gen), "--store",
                     os.path.join(c.dir, "store")])
    assert r.code == 0, f"verify of generation {gen}: {r.out}"
    at = _crj()._iterations(text.split(STOP)[0])[-1]
    assert at < iters - 1, f"the job had ended before the SIGTERM (iteration {at})"
    return at


def _check_resumed(env, c, jobid, out, at, iters, big=BIG):
    """the job ran again (Restarts=1) from the generation, not from the start, and
    ended with the result of an uninterrupted run; its scontrol fields"""
    s = _slurm()
    try:
        j = c.wait_done(jobid, 300)
    except AssertionError as e:
        raise AssertionError(f"{e}: {s._read(out)[-3000:]}")
    text = s._read(out)
    assert j["JobState"] == "COMPLETED" and j["Restarts"] == "1", \
        f"job {jobid}: {j['JobState']}, restarts {j['Restarts']}: {text[-3000:]}"
    assert len(re.findall(r"^batch ", text, re.M)) == 1 and "crjob resume: job" in text, \
        f"the batch script ran again instead of being restored: {text[-3000:]}"
    its = _crj()._iterations(text)
    assert its.count(0) == 1 and its[-1] == iters - 1, f"iterations {its}"
    # rank 0 prints every so many iterations: the restored ranks print the next one
    after = _crj()._iterations(text.split(STOP)[1])
    assert after and 0 < after[0] <= at + _every(iters), \
        f"after the checkpoint at iteration {at} the job went on from {after[:3]}"
    want = s.reference(env, iters, big)
    assert s._results(text) == [want], f"RESULT {s._results(text)}, want {want}: {text[-2000:]}"
    assert re.search(r"^launcher exit 0$", text, re.M), \
        f"the launcher did not end well: {text[-2000:]}"
    # SIGTERM was not delivered again after the restore: the restored job ran to its end
    assert text.count(STOP) == 1, f"more than one SIGTERM taken: {text[-3000:]}"
    return j, text


def _preempt(env, signal_args, srun=False):
    """the mpirun (or srun --mpi=pmix) job on 3 of 4 nodes in partition low, preempted
    by a high job on its batch node that holds the node until the low job has ended
    elsewhere; the low job's output"""
    _crj()._need_crjob(env)
    s = _slurm()
    s.reference(env, ITERS, BIG)
    c = caseload.load("cases_slurm_mpich")._crmpi_cluster(env, s.NODES + 1) if srun else \
        s.Cluster(env, nodes=s.NODES + 1)
    try:
        low, out, j = _start(env, c, ITERS, ("-p", "low", "-t", "8") + signal_args,
                             SLEEP_MS, BIG, srun)
        _crj()._wait_iteration(c, low, out, 2 * _every(ITERS))
        hout = os.path.join(c.work, "high.out")
        high = c.sbatch("-p", "high", "-N", "1", "-w", j["BatchHost"], "-t", "3", "-o", hout,
                        "--wrap", f"echo high on $(hostname); "
                        f"while ! grep -q '^launcher exit' {out}; do sleep 1; done")
        c.wait_job(low, lambda j: j["Restarts"] == "1", "was not requeued", 90)
        text = _wait_stopped(c, low, out)
        at = _check_stopped(env, c, low, text, ITERS)
        done, text = _check_resumed(env, c, low, out, at, ITERS, BIG)
        assert done["NodeList"] != j["NodeList"], \
            f"ran on {j['NodeList']} again, where the high job runs: {text[-2000:]}"
        h = c.wait_done(high, 60)
        assert h["JobState"] == "COMPLETED" and f"high on {j['BatchHost']}" in s._read(hout), \
            f"high job {h['JobState']}: {s._read(hout)}"
        return text
    finally:
        c.down()


def preempted_checkpoint_in_grace(env):
    """mpirun on 3 nodes, sbatch --checkpoint --signal=B:TERM@60 in partition low
    (PreemptMode=REQUEUE, GraceTime=5, SlurmctldParameters=preempt_send_user_signal):
    a high job preempts it; crjob batch gets SIGTERM at once, commits a generation,
    stops and requeues the job before GraceTime is over; the job resumes from that
    generation on the 3 other nodes and ends with the result of an uninterrupted run"""
    text = _preempt(env, ("--signal=B:TERM@60",))
    # Slurm's own end of GraceTime ("DUE TO PREEMPTION") never came: crjob requeued it first
    assert re.search(r"^crjob batch: job \d+: requeued$", text, re.M) and \
        "DUE TO PREEMPTION" not in text, f"not requeued within GraceTime: {text[-3000:]}"


def preempted_checkpoint_at_grace_end(env):
    """the same without --signal, with `srun --mpi=pmix` (run through mpirun by the
    plugin's crmpi=): Slurm's SIGTERM reaches the batch task only when GraceTime ends
    and the job is requeued; crjob batch checkpoints within KillWait, leaves the
    requeue to Slurm, and the job resumes from that generation"""
    text = _preempt(env, (), srun=True)
    m = re.search(r"^.*DUE TO PREEMPTION.*$", text, re.M)
    assert m and m.start() < text.index(STOP), \
        f"the SIGTERM did not come at the end of GraceTime: {text[-3000:]}"


TWICE_ITERS = 120


def preempted_twice(env):
    """the in-grace case twice: after its first resume (on 3 other nodes of 5) the job
    is preempted again, now with `crjob resume` as its batch task, which takes the
    SIGTERM the same way; the job resumes from the second generation on the 3 nodes
    left and ends with the result of an uninterrupted run"""
    _crj()._need_crjob(env)
    s = _slurm()
    want = s.reference(env, TWICE_ITERS, BIG)
    c = s.Cluster(env, nodes=s.NODES + 2)
    try:
        low, out, j = _start(env, c, TWICE_ITERS, ("-p", "low", "-t", "10",
                                                   "--signal=B:TERM@60"), SLEEP_MS, BIG)
        every = _every(TWICE_ITERS)
        _crj()._wait_iteration(c, low, out, 2 * every)
        highs = []
        for n in (1, 2):
            host = c.job(low)["BatchHost"]
            hout = os.path.join(c.work, f"high{n}.out")
            highs.append((c.sbatch("-p", "high", "-N", "1", "-w", host, "-t", "5", "-o", hout,
                                   "--wrap", f"echo high on $(hostname); "
                                   f"while ! grep -q '^launcher exit' {out}; do sleep 1; done"),
                          host, hout))
            c.wait_job(low, lambda j: j["Restarts"] == str(n), "was not requeued", 90)
            text = _wait_line(out, rf"^job {low}: generation {n} committed", 120)
            if n == 1:
                at = _check_stopped(env, c, low, text, TWICE_ITERS)
                # preempted again once the restored job has gone on
                _wait_line(out, rf"^it {at + 2 * every}$", 240)
        j = c.wait_done(low, 300)
        text = s._read(out)
        assert j["JobState"] == "COMPLETED" and j["Restarts"] == "2", \
            f"job {low}: {j['JobState']}, restarts {j['Restarts']}: {text[-3000:]}"
        assert text.count(STOP) == 2 and len(re.findall(r"^batch ", text, re.M)) == 1, \
            f"not two checkpoints of one run of the script: {text[-3000:]}"
        assert sorted(_gens(c, low)) == [1, 2], f"generations {_gens(c, low)}"
        second = text.split(STOP)[2]
        at2 = _crj()._iterations(text.split(STOP)[1])[-1]
        after = _crj()._iterations(second)
        assert after and at2 < after[0] <= at2 + every, \
            f"after the second checkpoint at iteration {at2} the job went on from {after[:3]}"
        assert _crj()._iterations(text).count(0) == 1 and s._results(text) == [want], \
            f"RESULT {s._results(text)}, want {want}: {text[-3000:]}"
        for high, host, hout in highs:
            h = c.wait_done(high, 60)
            assert h["JobState"] == "COMPLETED" and f"high on {host}" in s._read(hout), \
                f"high job {h['JobState']}: {s._read(hout)}"
    finally:
        c.down()


TL_ITERS = 250
TL_SLEEP_MS = 300   # at least 75 s of work: more than the minute before the signal


def time_limit_requeued(env):
    """sbatch --checkpoint -t 3 --signal=B:TERM@120: Slurm sends SIGTERM to the batch
    task 1.5 to 2.5 minutes before the limit (about 30 to 60 s into the run); crjob batch
    commits a generation, stops the job and requeues it, which resumes from that
    generation and, its time limit raised meanwhile, ends with the result of an
    uninterrupted run instead of TIMEOUT"""
    _crj()._need_crjob(env)
    s = _slurm()
    s.reference(env, TL_ITERS, MIB)
    c = s.Cluster(env, nodes=s.NODES + 1)
    try:
        jobid, out, _ = _start(env, c, TL_ITERS, ("-t", "3", "--signal=B:TERM@120"),
                               TL_SLEEP_MS, MIB)
        c.wait_job(jobid, lambda j: j["Restarts"] == "1", "was not requeued", 150)
        text = _wait_stopped(c, jobid, out)
        at = _check_stopped(env, c, jobid, text, TL_ITERS)
        _wait_line(out, rf"^crjob batch: job {jobid}: requeued$")
        # the second run would get the same signal half a minute in: it has time now
        code, o = c.cmd("scontrol", "update", f"JobId={jobid}", "TimeLimit=10")
        assert code == 0, f"scontrol update TimeLimit: {o}"
        _check_resumed(env, c, jobid, out, at, TL_ITERS, MIB)
    finally:
        c.down()


CASES = [("mpirun-preempted-checkpoint-in-grace", preempted_checkpoint_in_grace),
         ("srun-pmix-preempted-checkpoint-at-grace-end", preempted_checkpoint_at_grace_end),
         ("mpirun-preempted-twice", preempted_twice),
         ("mpirun-time-limit-requeued", time_limit_requeued)]
