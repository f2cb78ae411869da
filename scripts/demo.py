#!/usr/bin/env python3
"""The local demo: an MPI job on two nodes is checkpointed while it runs,
killed, restarted on two *other* nodes, and finishes with the right answer.

Nodes are network namespaces on a private bridge made here (and removed at
the end); Open MPI's mpirun starts its remote daemon through crmpi-rsh, so
each node's part of the job is a process tree of its own that crd dumps on
that node and restores on another one, with its TCP endpoints moved to the
new node's address.
"""
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(top, "tests"))
import nethosts  # noqa: E402

crd = os.path.join(top, "crd", "crd")
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # child subreaper: we reap what we start


def tool(name):
    return shutil.which(f"{name}.openmpi") or shutil.which(name)


def iterations(log):
    with open(log) as f:
        return [int(l.split()[1]) for l in f if l.startswith("it ")]


def crd_on(hosts, node, *args):
    r = subprocess.run(hosts.argv(node, [crd] + list(args)), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if r.returncode:
        sys.exit(f"demo: crd {args[0]} on node{node} failed:\n{r.stdout}")
    return r.stdout


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def reap(keep=()):
    """reap the zombies we inherit as subreaper (all but keep)"""
    for p in os.listdir("/proc"):
        if p.isdigit() and int(p) not in keep and not alive(int(p)):
            try:
                os.waitpid(int(p), os.WNOHANG)
            except ChildProcessError:
                pass


def wait_gone(pids, timeout=10, keep=()):
    """until none of pids exists (reaped), or timeout"""
    deadline = time.time() + timeout
    while any(os.path.exists(f"/proc/{p}") for p in pids if p not in keep) and \
            time.time() < deadline:
        reap(keep)
        time.sleep(0.02)


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            kids = []
        out += kids
        todo += kids
    return out


def main():
    work = tempfile.mkdtemp(prefix="crjob-demo-")
    os.chmod(work, 0o755)
    log = os.path.join(work, "job.log")
    exe = os.path.join(work, "ring")
    subprocess.run([tool("mpicc"), "-O2", "-o", exe, os.path.join(top, "tests", "mpi", "ring.c")],
                   check=True)
    hosts = nethosts.Hosts(4, tag=f"demo{os.getpid() % 10000}")
    a = hosts.addrs
    hostfile, pidfile = os.path.join(work, "hosts"), os.path.join(work, "daemons")
    with open(hostfile, "w") as f:
        f.writelines(f"{hosts.path(i)} {a[i]}\n" for i in range(4))
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_plm_rsh_agent=os.path.join(top, "crmpi", "crmpi-rsh"),
               OMPI_MCA_btl="self,tcp", OMPI_MCA_btl_tcp_if_include="eth0",
               OMPI_MCA_oob_tcp_if_include="eth0", TMPDIR=work,
               CRMPI_HOSTS=hostfile, CRMPI_PIDS=pidfile)
    out = open(log, "w")
    job = subprocess.Popen(hosts.argv(0, [tool("mpirun"), "-np", "2", "--host", f"{a[0]},{a[1]}",
                                          exe]), cwd=work, stdout=out, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, env=env)
    daemon = None
    ok = False
    try:
        print(f"== nodes: node0 {a[0]}, node1 {a[1]}, node2 {a[2]}, node3 {a[3]}")
        print(f"== mpirun -np 2 --host {a[0]},{a[1]} ring  (pid {job.pid}, output {log})")
        deadline = time.time() + 60
        while not [i for i in iterations(log) if i >= 30]:
            if time.time() > deadline or job.poll() is not None:
                sys.exit(f"demo: the job did not start:\n{open(log).read()}")
            time.sleep(0.05)
        daemon = int(open(pidfile).read().split()[0])
        print(f"   rank 0 runs under mpirun on node0, rank 1 under orted's tree {daemon} on "
              f"node1; iteration {iterations(log)[-1]}")
        trees = [(0, job.pid), (1, daemon)]
        procs = sum(([p] + descendants(p) for _, p in trees), [])
        imgs = []
        for node, root in trees:
            img = os.path.join(work, f"images-node{node}")
            os.mkdir(img)
            print(f"== node{node}: crd dump -t {root} -D {img}")
            crd_on(hosts, node, "dump", "-t", str(root), "-D", img, "--capture-path", work)
            imgs.append(img)
        job.wait()	# its pid must be free for the restore
        wait_gone(procs)
        stopped = iterations(log)[-1]
        print(f"   the job is gone ({not any(alive(p) for p in procs)}), stopped at "
              f"iteration {stopped}")
        time.sleep(1)
        remap = [f"--remap-ip={a[0]}={a[2]}", f"--remap-ip={a[1]}={a[3]}"]
        for (node, root), img in zip(trees, imgs):
            print(f"== node{node + 2}: crd restore -D {img} {' '.join(remap)}", flush=True)
            crd_on(hosts, node + 2, "restore", "-D", img, "--detach", "--keep-net-locked",
                   *remap)
        for node, root in trees:
            crd_on(hosts, node + 2, "net-unlock", str(root))
        print("   both parts are back, on node2 and node3; waiting for the job to finish")
        # the restored mpirun is our child again: we are the subreaper
        deadline = time.time() + 120
        while alive(job.pid) and time.time() < deadline:
            reap(keep=(job.pid,))
            time.sleep(0.1)
        try:
            status = os.waitpid(job.pid, 0)[1]
        except ChildProcessError:
            status = -1
        text = open(log).read()
        its = iterations(log)
        ok = status == 0 and "RESULT ok" in text and its == list(range(0, its[-1] + 1, 10)) and \
            its[-1] > stopped
        print(f"   last lines: {' | '.join(text.strip().splitlines()[-2:])}")
        print("== verify: resumed from iteration %d on other nodes, no restart, no gap, "
              "right result: %s" % (stopped, "yes" if ok else "NO"))
    finally:
        for p in [job.pid] + ([daemon] if daemon else []):
            if alive(p):
                for q in [p] + descendants(p):
                    try:
                        os.kill(q, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        wait_gone([job.pid] + ([daemon] if daemon else []))
        hosts.destroy()
        if os.environ.get("KEEP"):
            print(f"   images and logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
