"""An unmodified Open MPI job (mpirun, ranks on one node) through checkpoint and restore."""
import os
import shutil
import signal
import subprocess
import sys
import time
import unittest

_runner = sys.modules["__main__"]


def _openmpi(tool):
    """Open MPI's own wrapper, whichever MPI the alternatives point at"""
    return shutil.which(f"{tool}.openmpi") or shutil.which(tool)


def _build_ring(env):
    mpicc = _openmpi("mpicc")
    if not mpicc or not _openmpi("mpirun"):
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


def _check_finished(pid, log, done_before, timeout):
    """the restored mpirun ends well, went on from iteration done_before, got it right"""
    st = _runner.wait_for(pid, timeout)
    assert st is not None, f"the restored job did not finish: {open(log).read()}"
    out = open(log).read()
    assert _runner.exit_code(st) == 0, f"mpirun exited {_runner.exit_code(st)}: {out}"
    its = _iterations(log)
    assert its == list(range(0, its[-1] + 1, 10)) and its[-1] > done_before, \
        f"the job restarted or skipped: {its}"
    assert "RESULT ok" in out, f"wrong result: {out}"


def openmpi_dump_restore(env):
    """mpirun -np 2 ring: dump mid-run (job killed), restore, the job finishes right"""
    exe = _build_ring(env)
    work = os.path.join(env.tmpdir, "work")
    os.mkdir(work)
    log = os.path.join(work, "out.log")
    e = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
             OMPI_MCA_btl="self,vader,tcp", OMPI_MCA_btl_vader_single_copy_mechanism="none",
             OMPI_MCA_rmaps_base_oversubscribe="1", TMPDIR=work)
    mpirun = _openmpi("mpirun")
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
        _check_finished(pid, log, done_before, 60)
    finally:
        _runner.kill_tree(pid)
        # the shared-memory segments of a job that did not finish stay behind
        for f in set(os.listdir("/dev/shm")) - shm_before:
            if f.startswith("vader_segment"):
                os.unlink(os.path.join("/dev/shm", f))


def _wait_file_pids(path, n, timeout=30):
    deadline = time.time() + timeout
    while True:
        try:
            with open(path) as f:
                pids = [int(x) for x in f.read().split()]
            if len(pids) >= n:
                return pids
        except OSError:
            pass
        assert time.time() < deadline, f"{path}: the MPI daemons did not start"
        time.sleep(0.05)


def _crd_in(env, hosts, i, *args):
    r = _runner.run(hosts.argv(i, [env.crd] + list(args)))
    assert r.code == 0, f"crd {args[0]} on host {i} failed: {r.out}"
    return r


def openmpi_two_nodes_moved(env):
    """mpirun with one rank on each of 2 namespace nodes (orted started by
    crmpi-rsh as a tree of its own): both nodes' trees dumped, restored on 2
    other nodes with their TCP endpoints remapped, the job finishes right"""
    exe = _build_ring(env)
    hosts = _runner_hosts(4)
    work = os.path.join(env.tmpdir, "work")
    os.mkdir(work)
    log = os.path.join(work, "out.log")
    hostfile, pidfile = os.path.join(work, "hosts"), os.path.join(work, "daemons")
    with open(hostfile, "w") as f:
        for i in range(4):
            f.write(f"{hosts.path(i)} {hosts.addrs[i]}\n")
    rsh = os.path.join(env.srcdir, "crmpi", "crmpi-rsh")
    e = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
             OMPI_MCA_plm_rsh_agent=rsh, OMPI_MCA_btl="self,tcp",
             OMPI_MCA_btl_tcp_if_include="eth0", OMPI_MCA_oob_tcp_if_include="eth0",
             OMPI_MCA_rmaps_base_oversubscribe="1", TMPDIR=work,
             CRMPI_HOSTS=hostfile, CRMPI_PIDS=pidfile,
             CRMPI_LOG=os.path.join(work, "daemons.log"))
    a = hosts.addrs
    pid = _runner.spawn(hosts.argv(0, [_openmpi("mpirun"), "-np", "2", "--host",
                                       f"{a[0]},{a[1]}", exe]), cwd=work, out=log, env=e)
    daemons = []
    try:
        deadline = time.time() + 60
        while not [i for i in _iterations(log) if i >= 20]:
            assert time.time() < deadline and _runner.alive(pid), \
                f"the job did not start: {_tail(log)} {_tail(log[:-7] + 'daemons.log')}"
            time.sleep(0.05)
        daemons = _wait_file_pids(pidfile, 1)
        # nsenter execs mpirun: pid is mpirun, in host 0
        trees = [(0, pid), (1, daemons[0])]
        procs = sum((_runner.descendants(p) + [p] for _, p in trees), [])
        imgs = []
        for node, root in trees:
            img = os.path.join(env.tmpdir, f"img{node}")
            os.mkdir(img)
            _crd_in(env, hosts, node, "dump", "-t", str(root), "-D", img, "--capture-path",
                    work)
            imgs.append(img)
        deadline = time.time() + 10
        while any(os.path.exists(f"/proc/{p}") for p in procs):
            _runner.reap_some()
            assert time.time() < deadline, "the dump did not kill the job"
            time.sleep(0.01)
        _runner.reaped.pop(pid, None)
        done_before = _iterations(log)[-1]
        remap = [f"--remap-ip={a[0]}={a[2]}", f"--remap-ip={a[1]}={a[3]}"]
        for (node, root), img in zip(trees, imgs):
            r = _crd_in(env, hosts, node + 2, "restore", "-D", img, "--detach",
                        "--keep-net-locked", *remap)
            assert int(r.out.split()[-1]) == root, r.out
        for node, root in trees:
            _crd_in(env, hosts, node + 2, "net-unlock", str(root))
        for node, root in trees:	# moved: their sockets are on the new addresses
            with open(f"/proc/{root}/net/tcp") as f:
                assert f"{a[node]}" not in _tcp_addrs(f.read()), "an endpoint was not moved"
        _check_finished(pid, log, done_before, 90)
    finally:
        for p in [pid] + daemons:
            _runner.kill_tree(p)
        for i in range(4):
            _runner.run(hosts.argv(i, [env.crd, "net-unlock", str(pid)]))
            for p in daemons:
                _runner.run(hosts.argv(i, [env.crd, "net-unlock", str(p)]))
        hosts.destroy()


def _tcp_addrs(table):
    """dotted local and remote addresses of /proc/PID/net/tcp"""
    out = set()
    for line in table.splitlines()[1:]:
        for field in line.split()[1:3]:
            h = field.split(":")[0]
            out.add(".".join(str(int(h[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return out


def _runner_hosts(n):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import nethosts
    return nethosts.Hosts(n)


CASES = [("openmpi/mpirun-dump-restore", openmpi_dump_restore),
         ("openmpi/mpirun-two-nodes-moved", openmpi_two_nodes_moved)]


def _tail(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-1500:]
    except OSError:
        return ""
