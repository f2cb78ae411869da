"""srun steps inside a --checkpoint job.  The tasks srun launches hang off
slurmstepd (PMIx, I/O, signals) and cannot be restored on a new allocation
yet: the plugin tells the coordinator when a step runs, and a checkpoint is
refused meanwhile, with the reason, while the job runs on."""
import os
import sys
import time
import unittest

_runner = sys.modules["__main__"]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import caseload  # noqa: E402
ITERS = 200


def _crjob_cases():
    """tests/cases_slurm_crjob.py: its helpers (and through it cases_slurm's Cluster)"""
    return caseload.load("cases_slurm_crjob")


def srun_step_refused(env):
    """sbatch --checkpoint running `srun --mpi=pmix` (Open MPI, 3 nodes x 2 ranks):
    `crjob status` says the step runs, `crjob checkpoint` is refused naming it and
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
        assert code == 1 and f"srun step {jobid}.0@" in text and "mpirun" in text, \
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
