"""crjob with MPICH on a real Slurm cluster (tests/slurm/cluster, agents on every
node, the SPANK plugin loaded): an unmodified MPICH job started with
mpiexec.hydra inside sbatch --checkpoint, its hydra_pmi_proxy daemons started
by crmpi-rsh, ranks talking UCX over TCP between nodes."""
import os
import re
import shutil
import sys
import time

_runner = sys.modules["__main__"]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import caseload  # noqa: E402


def _slurm():
    return caseload.load("cases_slurm")


def _crjob_cases():
    return caseload.load("cases_slurm_crjob")


ITERS = 120
SLEEP_MS = 100


def _rsh(env):
    return os.path.join(env.srcdir, "crmpi", "crmpi-rsh")


def _hydra_script(env, c, launcher=True, iters=ITERS):
    """a batch script that runs mpi_app.mpich on all its nodes with mpiexec.hydra,
    UCX on TCP only (its shared memory transports would work between the "nodes"
    of this one kernel) and hydra on eth0 (no -iface: it picks the wrong address).
    launcher: the script names crmpi-rsh as hydra's launcher itself, which starts
    the proxies through the node agents (CRMPI_VIA=agent: in the job's extern step,
    as on a real cluster; CRMPI_HOSTS only gives the nodes' addresses); else it is
    the plain script of a user, and the plugin's crmpi= and crmpi_hosts= point hydra
    at crmpi-rsh, which starts the proxies by nsenter into the namespace nodes."""
    s = _slurm()
    app = s._app(env, "mpich")
    hosts = _crjob_cases()._hosts_file(c)
    opts = f"-launcher rsh -launcher-exec {_rsh(env)} " if launcher else ""
    return c.script_file("hydra.sh", f"""
echo batch $$ restart=${{SLURM_RESTART_COUNT:--}}
{f"export CRMPI_HOSTS={hosts} CRMPI_VIA=agent" if launcher else ""}
export UCX_TLS=tcp UCX_NET_DEVICES=eth0
mpiexec.hydra {opts}-iface eth0 -np {s.NODES * s.PPN} -ppn {s.PPN} {app} {iters} {SLEEP_MS}
echo mpiexec exit $?
""")


def _crmpi_cluster(env, nodes):
    """a cluster whose plugin exports crmpi-rsh as the MPI launchers' agent
    (plugstack.conf crmpi=, crmpi_hosts=: the hosts file is written once the
    nodes exist, before any job reads it)"""
    s = _slurm()
    hosts = os.path.join(env.tmpdir, "work", "crmpi-hosts")
    c = s.Cluster(env, nodes=nodes, up_args=("--spank-arg", f"crmpi={_rsh(env)}",
                                             "--spank-arg", f"crmpi_hosts={hosts}",
                                             "--spank-arg", "iface=eth0"))
    _crjob_cases()._hosts_file(c)   # c.work is env.tmpdir/work
    return c


def _wait_registered(c, jobid, nodes, timeout=30):
    """until the coordinator knows a tree on each of nodes (plugin, crmpi-rsh)"""
    k = _crjob_cases()
    deadline = time.time() + timeout
    while True:
        code, out = k._crjob(c, "--json", "status", jobid)
        names = set(re.findall(r'"name":\s*"([^"]+)"', out))
        if code == 0 and set(nodes) <= names:
            return
        assert time.time() < deadline, f"job {jobid}: trees not registered: {code} {out}"
        time.sleep(0.3)


def _keep_logs(c, name):
    """CRJOB_TEST_KEEP=1: the cluster's logs and the job's output survive the case"""
    if not os.environ.get("CRJOB_TEST_KEEP"):
        return
    dst = os.path.join("/tmp", f"crjob-keep-{name}-{os.getpid()}")
    # never in the way of the cluster's teardown: sockets and the like fail to
    # copy, what could be copied is kept
    for src, to in ((c.dir, dst), (c.work, os.path.join(dst, "work"))):
        try:
            shutil.copytree(src, to, ignore_dangling_symlinks=True, dirs_exist_ok=True)
        except (shutil.Error, OSError):
            pass
    print(f"logs kept in {dst}", flush=True)


def checkpoint_mid_run(env):
    """sbatch --checkpoint, mpiexec.hydra on 3 nodes x 2 ranks (UCX over TCP), its
    proxies started by the node agents through crmpi-rsh: `crjob checkpoint JOBID`
    mid-run commits a generation with a tree on every node, the job goes on and ends
    with the result of an uninterrupted run"""
    k = _crjob_cases()
    k._need_crjob(env)
    s = _slurm()
    s._need("mpiexec.hydra")
    want = s.reference(env, ITERS)
    c = s.Cluster(env)
    try:
        out = os.path.join(c.work, "job.out")
        names = [n["name"] for n in c.state["nodes"]]
        before = c.veth_rx()
        jobid = c.sbatch("--checkpoint", "-N", str(s.NODES), "-t", "5", "-o", out,
                         _hydra_script(env, c), extra=k._crjob_env(c))
        k._wait_iteration(c, jobid, out, 20)
        _wait_registered(c, jobid, names)
        code, text = k._crjob(c, "checkpoint", jobid)
        assert code == 0 and "generation 1 committed" in text, \
            f"crjob checkpoint failed ({code}): {text}"
        at = k._iterations(s._read(out))[-1]
        j = c.wait_done(jobid, 120)
        text = s._read(out)
        assert j["JobState"] == "COMPLETED", f"job {j['JobState']}: {text[-2000:]}"
        assert s._results(text) == [want], f"result {s._results(text)}, want {want}: {text}"
        assert k._iterations(text)[-1] == ITERS - 1 and at < ITERS - 1, \
            k._iterations(text)
        assert "mpiexec exit 0" in text, f"mpiexec failed: {text[-2000:]}"
        sent = [a - b for a, b in zip(c.veth_rx(), before)]
        assert all(x >= ITERS * s.PPN * 4 * s.MIB for x in sent), \
            f"bytes each node sent on the network: {sent}: not TCP between nodes"
        r = _runner.run([env.crd, "store", "verify", jobid, "1", "--store",
                         os.path.join(c.dir, "store")])
        assert r.code == 0, f"verify of generation 1 failed: {r.out}"
        # a tree of every node (writers NODE-PID): mpiexec's and each proxy's
        r = _runner.run([env.crd, "store", "show", jobid, "1", "--store",
                         os.path.join(c.dir, "store")])
        writers = re.findall(r"^\s+(\S+)-\d+\s+pages ", r.out, re.M)
        assert r.code == 0 and sorted(writers) == sorted(names), \
            f"generation 1 holds trees of {writers}, want one of each of {names}: {r.out}"
    finally:
        _keep_logs(c, "mpich-ckpt")
        c.down()


CASES = [("hydra-checkpoint-mid-run", checkpoint_mid_run)]


def requeue_resumes_elsewhere(env):
    """a plain mpiexec.hydra script (the plugin's crmpi= makes crmpi-rsh hydra's
    launcher): checkpoint, then `scontrol requeue` with the old nodes excluded: the
    batch step restores the generation (mpiexec, hydra_pmi_proxy trees, ranks, their
    TCP connections) on 3 other nodes instead of running the script again; the job
    goes on from the checkpoint, not from the start, is checkpointed again there, and
    ends with the result of an uninterrupted run"""
    k = _crjob_cases()
    k._need_crjob(env)
    s = _slurm()
    s._need("mpiexec.hydra")
    want = s.reference(env, ITERS)
    c = _crmpi_cluster(env, 2 * s.NODES)
    try:
        out = os.path.join(c.work, "job.out")
        jobid = c.sbatch("--checkpoint", "-N", str(s.NODES), "-t", "5", "-o", out,
                         _hydra_script(env, c, launcher=False), extra=k._crjob_env(c))
        k._wait_iteration(c, jobid, out, 20)
        first = c.job(jobid)["NodeList"]
        _wait_registered(c, jobid, [n["name"] for n in c.state["nodes"][:s.NODES]])
        code, text = k._crjob(c, "checkpoint", jobid)
        assert code == 0 and "generation 1 committed" in text, \
            f"crjob checkpoint failed ({code}): {text}"
        at = k._iterations(s._read(out))[-1]
        before = c.veth_rx()
        k._requeue_elsewhere(c, jobid, first)
        # the resumed job is checkpointed again, on its new nodes
        deadline = time.time() + 180
        while True:
            t = s._read(out)
            if "DUE TO JOB REQUEUE" in t and k._iterations(t.split("DUE TO JOB REQUEUE", 1)[1]):
                break
            st = c.job(jobid)["JobState"]
            assert time.time() < deadline and st not in (
                "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"), \
                f"the job did not go on after the requeue ({st}): {t[-2000:]}"
            time.sleep(0.2)
        # (the requeue's SIGTERM may have made generation 2 already: crjob batch)
        code, text = k._crjob(c, "checkpoint", jobid)
        m = re.search(r"generation (\d+) committed", text)
        assert code == 0 and m and int(m.group(1)) >= 2, \
            f"checkpoint of the resumed job failed ({code}): {text}"
        r = _runner.run([env.crd, "store", "show", jobid, m.group(1), "--store",
                         os.path.join(c.dir, "store")])
        writers = re.findall(r"^\s+(\S+)-\d+\s+pages ", r.out, re.M)
        new = [n["name"] for n in c.state["nodes"][s.NODES:]]
        assert r.code == 0 and sorted(writers) == sorted(new), \
            f"generation {m.group(1)} holds trees of {writers}, want one of each of " \
            f"{new}: {r.out}"
        j = c.wait_done(jobid, 240)
        text = s._read(out)
        assert j["JobState"] == "COMPLETED", f"job {j['JobState']}: {text[-3000:]}"
        assert j["Restarts"] == "1" and j["NodeList"] != first, \
            f"ran on {j['NodeList']} after {first}, restarts {j['Restarts']}"
        assert len(re.findall(r"^batch ", text, re.M)) == 1 and \
            len(re.findall(r"^start ", text, re.M)) == 1, \
            f"the job ran again instead of being restored: {text[-3000:]}"
        # what the restored ranks printed comes after Slurm's requeue notice: it goes
        # on from the checkpoint (the next progress line after iteration `at`)
        assert "DUE TO JOB REQUEUE" in text, f"not requeued: {text[-3000:]}"
        # (from generation 1, or from the one the requeue's SIGTERM made)
        last = max([at] + k._iterations(text.split("DUE TO JOB REQUEUE", 1)[0]))
        after = k._iterations(text.split("DUE TO JOB REQUEUE", 1)[1])
        assert after and 0 < after[0] <= last + ITERS // 10 and after[-1] == ITERS - 1 and \
            after == sorted(after), \
            f"after the requeue: iterations {after}, the last before it {last}"
        assert s._results(text) == [want], f"result {s._results(text)}, want {want}: {text}"
        assert "mpiexec exit 0" in text, f"mpiexec failed: {text[-2000:]}"
        # hydra started its proxies with crmpi-rsh, not as a Slurm step (srun)
        steps = [n["name"] for n in c.state["nodes"]
                 if re.search(rf"crjob: job {jobid} step 0 ", c.slurmd_log(n["name"]))]
        assert not steps, f"hydra launched a Slurm step on {steps}: the plugin's crmpi= " \
            "did not make crmpi-rsh its launcher"
        # the restored ranks' big messages went over TCP between the new nodes
        sent = [a - b for a, b in zip(c.veth_rx(), before)][s.NODES:]
        least = (ITERS - 1 - last - ITERS // 10) * s.PPN * 4 * s.MIB
        assert all(x >= least for x in sent), \
            f"bytes each new node sent on the network: {sent}, want {least}: not TCP"
    finally:
        _keep_logs(c, "mpich-requeue")
        c.down()


CASES.append(("hydra-requeue-resumes-elsewhere", requeue_resumes_elsewhere))
