#!/usr/bin/env python3
"""The demo: an unmodified MPI job under Slurm is checkpointed while it runs,
requeued onto other nodes, resumes from its checkpoint there and finishes
with the answer of an uninterrupted run.

It brings up a real Slurm cluster of 6 nodes on this machine (network
namespaces on a private bridge, slurmctld, a slurmd and a crjob-agent per
node, munged, the crjob SPANK plugin: tests/slurm/cluster), submits
`sbatch --checkpoint -N 3` of a script that runs `mpirun -np 6` (Open MPI,
TCP between nodes, its remote daemons started by crmpi-rsh), and tears the
cluster down at the end, whatever happens.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ITERS, SLEEP_MS = 150, 100


def sh(argv, env=None, check=True):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       env=env)
    if check and r.returncode:
        raise SystemExit(f"demo: {' '.join(argv)} failed ({r.returncode}):\n{r.stdout}")
    return r.stdout


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def job_field(env, jobid, field):
    out = sh(["scontrol", "show", "job", "-o", jobid], env)
    m = re.search(rf"\b{field}=(\S*)", out)
    return m.group(1) if m else ""


def wait_for(what, pred, timeout):
    deadline = time.time() + timeout
    while not pred():
        if time.time() > deadline:
            raise SystemExit(f"demo: timed out waiting for {what}")
        time.sleep(0.5)


def reference(app, work):
    """the result of an uninterrupted run with 6 ranks on this host"""
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_btl="self,vader", OMPI_MCA_btl_vader_single_copy_mechanism="none",
               TMPDIR=work)
    out = sh([shutil.which("mpirun.openmpi") or "mpirun", "--oversubscribe", "-np", "6", app,
              str(ITERS), "0"], env)
    return re.findall(r"^RESULT (\S+)$", out, re.M)[0]


def main():
    work = tempfile.mkdtemp(prefix="crjob-demo-")
    os.chmod(work, 0o755)
    cdir = os.path.join(work, "cluster")
    cluster = [sys.executable, os.path.join(top, "tests", "slurm", "cluster")]
    app = os.path.join(top, "tests", "slurm", "mpi_app.openmpi")
    try:
        print("== bringing up a Slurm cluster of 6 nodes (network namespaces on this machine)")
        print("   " + sh(cluster + ["up", "--nodes", "6", "--dir", cdir, "--builddir", top])
              .strip().splitlines()[-1])
        env = dict(os.environ)
        for line in read(os.path.join(cdir, "env")).splitlines():
            m = re.match(r"export (\w+)=(.*)", line)
            if m:
                env[m.group(1)] = os.path.expandvars(m.group(2).strip('"'))
        env["PATH"] = env["PATH"].replace("$PATH", os.environ["PATH"])
        nodes = dict(kv.split("=") for kv in env["CRJOB_NODES"].split())
        netns = dict(kv.split("=") for kv in env["CRJOB_NODE_NETNS"].split())
        hosts = os.path.join(work, "crmpi-hosts")
        with open(hosts, "w") as f:
            f.writelines(f"{netns[n]} {nodes[n]} {n}\n" for n in nodes)
        script = os.path.join(work, "job.sh")
        with open(script, "w") as f:
            f.write(f"""#!/bin/sh
echo "batch script starts on $(hostname)"
export OMPI_MCA_plm=rsh OMPI_MCA_plm_rsh_agent={top}/crmpi/crmpi-rsh CRMPI_HOSTS={hosts}
export OMPI_MCA_btl=self,tcp,vader OMPI_MCA_btl_tcp_if_include=eth0 \\
    OMPI_MCA_oob_tcp_if_include=eth0 OMPI_MCA_btl_vader_single_copy_mechanism=none
export TMPDIR={work}
mpirun.openmpi --allow-run-as-root -np 6 --map-by ppr:2:node {app} {ITERS} {SLEEP_MS}
""")
        os.chmod(script, 0o755)
        out = os.path.join(work, "job.out")
        jobid = sh(["sbatch", "--parsable", "--checkpoint", "-N", "3", "-o", out, script], env).strip().split(";")[0]
        print(f"== sbatch --checkpoint -N 3 job.sh: job {jobid}, mpirun -np 6, 2 ranks per node")

        def its():
            return [int(x) for x in re.findall(r"^it (\d+)$", read(out), re.M)]

        wait_for("the job to run", lambda: [i for i in its() if i >= 30], 90)
        first = job_field(env, jobid, "NodeList")
        print(f"   running on {first}, at iteration {its()[-1]}")

        def registered():
            r = subprocess.run(["crjob", "--json", "status", jobid], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, env=env)
            return len(set(re.findall(r'"name":\s*"(node\d+)"', r.stdout))) >= 3
        wait_for("the job's trees to register", registered, 30)
        print(f"== crjob checkpoint {jobid}")
        print("   " + sh(["crjob", "checkpoint", jobid], env).strip())
        at = its()[-1]
        print(f"   the job runs on: iteration {at}")
        print("   " + sh(["crjob", "history", jobid], env).strip().replace("\n", "\n   "))
        print(f"== scontrol requeue {jobid}, with {first} excluded")
        for argv in (["requeuehold", jobid], ["update", f"JobId={jobid}", f"ExcNodeList={first}"],
                     ["release", jobid]):
            sh(["scontrol"] + argv, env)
        print("   (Slurm lets a requeued job wait for its old credential to expire: 12 s here)")
        print("== computing the result of an uninterrupted run, for comparison")
        want = reference(app, work)
        wait_for("the job to end", lambda: job_field(env, jobid, "JobState") in (
            "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"), 300)
        text = read(out)
        state, second = job_field(env, jobid, "JobState"), job_field(env, jobid, "NodeList")
        got = re.findall(r"^RESULT (\S+)$", text, re.M)
        resumed = [l for l in text.splitlines() if l.startswith("crjob resume")]
        print(f"   job {jobid} {state} on {second} after {job_field(env, jobid, 'Restarts')} "
              "requeue")
        for l in resumed:
            print(f"   {l}")
        print(f"   last lines: {' | '.join(text.strip().splitlines()[-2:])}")
        ok = (state == "COMPLETED" and second != first and got == [want] and
              text.count("batch script starts") == 1)
        print(f"== verify: resumed from its checkpoint (the batch script ran once) on other "
              f"nodes, result {got[0] if got else '?'} = uninterrupted {want}: "
              f"{'yes' if ok else 'NO'}")
        return 0 if ok else 1
    finally:
        print("== tearing the cluster down")
        sh(cluster + ["down", "--dir", cdir], check=False)
        if os.environ.get("KEEP"):
            print(f"   output kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
