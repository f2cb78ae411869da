"""srun steps inside a --checkpoint job.  The tasks srun launches hang off
slurmstepd (PMIx, I/O, signals) and cannot be restored on a new allocation.
An MPI step (srun --mpi=pmix, --mpi=pmi2) is steered by the plugin to
`crjob srun`, which runs it with the MPI library's launcher (mpirun,
mpiexec.hydra) and crmpi-rsh: trees the job's checkpoints hold.  Any other
step (or one with CRJOB_SRUN=step) stays a Slurm step: the plugin tells the
coordinator when it runs, and a checkpoint is refused meanwhile, with the
reason, while the job runs on."""
import os
import re
import sys
import time
import unittest

_runner = sys.modules["__main__"]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import caseload  # noqa: E402
ITERS = 200
SLEEP_MS = 100


def _crjob_cases():
    """tests/cases_slurm_crjob.py: its helpers (and through it cases_slurm's Cluster)"""
    return caseload.load("cases_slurm_crjob")


def _mpich_cases():
    """tests/cases_slurm_mpich.py: its cluster with the plugin's crmpi="""
    return caseload.load("cases_slurm_mpich")


def srun_step_refused(env):
    """sbatch --checkpoint running `srun --mpi=pmix` (Open MPI, 3 nodes x 2 ranks) as a
    Slurm step (CRJOB_SRUN=step: not steered to mpirun): `crjob status` says the step runs, `crjob checkpoint` is refused naming it and
    writes no generation; the job ends with the uninterrupted result; once the step
    has ended the batch tree is checkpointed again"""
    cj = _crjob_cases()
    cj._need_crjob(env)
    s = cj._slurm()
    if not os.path.exists(os.path.join(s.SLURM_PLUGINS, "mpi_pmix.so")):
        raise unittest.SkipTest("Slurm's mpi/pmix plugin is missing")
    want = s.reference(env, ITERS)
    c = s.Cluster(env)
    try:
        out = os.path.join(c.work, "job.out")
        app = s._app(env, "openmpi")
        flag = os.path.join(c.work, "step-done")
        script = c.script_file("srun.sh", f"""
echo batch $$
export CRJOB_SRUN=step
export OMPI_MCA_btl=self,tcp,vader OMPI_MCA_btl_tcp_if_include=eth0
srun --mpi=pmix -N {s.NODES} -n {s.NODES * s.PPN} --ntasks-per-node {s.PPN} {app} {ITERS} 100
echo srun exit $?
touch {flag}
sleep 300
""")
        jobid = c.sbatch("--checkpoint", "-N", str(s.NODES), "-t", "8", "-o", out, script,
                         extra=cj._crjob_env(c))
        cj._wait_iteration(c, jobid, out, 0)
        deadline = time.time() + 60
        while True:
            code, text = cj._crjob(c, "status", jobid)
            if code == 0 and f"srun step {jobid}.0@" in text:
                break
            assert time.time() < deadline, f"the step is not known: {code} {text}"
            time.sleep(0.5)
        code, text = cj._crjob(c, "checkpoint", jobid)
        assert code == 1 and f"srun step {jobid}.0@" in text and "crjob srun" in text, \
            f"checkpoint during the srun step not refused ({code}): {text}"
        r = _runner.run([env.crd, "store", "ls", jobid, "--store", os.path.join(c.dir, "store")])
        assert not cj._gens(r.out), f"a generation was written: {r.out}"
        deadline = time.time() + 240
        while not os.path.exists(flag):
            assert time.time() < deadline and c.job(jobid)["JobState"] == "RUNNING", \
                f"the step did not end: {s._read(out)[-2000:]}"
            time.sleep(0.5)
        text = s._read(out)
        assert "srun exit 0" in text and s._results(text) == [want], \
            f"result {s._results(text)}, want {want}: {text[-2000:]}"
        # between steps the job is the batch tree alone: checkpointed
        deadline = time.time() + 30
        while True:
            code, text = cj._crjob(c, "checkpoint", jobid)
            if code == 0 or time.time() > deadline:
                break
            time.sleep(1)
        assert code == 0 and "generation 1 committed" in text, \
            f"checkpoint after the step failed ({code}): {text}"
        code, text = c.cmd("scancel", jobid)
        assert code == 0, f"scancel: {text}"
    finally:
        c.down()


CASES = [("srun-step-refused", srun_step_refused)]


def _srun_script(env, c, mpi, iters=ITERS):
    """an unmodified batch script whose MPI step is `srun --mpi=MPI` on 3 nodes x 2 ranks,
    inter-node traffic on TCP (Open MPI's tcp BTL, MPICH's UCX with TCP only)"""
    s = _crjob_cases()._slurm()
    if mpi == "pmi2":
        app = s._app(env, "mpich")
        net = "export UCX_TLS=tcp UCX_NET_DEVICES=eth0"
    else:
        app = s._app(env, "openmpi")
        net = "export OMPI_MCA_btl=self,tcp,vader OMPI_MCA_btl_tcp_if_include=eth0"
    return c.script_file(f"srun-{mpi}.sh", f"""
echo batch $$ restart=${{SLURM_RESTART_COUNT:--}}
{net}
srun --mpi={mpi} -N {s.NODES} -n {s.NODES * s.PPN} --ntasks-per-node {s.PPN} {app} {iters} {SLEEP_MS}
echo srun exit $?
""")


def _steered_requeue(env, mpi):
    """sbatch --checkpoint running `srun --mpi=MPI`, steered by the plugin (crmpi=) to the
    MPI launcher with crmpi-rsh: no srun step runs, `crjob checkpoint` mid-run commits a
    tree of each of the 3 nodes and the job goes on; `scontrol requeue` with the old
    nodes excluded restores it on 3 others, where it goes on from the checkpoint (the
    script does not run again) and ends with the result of an uninterrupted run and
    srun's exit status 0"""
    cj = _crjob_cases()
    cj._need_crjob(env)
    s = cj._slurm()
    mc = _mpich_cases()
    s._need("mpiexec.hydra" if mpi == "pmi2" else "mpirun.openmpi")
    want = s.reference(env, ITERS)
    c = mc._crmpi_cluster(env, 2 * s.NODES)
    try:
        out = os.path.join(c.work, "job.out")
        jobid = c.sbatch("--checkpoint", "-N", str(s.NODES), "-t", "6", "-o", out,
                         _srun_script(env, c, mpi), extra=cj._crjob_env(c))
        cj._wait_iteration(c, jobid, out, 20)
        first = c.job(jobid)["NodeList"]
        old = [n["name"] for n in c.state["nodes"][:s.NODES]]
        mc._wait_registered(c, jobid, old)
        code, text = cj._crjob(c, "status", jobid)
        assert code == 0 and "srun step" not in text, \
            f"the MPI step ran as an srun step, not steered ({code}): {text}"
        code, text = cj._crjob(c, "checkpoint", jobid)
        assert code == 0 and "generation 1 committed" in text, \
            f"crjob checkpoint failed ({code}): {text}"
        at = cj._iterations(s._read(out))[-1]
        r = _runner.run([env.crd, "store", "show", jobid, "1", "--store",
                         os.path.join(c.dir, "store")])
        writers = re.findall(r"^\s+(\S+)-\d+\s+pages ", r.out, re.M)
        assert r.code == 0 and sorted(writers) == sorted(old), \
            f"generation 1 holds trees of {writers}, want one of each of {old}: {r.out}"
        # the job goes on after the checkpoint
        cj._wait_iteration(c, jobid, out, at + 3)
        cj._requeue_elsewhere(c, jobid, first)
        j = c.wait_done(jobid, 300)
        text = s._read(out)
        assert j["JobState"] == "COMPLETED", f"job {j['JobState']}: {text[-3000:]}"
        assert j["Restarts"] == "1" and j["NodeList"] != first, \
            f"ran on {j['NodeList']} after {first}, restarts {j['Restarts']}"
        assert len(re.findall(r"^batch ", text, re.M)) == 1, \
            f"the batch script ran again instead of being restored: {text[-3000:]}"
        assert "srun exit 0" in text and s._results(text) == [want], \
            f"result {s._results(text)}, want {want}: {text[-3000:]}"
        assert cj._iterations(text)[-1] == ITERS - 1, cj._iterations(text)
    finally:
        mc._keep_logs(c, f"srun-{mpi}")
        c.down()


def pmix_steered_requeue(env):
    """Open MPI: srun --mpi=pmix in a --checkpoint job, steered to mpirun"""
    _steered_requeue(env, "pmix")


def pmi2_steered_requeue(env):
    """MPICH: srun --mpi=pmi2 in a --checkpoint job, steered to mpiexec.hydra"""
    _steered_requeue(env, "pmi2")


CASES += [("srun-pmix-steered-requeue", pmix_steered_requeue),
          ("srun-pmi2-steered-requeue", pmi2_steered_requeue)]


def _dry_run(env, srun, **slurm):
    """`crjob srun --dry-run -- SRUN...` in an allocation of n1..n3 with 2 CPUs each"""
    crjob = os.path.join(env.builddir, "crjob", "crjob")
    if not os.path.exists(crjob):
        raise unittest.SkipTest("crjob is not built")
    envv = {"PATH": "/usr/bin:/bin", "USER_VAR": "1", "SLURM_JOB_NODELIST": "n[1-3]",
            "SLURM_JOB_CPUS_PER_NODE": "2(x3)", "SLURM_JOB_ID": "7", **slurm}
    r = _runner.run(["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in envv.items()), crjob, "srun",
                     "--rsh", "/opt/crmpi-rsh", "--iface", "eth9", "--dry-run", "--",
                     "srun", *srun])
    assert r.code == 0, f"crjob srun --dry-run {srun}: {r.code} {r.out}"
    return r.out


def srun_translation(env):
    """what `crjob srun` makes of an srun command line: Open MPI's mpirun for --mpi=pmix
    (or SLURM_MPI_TYPE), hydra for pmi2, ranks per node as srun lays them out (at least
    one per node, then filled to the CPUs or --ntasks-per-node), the environment
    forwarded but Slurm's own; srun itself for a step that is no MPI step, an option
    without an equivalent (said why), or more tasks than the allocation has CPUs"""
    out = _dry_run(env, ["--mpi=pmix", "-N", "3", "-n", "4", "./app", "a b"])
    assert out.startswith("mpirun.openmpi --mca plm rsh --mca plm_rsh_agent /opt/crmpi-rsh "
                          "-np 4 --host n1:2,n2:1,n3:1 --bind-to none"), out
    assert "-x USER_VAR" in out and "-x PATH" in out and "SLURM_JOB_ID" not in out, out
    assert out.rstrip().endswith("./app a b"), out
    out = _dry_run(env, ["--mpi", "pmi2", "./app"], SLURM_NTASKS="6")
    assert out.strip() == "mpiexec.hydra -launcher rsh -launcher-exec /opt/crmpi-rsh " \
        "-iface eth9 -hosts n1:2,n2:2,n3:2 -n 6 ./app", out
    out = _dry_run(env, ["--ntasks-per-node=1", "./app"], SLURM_MPI_TYPE="pmix_v4")
    assert "-np 3 --host n1:1,n2:1,n3:1 " in out, out
    out = _dry_run(env, ["-n2", "./app"], SLURM_MPI_TYPE="pmix", SLURM_NNODES="1")
    assert "-np 2 --host n1:2 " in out, out
    out = _dry_run(env, ["-l", "--mpi=pmix", "./app"])
    assert "srun: srun -l --mpi=pmix ./app" in out and "srun -l: no equivalent" in out, out
    out = _dry_run(env, ["hostname"])
    assert out.strip() == "srun: srun hostname", out
    out = _dry_run(env, ["--mpi=pmix", "-n", "7", "./app"])
    assert out.strip() == "srun: srun --mpi=pmix -n 7 ./app", out
    out = _dry_run(env, ["--mpi=pmix", "./app"], SLURM_JOB_NODELIST="a1,b[08-09]",
                   SLURM_JOB_CPUS_PER_NODE="4,2(x2)", SLURM_NTASKS="7")
    assert "-np 7 --host a1:4,b08:2,b09:1 " in out, out


CASES.append(("srun-translation", srun_translation))
