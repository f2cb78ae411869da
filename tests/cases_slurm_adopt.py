"""Every tree of a crjob job is a process of its Slurm job, as pam_slurm_adopt
makes an ssh session one: the node agents put the trees they restore into the
job's cgroup on each node (job_J/crjob, beside the extern step: Slurm's SIGTERM
to the steps does not reach them before the checkpoint it asks for), and kill
them when the job has ended there, so that `scancel` ends a resumed job; and
crmpi-rsh can have the agents start mpirun's remote daemons there (`crjob
spawn`), for the job's owner on the job's nodes only."""
import glob
import os
import re
import sys
import time

_runner = sys.modules["__main__"]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import caseload  # noqa: E402


def _crjob_cases():
    """tests/cases_slurm_crjob.py: its helpers (and through it cases_slurm's Cluster)"""
    return caseload.load("cases_slurm_crjob")


def _netns_inode(path):
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _procs(c, exe, node_names):
    """{pid: /proc/PID/cgroup} of the live processes running exe (a path, or a bare name)
    in the given nodes' network namespaces"""
    want = {_netns_inode(n["netns"]) for n in c.state["nodes"] if n["name"] in node_names}
    found = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            path = os.path.realpath(f"/proc/{d}/exe")
            if (path if "/" in exe else os.path.basename(path)) != exe or \
                    os.stat(f"/proc/{d}/ns/net").st_ino not in want:
                continue
            with open(f"/proc/{d}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            with open(f"/proc/{d}/cgroup") as f:
                found[int(d)] = f.read()
        except OSError:
            continue
    return found


def _expand(nodelist):
    """node[4-6] or node4,node5 -> names"""
    m = re.match(r"^(\w*?)\[([\d,-]+)\]$", nodelist)
    if not m:
        return nodelist.split(",")
    names = []
    for part in m.group(2).split(","):
        lo, _, hi = part.partition("-")
        names += [f"{m.group(1)}{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return names


CG_OURS = "crjob"   # agent/slurm-cg.c

# long enough to be cancelled while it runs after its restart (it prints every ITERS/10)
ITERS = 1500
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL")


def agents_requeue_cancel(env):
    """mpirun with crmpi-rsh in agent mode (CRMPI_VIA=agent): the orted of the 2nd and
    3rd node are started by those nodes' agents inside the job's cgroup there (job_J/
    crjob), and `crjob spawn` is refused for another user and on a node not in the job.
    Checkpoint, requeue onto 3 other nodes: Slurm's SIGTERM kills no orted before the
    checkpoint it makes crjob batch take (generation 2 is committed), the job resumes
    from it, and the restored ranks on every new node are in the job's cgroup (their
    /proc/PID/cgroup says so); `scancel` then ends every one of them, as it ends a job
    that was never restarted, and their cgroups go with the job"""
    cj = _crjob_cases()
    cj._need_crjob(env)
    s = cj._slurm()
    c = s.Cluster(env, nodes=2 * s.NODES)
    try:
        out = os.path.join(c.work, "job.out")
        app = os.path.realpath(s._app(env, "openmpi"))
        script = cj._mpirun_script(env, c, iters=ITERS)
        with open(script) as f:
            body = f.read()
        with open(script, "w") as f:
            f.write(body.replace("export TMPDIR=", "export CRMPI_VIA=agent\nexport TMPDIR=", 1))
        jobid = c.sbatch("--checkpoint", "-N", str(s.NODES), "-t", "10", "-o", out, script,
                         extra=cj._crjob_env(c))
        cj._wait_iteration(c, jobid, out, 0)
        cj._wait_registered(c, jobid, s.NODES)
        first = c.job(jobid)["NodeList"]
        nodes = _expand(first)
        orted = _procs(c, "orted", nodes[1:])
        assert len(orted) == s.NODES - 1, f"orted on {nodes[1:]}: {sorted(orted)}"
        outside = [p for p, cg in orted.items() if f"/job_{jobid}/{CG_OURS}" not in cg]
        assert not outside, f"orted outside job {jobid}'s cgroup: " + \
            "; ".join(f"{p}: {orted[p].strip()}" for p in outside)
        spare = [n for n in c.state["nodes"] if n["name"] not in nodes][0]
        node2 = [n for n in c.state["nodes"] if n["name"] == nodes[1]][0]
        for who, node, why in ((65534, node2, "another user"), (None, spare, "a spare node")):
            code, text = cj._crjob(c, "spawn", jobid, "--agent", f"{node['ip']}:7710", "--",
                                   "/bin/true", user=who)
            assert code != 0 and "extern step" in text, \
                f"spawn by {why} not refused ({code}): {text}"
        code, text = cj._crjob(c, "checkpoint", jobid)
        assert code == 0 and "generation 1 committed" in text, \
            f"crjob checkpoint failed ({code}): {text}"
        cj._requeue_elsewhere(c, jobid, first)
        # resumed: running again, on other nodes, with every rank restored there
        deadline = time.time() + 240
        while True:
            j = c.job(jobid)
            new = _expand(j["NodeList"]) if j["JobState"] == "RUNNING" else []
            ranks = _procs(c, app, new) if j.get("Restarts") == "1" else {}
            # restored ranks stay frozen in the agent's cgroup until RESUME moves them
            outside = [p for p, cg in ranks.items()
                       if f"/job_{jobid}/{CG_OURS}" not in cg]
            if len(ranks) == s.NODES * s.PPN and not outside:
                break
            assert time.time() < deadline and j["JobState"] not in TERMINAL, \
                f"job {jobid} did not resume ({j['JobState']}, on {new}, " \
                f"{len(ranks)} ranks) or restored ranks are outside job {jobid}'s " \
                "cgroup: " + "; ".join(f"{p}: {ranks[p].strip()}" for p in outside) + \
                f": {s._read(out)[-2000:]}"
            time.sleep(0.5)
        assert not set(new) & set(nodes), f"resumed on {new} after {first}"
        text = s._read(out)
        assert re.search(rf"^job {jobid}: generation 2 committed \(job stopped\)", text, re.M), \
            f"no checkpoint at the requeue's SIGTERM: {text[-3000:]}"
        code, text = c.cmd("scancel", jobid)
        assert code == 0, f"scancel: {text}"
        c.wait_job(jobid, lambda j: j["JobState"] == "CANCELLED", "cancelled", 60)
        deadline = time.time() + 60
        while _procs(c, app, new) and time.time() < deadline:
            time.sleep(0.5)
        left = _procs(c, app, new)
        assert not left, f"ranks of cancelled job {jobid} still run: {sorted(left)}"
        # the agents remove job_J/crjob (and job_J) once the job has ended there
        dirs = [d for n in new for d in glob.glob(
            f"/sys/fs/cgroup/*/slurm_{n}/uid_*/job_{jobid}/{CG_OURS}")]
        deadline = time.time() + 60     # REAP_GRACE_S 30 first
        while [d for d in dirs if os.path.exists(d)] and time.time() < deadline:
            time.sleep(0.5)
        assert not [d for d in dirs if os.path.exists(d)], f"left behind: {dirs}"
    finally:
        caseload.load("cases_slurm_mpich")._keep_logs(c, "adopt")
        c.down()


CASES = [("agents-requeue-cancel", agents_requeue_cancel)]
