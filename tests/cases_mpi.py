"""An unmodified Open MPI job (mpirun, ranks on one node) through checkpoint and restore."""
import os
import shutil
import signal
import subprocess
import sys
import time
import unittest

_runner = sys.modules["__main__"]


def _build_ring(env):
    mpicc = shutil.which("mpicc")
    if not mpicc or not shutil.which("mpirun"):
        raise unittest.SkipTest("Open MPI is not installed (apt-get install openmpi-bin libopenmpi-dev)")
    exe = os.path.join(env.tmpdir, "ring")
    r = _runner.run([mpicc, "-O2", "-o", exe, os.path.join(env.srcdir, "tests", "mpi", "ring.c")])
    assert r.code == 0, f"mpicc failed: {r.out}"
    return exe


def _iterations(log):
    if not os.path.exists(log):
        return []
    with open(log) as f:
        return [int(l.split()[1]) for l in f if l.startswith("it ")]


def openmpi_dump_restore(env):
    """mpirun -np 2 ring: dump mid-run (job killed), restore, the job finishes right"""
    exe = _build_ring(env)
    work = os.path.join(env.tmpdir, "work")
    os.mkdir(work)
    log = os.path.join(work, "out.log")
    e = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
             OMPI_MCA_btl="self,vader,tcp", OMPI_MCA_btl_vader_single_copy_mechanism="none",
             OMPI_MCA_rmaps_base_oversubscribe="1", TMPDIR=work)
    mpirun = shutil.which("mpirun")
    shm_before = set(os.listdir("/dev/shm"))
    pid = _runner.spawn([mpirun, "-np", "2", exe], cwd=work, out=log, env=e)
    try:
        deadline = time.time() + 60
        while not [i for i in _iterations(log) if i >= 20]:
            assert time.time() < deadline and _runner.alive(pid), "the job did not start"
            time.sleep(0.05)
        tree = _runner.descendants(pid)
        img = os.path.join(env.tmpdir, "img")
        os.mkdir(img)
        r = _runner.run([env.crd, "dump", "-t", str(pid), "-D", img, "--capture-path", work])
        assert r.code == 0, f"dump failed: {r.out}"
        deadline = time.time() + 10
        while any(os.path.exists(f"/proc/{p}") for p in tree):
            _runner.reap_some()
            assert time.time() < deadline, "the dump did not kill the job"
            time.sleep(0.01)
        _runner.reaped.pop(pid, None)	# the killed job's status: the restored one comes next
        done_before = _iterations(log)[-1]
        r = _runner.run([env.crd, "restore", "-D", img, "--detach"])
        assert r.code == 0, f"restore failed: {r.out}"
        st = _runner.wait_for(pid, 60)
        assert st is not None, f"the restored job did not finish: {open(log).read()}"
        out = open(log).read()
        assert _runner.exit_code(st) == 0, f"mpirun exited {_runner.exit_code(st)}: {out}"
        its = _iterations(log)
        assert its == list(range(0, its[-1] + 1, 10)) and its[-1] > done_before, \
            f"the job restarted or skipped: {its}"
        assert "RESULT ok" in out, f"wrong result: {out}"
    finally:
        _runner.kill_tree(pid)
        # the shared-memory segments of a job that did not finish stay behind
        for f in set(os.listdir("/dev/shm")) - shm_before:
            if f.startswith("vader_segment"):
                os.unlink(os.path.join("/dev/shm", f))


CASES = [("openmpi/mpirun-dump-restore", openmpi_dump_restore)]
