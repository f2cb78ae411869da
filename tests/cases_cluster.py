"""Multi-node jobs (issue 5): tests/cluster/job on namespaces "nodes" of tests/cluster/harness.py.

With crd alone: a job moved to other nodes by dumping every node's rank tree
under the network lock and restoring each elsewhere with --remap-ip, and a
global checkpoint that lets the job run.  With the distributed layer of
docs/distributed.md (crjob-agent, crjob-coord, crjob): checkpoint, stop and
restart elsewhere, periodic snapshots, faults and authorization; those skip
while their binaries are missing.

Every case compares the job's RESULT with that of an uninterrupted run of the
same shape: the result depends on every message and block exchanged and not
on timing (round pacing, ports, addresses), so the reference runs unpaced.
"""
import json
import os
import re
import shutil
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "cluster"))
import harness  # noqa: E402

NODES, RANKS = 3, 2
USER = 1000	# an ordinary uid, for jobs not of root
_refs = {}


def reference(env, rounds, ranks=RANKS, nodes=NODES, extra=()):
    """RESULT of an uninterrupted, unpaced run of that shape (computed once)"""
    key = (rounds, ranks, nodes, tuple(extra))
    if key not in _refs:
        c = harness.Cluster(env, nodes)
        try:
            _refs[key] = c.start_job(ranks=ranks, rounds=rounds, round_ms=0,
                                     extra=extra).wait_done(120)
        finally:
            c.destroy()
    return _refs[key]


def no_locks_left(c):
    for h in range(len(c.hosts.names)):
        assert not c.locks(h), f"network locks left on host {h}: {c.locks(h)}"


# ------------------------------------------------------------------ crd alone

def job_uninterrupted(env):
    """3 nodes x 2 ranks to the end, twice: no error, the same RESULT both times"""
    c = harness.Cluster(env, NODES)
    try:
        a = c.start_job(ranks=RANKS, rounds=150, round_ms=20).wait_done(120)
        b = c.start_job(ranks=RANKS, rounds=150, round_ms=5, extra=["--io", "poll"]).wait_done(120)
    finally:
        c.destroy()
    assert a == b, f"two uninterrupted runs differ: {a} {b}"
    assert a == reference(env, 150), "the unpaced run differs"


def job_fault_detected(env):
    """a corrupted, a lost and a doubled message each fail the job loudly (so the
    checks of the other cases prove something)"""
    c = harness.Cluster(env, NODES)
    try:
        for fault, says in (("corrupt", "checksum mismatch"), ("drop", "lost"),
                            ("dup", "duplicate")):
            job = c.start_job(ranks=RANKS, rounds=60, round_ms=0,
                              extra=["--fault", fault, "--fault-round", "20"])
            try:
                job.wait_done(60)
            except AssertionError as e:
                assert says in str(e), f"--fault {fault}: unexpected failure: {e}"
                job.kill()
                continue
            raise AssertionError(f"--fault {fault} went unnoticed")
    finally:
        c.destroy()


def _img(c, k):
    d = os.path.join(c.work, "img", f"node{k}")
    os.makedirs(d, exist_ok=True)
    return d


def _remap_args(remap):
    args = []
    for old, new in remap:
        args += ["--remap-ip", f"{old}={new}"]
    return args


def _restore_all(c, job, imgs, to):
    """restore job node k from imgs[k] on host to[k], all locked, then unlock everywhere"""
    remap = [(c.addr(job.hosts[k]), c.addr(to[k])) for k in job.roots]
    for k, pid in job.roots.items():
        r = c.crd(to[k], "restore", "-D", imgs[k], "--detach", "--keep-net-locked",
                  *_remap_args(remap))
        assert int(r.out.split()[-1]) == pid, f"restore printed {r.out[-500:]!r}"
        assert c.net_of(pid) == to[k], f"node {k} was restored on host {c.net_of(pid)}"
    old = list(job.hosts)
    job.hosts = list(to)
    # every tree is back (and locked) before any packet flows
    for k, pid in job.roots.items():
        for h in (to[k], old[k]):
            r = c.run([env_crd(c), "net-unlock", str(pid), "--netns", c.netns(h)])
            assert r.code == 0, f"net-unlock {pid} on host {h}: {r.out}"


def env_crd(c):
    return c.env.crd


def _move(c, job, to, pause=0):
    """dump every node's tree (killed, still locked), pause seconds, restore on hosts to"""
    imgs = {}
    for k, pid in job.roots.items():
        imgs[k] = _img(c, k)
        shutil.rmtree(imgs[k])
        os.makedirs(imgs[k])
        c.crd(job.hosts[k], "dump", "-t", str(pid), "-D", imgs[k], "--keep-net-locked")
        st = harness.runner().wait_for(pid, 10)
        assert st is not None, f"the dump did not kill node {k}'s tree"
    at = job.min_progress()
    assert at < job.rounds - 20, f"dumped too late (round {at})"
    time.sleep(pause)
    _restore_all(c, job, imgs, to)
    job.wait_progress(at + 10)


def _moves(env, rounds, round_ms, moves, pause=0, ranks=RANKS, extra=(), user=None):
    ref = reference(env, rounds, ranks, extra=extra)
    c = harness.Cluster(env, NODES, spare=NODES)
    try:
        job = c.start_job(ranks=ranks, rounds=rounds, round_ms=round_ms, extra=extra,
                          user=user)
        job.wait_progress(20)
        for i in range(moves):
            _move(c, job, [(NODES if i % 2 == 0 else 0) + k for k in job.roots], pause)
        assert job.wait_done(120) == ref, f"the moved job's RESULT differs from {ref}"
        no_locks_left(c)
    finally:
        c.destroy()


def job_moved_with_crd(env):
    """every node's rank tree dumped (all frozen and locked before any is released),
    dead for 3 s, restored on 3 other nodes with --remap-ip for every node, unlocked
    everywhere; and back: the job finishes with the uninterrupted RESULT"""
    _moves(env, 400, 40, 2, pause=3)


def job_moved_unpaced(env):
    """the same, 3 nodes x 3 ranks, rounds unpaced (much data in flight at each dump),
    a /dev/shm file as shared memory and poll(): moved 4 times"""
    _moves(env, 3000, 0, 4, ranks=3, extra=["--shm", "dev", "--io", "poll"])


def job_moved_as_user(env):
    """a job of an ordinary user (uid 1000), moved by root's crd: it comes back
    with its credentials and finishes right"""
    ref = reference(env, 300)
    c = harness.Cluster(env, NODES, spare=NODES)
    try:
        job = c.start_job(ranks=RANKS, rounds=300, round_ms=30, user=USER)
        job.wait_progress(20)
        _move(c, job, [NODES + k for k in job.roots])
        for k in job.roots:
            for p in job.tree(k):
                assert harness.runner().proc_status(p, "Uid").split()[:3] == [str(USER)] * 3, \
                    f"pid {p} of node {k} came back as uid {harness.runner().proc_status(p, 'Uid')}"
        assert job.wait_done(120) == ref
        no_locks_left(c)
    finally:
        c.destroy()


def _store_moves(env, gens):
    """gens: per generation, (pre-dump first, crd dump options)"""
    rounds = 500
    ref = reference(env, rounds)
    c = harness.Cluster(env, NODES, spare=NODES)
    try:
        store = c.make_store()
        job = c.start_job(ranks=RANKS, rounds=rounds, round_ms=30)
        job.wait_progress(20)
        sargs = ["--store", store, "--job", "j"]
        for gen, (pre, extra) in enumerate(gens, 1):
            writers = {k: f"node{k}-{pid}" for k, pid in job.roots.items()}
            if pre:
                for k, pid in job.roots.items():
                    c.crd(job.hosts[k], "pre-dump", "-t", str(pid), *sargs,
                          "--writer", writers[k], "--generation", str(gen))
            for k, pid in job.roots.items():
                c.crd(job.hosts[k], "dump", "-t", str(pid), *sargs, "--generation", str(gen),
                      "--no-commit", "--writer", writers[k], "--keep-net-locked", *extra)
            job.wait_gone()
            at = job.min_progress()
            r = c.run([c.env.crd, "store", "commit", "j", str(gen), "--store", store] +
                      [a for w in writers.values() for a in ("--writer", w)])
            assert r.code == 0, f"commit: {r.out}"
            to = [(NODES if gen % 2 else 0) + k for k in job.roots]
            remap = [(c.addr(job.hosts[k]), c.addr(to[k])) for k in job.roots]
            old = list(job.hosts)
            for k, pid in job.roots.items():
                r = c.crd(to[k], "restore", *sargs, "--generation", str(gen), "--writer",
                          writers[k], "--detach", "--keep-net-locked", *_remap_args(remap))
                assert int(r.out.split()[-1]) == pid, f"restore printed {r.out[-300:]!r}"
            job.hosts = to
            for k, pid in job.roots.items():
                for h in (to[k], old[k]):
                    c.crd(h, "net-unlock", str(pid))
            job.wait_progress(at + 10)
        assert job.wait_done(120) == ref, f"the moved job's RESULT differs from {ref}"
        no_locks_left(c)
    finally:
        c.destroy()


def job_moved_through_store_crd(env):
    """what the agents do, with crd alone: every node dumps its tree into one
    generation of a shared store (--no-commit, a writer each, kept locked), one
    commit, every tree restored from the store on 3 other nodes: the uninterrupted
    RESULT; and back, with the cgroup freezer"""
    gens = [(False, [])]
    if os.path.isdir("/sys/fs/cgroup/freezer"):
        gens.append((False, ["--freezer=cgroup"]))
    _store_moves(env, gens)


def job_pre_dump_store_crd(env):
    """the same with a pre-dump of every node (into the generation a coordinator
    names) before the generation's dumps"""
    _store_moves(env, [(True, [])])


def job_checkpoint_running_crd(env):
    """a global checkpoint with crd alone: every node dumped with --leave-running and
    --keep-net-locked (consistent: no node talks until all are dumped), one of them
    kept frozen 3 s by its action script, then unlocked; the job finishes with the
    uninterrupted RESULT, and so does its checkpoint restored on 3 other nodes afterwards"""
    rounds = 300
    ref = reference(env, rounds)
    c = harness.Cluster(env, NODES, spare=NODES)
    try:
        job = c.start_job(ranks=RANKS, rounds=rounds, round_ms=40)
        job.wait_progress(30)
        slow = os.path.join(c.work, "slow.sh")
        with open(slow, "w") as f:
            f.write('#!/bin/sh\n[ "$CRD_ACTION" = post-dump ] && sleep 3\nexit 0\n')
        os.chmod(slow, 0o755)
        imgs = {}
        for k, pid in job.roots.items():
            imgs[k] = _img(c, k)
            c.crd(job.hosts[k], "dump", "-t", str(pid), "-D", imgs[k], "--leave-running",
                  "--keep-net-locked", *(["--action-script", slow] if k == 1 else []))
        for k, pid in job.roots.items():
            c.crd(job.hosts[k], "net-unlock", str(pid))
        job.wait_moving(10)
        assert job.wait_done(120) == ref, f"the checkpointed job's RESULT differs from {ref}"
        no_locks_left(c)
        # the checkpoint itself is a consistent state of the whole job
        for k in job.roots:
            os.unlink(os.path.join(job.out, f"result.node{k}"))
        _restore_all(c, job, imgs, [NODES + k for k in job.roots])
        assert job.wait_done(120) == ref, f"the restored checkpoint's RESULT differs from {ref}"
        no_locks_left(c)
    finally:
        c.destroy()


def job_copy_in_pidns(env):
    """a global checkpoint (--leave-running, --keep-net-locked) restored with --pidns on
    3 other nodes while the original runs on with the same PIDs: both finish, each with
    the uninterrupted RESULT"""
    rounds = 300
    ref = reference(env, rounds)
    c = harness.Cluster(env, NODES, spare=NODES)
    try:
        job = c.start_job(ranks=RANKS, rounds=rounds, round_ms=30)
        job.wait_progress(30)
        imgs = {}
        for k, pid in job.roots.items():
            imgs[k] = _img(c, k)
            c.crd(job.hosts[k], "dump", "-t", str(pid), "-D", imgs[k], "--leave-running",
                  "--keep-net-locked")
        for k, pid in job.roots.items():
            c.crd(job.hosts[k], "net-unlock", str(pid))
        remap = [(c.addr(job.hosts[k]), c.addr(NODES + k)) for k in job.roots]
        inits = {}
        for k, pid in job.roots.items():
            r = c.crd(NODES + k, "restore", "-D", imgs[k], "--detach", "--pidns",
                      "--keep-net-locked", *_remap_args(remap))
            inits[k] = int(r.out.split()[-1])
            assert c.net_of(inits[k]) == NODES + k, f"copy of node {k} is not on its host"
            c.trees.append(inits[k])
        for k, pid in job.roots.items():
            c.crd(NODES + k, "net-unlock", str(pid))
        assert job.wait_done(120) == ref, "the original's RESULT differs"
        for k, init in inits.items():
            st = harness.runner().wait_for(init, 120)
            assert st is not None, f"the copy of node {k} did not finish: {job.logs()}"
            assert harness.runner().exit_code(st) == 0, \
                f"the copy of node {k} failed ({harness.runner().exit_code(st)}): {job.logs()}"
        # each node's log has the original's and the copy's RESULT, from two PID namespaces
        for k in job.roots:
            with open(job.log_path(k)) as f:
                ns = {ln.split()[4] for ln in f if ln.endswith(f"RESULT {ref}\n")}
            assert len(ns) == 2, f"node {k}: RESULT {ref} from PID namespaces {ns}"
        no_locks_left(c)
    finally:
        c.destroy()


# ------------------------------------------------------------------ crjob (docs/distributed.md)

JOB_ID = "4242"


def _need_all(env):
    for name, sub in (("crjob-agent", "agent"), ("crjob-coord", "coord"), ("crjob", "crjob")):
        harness.need(env, name, sub)


def _cli_cluster(env, rounds, round_ms=50, spare=0, tmpfs=None, coord_extra=(), user=None):
    """agents on every host, the job on the first NODES (as uid user), its coordinator"""
    _need_all(env)
    c = harness.Cluster(env, NODES, spare=spare)
    try:
        c.make_store(tmpfs)
        c.start_agents()
        job = c.start_job(ranks=RANKS, rounds=rounds, round_ms=round_ms, user=user)
        job.wait_progress(10)
        c.start_coord(job, JOB_ID, extra=coord_extra)
    except BaseException:
        c.destroy()
        raise
    return c, job


def generations(c, job_id=JOB_ID):
    """committed generations of the job in the store (crd store ls)"""
    r = c.run([c.env.crd, "store", "ls", str(job_id), "--store", c.store])
    if r.code:
        return []
    gens = []
    for line in r.out.splitlines()[1:]:
        w = line.split()
        if len(w) > 1 and w[1].isdigit():
            gens.append(int(w[1]))
    return sorted(gens)


def _verify(c, gen):
    r = c.run([c.env.crd, "store", "verify", JOB_ID, str(gen), "--store", c.store])
    assert r.code == 0, f"generation {gen} does not verify: {r.out[-1500:]}"


def _checkpoint_ok(c, *extra):
    before = generations(c)
    r = c.crjob("checkpoint", JOB_ID, *extra)
    assert r.code == 0, f"crjob checkpoint failed ({r.code}): {r.out[-1500:]}\n{c.coord_logs()}"
    after = generations(c)
    assert len(after) == len(before) + 1, f"generations {before} -> {after}"
    return after[-1]


def _restart_on(c, job, to, *extra):
    args = ["restart", JOB_ID]
    for k in job.roots:
        h = to[k]
        args += ["--node", f"node{h},{c.addr(h)}:{harness.AGENT_PORT},{c.addr(h)}"]
    r = c.crjob(*args, *extra)
    assert r.code == 0, f"crjob restart failed ({r.code}): {r.out[-1500:]}\n{c.coord_logs()}"
    for k, pid in job.roots.items():
        assert c.net_of(pid) == to[k], f"node {k} is on host {c.net_of(pid)}, not {to[k]}"
    job.hosts = list(to)


def cli_checkpoint_running(env):
    """crjob checkpoint JOB: a generation is committed and verifies, the job runs on to
    the uninterrupted RESULT"""
    rounds = 300
    ref = reference(env, rounds)
    c, job = _cli_cluster(env, rounds)
    try:
        gen = _checkpoint_ok(c)
        _verify(c, gen)
        job.wait_moving(10)
        assert job.wait_done(120) == ref
        no_locks_left(c)
    finally:
        c.destroy()


def cli_stop_restart(env):
    """crjob checkpoint --stop, then crjob restart on 3 other nodes: the uninterrupted RESULT"""
    rounds = 300
    ref = reference(env, rounds)
    c, job = _cli_cluster(env, rounds, spare=NODES)
    try:
        _checkpoint_ok(c, "--stop")
        job.wait_gone()
        at = job.min_progress()
        time.sleep(1)
        assert job.min_progress() == at, "the job goes on after --stop"
        _restart_on(c, job, [NODES + k for k in job.roots])
        job.wait_progress(at + 10)
        assert job.wait_done(120) == ref
        no_locks_left(c)
    finally:
        c.destroy()


def cli_interval_restart(env):
    """crjob interval JOB 5s for 2 minutes (CRJOB_TEST_INTERVAL_RUN=S for another time),
    the job's nodes killed, restart from the last generation on 3 other nodes: the
    uninterrupted RESULT"""
    run_s = int(os.environ.get("CRJOB_TEST_INTERVAL_RUN", "120"))
    round_ms = 40
    rounds = (run_s + 15) * 1000 // round_ms
    ref = reference(env, rounds)
    c, job = _cli_cluster(env, rounds, round_ms=round_ms, spare=NODES)
    try:
        r = c.crjob("interval", JOB_ID, "5s")
        assert r.code == 0, f"crjob interval failed ({r.code}): {r.out}"
        time.sleep(run_s)
        r = c.crjob("interval", JOB_ID, "0")
        assert r.code == 0, f"crjob interval 0 failed ({r.code}): {r.out}"
        gens = generations(c)
        assert len(gens) >= run_s // 5 - 2, f"{run_s} s at 5 s intervals made generations {gens}"
        r = c.crjob("--json", "history", JOB_ID)
        assert r.code == 0, f"crjob history failed: {r.out}"
        json.loads(r.out)
        assert job.min_progress() < rounds - 100, "the job ran out before the restart"
        job.kill()	# the nodes fail
        _restart_on(c, job, [NODES + k for k in job.roots])
        assert job.wait_done(120) == ref
        no_locks_left(c)
    finally:
        c.destroy()


def _crd_dumping_under(c, h):
    """a crd dump the agent of host h runs"""
    for p in harness.runner().descendants(c.agents[h])[1:]:
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b"crd" and b"dump" in argv:
            return p
    return None


def _failed_checkpoint(c, job, node, r, gens_before):
    """crjob said 1 naming node, no generation was added, the previous one verifies,
    the job runs on"""
    assert r.code == 1, f"crjob checkpoint exited {r.code}: {r.out[-1500:]}"
    assert node in r.out, f"crjob's message does not name {node}: {r.out[-1500:]}"
    assert generations(c) == gens_before, f"generations {gens_before} -> {generations(c)}"
    if gens_before:
        _verify(c, gens_before[-1])
    job.wait_moving(10, timeout=60)


def cli_fault_agent_killed(env):
    """an agent killed (by PID) during a dump: crjob exits 1 naming its node, the job
    runs on to its RESULT, the previous generation verifies"""
    rounds = 400
    ref = reference(env, rounds)
    c, job = _cli_cluster(env, rounds)
    try:
        _checkpoint_ok(c)
        gens = generations(c)
        out = os.path.join(c.work, "crjob.out")
        pid = c.crjob_async("checkpoint", JOB_ID, out=out)
        victim = job.hosts[1]
        deadline = time.time() + 30
        while not _crd_dumping_under(c, victim):
            assert time.time() < deadline and not harness.gone(pid), \
                f"no crd dump under the agent of host {victim}: {c.agent_log(victim)}"
            time.sleep(0.005)
        c.kill_agent(victim)
        st = harness.runner().wait_for(pid, 120)
        assert st is not None, "crjob checkpoint hangs after an agent died"
        with open(out, errors="replace") as f:
            r = harness.runner().Result(st, f.read())
        _failed_checkpoint(c, job, f"node{victim}", r, gens)
        assert job.wait_done(120) == ref
    finally:
        c.destroy()


def cli_fault_store_full(env):
    """the store (a small tmpfs) fills up during a checkpoint: crjob exits 1 naming a
    node, the job runs on, the previous generation verifies"""
    rounds = 400
    ref = reference(env, rounds)
    c, job = _cli_cluster(env, rounds, tmpfs="64m")
    try:
        _checkpoint_ok(c)
        gens = generations(c)
        # leave the next generation about 64 KiB
        filler = os.path.join(c.store, "filler")
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\xa5" * (1 << 20))
                    f.flush()
            except OSError:
                pass
        st = os.statvfs(c.store)
        free = st.f_bavail * st.f_frsize
        if free > 64 << 10:
            os.truncate(filler, os.path.getsize(filler))
        r = c.crjob("checkpoint", JOB_ID)
        assert re.search(r"node\d", r.out), f"crjob names no node: {r.out[-1500:]}"
        _failed_checkpoint(c, job, "node", r, gens)
        os.unlink(filler)
        _checkpoint_ok(c)	# with room again, checkpoints work again
        assert job.wait_done(120) == ref
    finally:
        c.destroy()


DROP = """table inet crjob_test_drop {
  chain in { type filter hook input priority -400; tcp dport %d drop; tcp sport %d drop; }
  chain out { type filter hook output priority -400; tcp sport %d drop; tcp dport %d drop; }
}
"""


def _traffic_dropped(env, during):
    rounds = 500
    ref = reference(env, rounds)
    c, job = _cli_cluster(env, rounds, coord_extra=["--freeze-timeout", "5000"])
    try:
        _checkpoint_ok(c)
        gens = generations(c)
        victim = job.hosts[2]
        p = harness.AGENT_PORT
        path = os.path.join(c.work, "drop.nft")
        with open(path, "w") as f:
            f.write(DROP % (p, p, p, p))

        def drop():
            r = c.run([shutil.which("nft"), "-f", path], host=victim)
            assert r.code == 0, f"nft: {r.out}"

        out = os.path.join(c.work, "crjob.out")
        try:
            if not during:
                drop()
            pid = c.crjob_async("checkpoint", JOB_ID, out=out)
            if during:
                deadline = time.time() + 30
                while not _crd_dumping_under(c, victim):
                    assert time.time() < deadline and not harness.gone(pid), \
                        f"no crd dump under the agent of host {victim}: {c.agent_log(victim)}"
                    time.sleep(0.002)
                drop()
            st = harness.runner().wait_for(pid, 90)
            assert st is not None, \
                f"crjob checkpoint hangs with node{victim}'s traffic dropped: " \
                f"{open(out).read()}\n{c.coord_logs()}"
        finally:
            c.run([shutil.which("nft"), "delete", "table", "inet", "crjob_test_drop"],
                  host=victim)
        with open(out, errors="replace") as f:
            r = harness.runner().Result(st, f.read())
        _failed_checkpoint(c, job, f"node{victim}", r, gens)
        assert job.wait_done(120) == ref
    finally:
        c.destroy()


def cli_fault_freeze_lost(env):
    """one node's agent traffic dropped (nft in its namespace) before the checkpoint:
    its FREEZE is lost, the checkpoint fails at the freeze deadline, crjob exits 1
    naming the node, the other nodes are thawed, the job runs on to its RESULT, the
    previous generation verifies"""
    _traffic_dropped(env, during=False)


def cli_fault_traffic_dropped(env):
    """the same, the traffic dropped as soon as the node's agent started its FREEZE
    (its crd dump runs): a reply of that node is lost"""
    _traffic_dropped(env, during=True)


def cli_auth_other_user(env):
    """a job of uid 1000: crjob as another uid (nobody) is refused with exit 4 and
    changes nothing; the owner may checkpoint"""
    rounds = 300
    ref = reference(env, rounds)
    c, job = _cli_cluster(env, rounds, user=USER)
    try:
        gens = generations(c)
        coord = c.coord_addr(JOB_ID)
        for args in (["checkpoint", JOB_ID], ["checkpoint", JOB_ID, "--stop"],
                     ["interval", JOB_ID, "5s"], ["shutdown", JOB_ID]):
            r = c.crjob("--coord", coord, *args, uid=65534)
            assert r.code == 4, f"crjob {' '.join(args)} as nobody exited {r.code}: {r.out}"
        time.sleep(6)	# an interval, had it been set
        assert generations(c) == gens, f"generations {gens} -> {generations(c)}"
        assert not harness.gone(c.coord_pid), "the coordinator went away"
        job.check_alive()
        r = c.crjob("--coord", coord, "checkpoint", JOB_ID, uid=USER)
        assert r.code == 0, f"crjob checkpoint as the owner exited {r.code}: {r.out}"
        assert len(generations(c)) == len(gens) + 1, "the owner's checkpoint made no generation"
        r = c.crjob("status", JOB_ID)
        assert r.code == 0, f"crjob status as root: {r.code} {r.out}"
        assert job.wait_done(120) == ref
    finally:
        c.destroy()


CASES = [("job-uninterrupted", job_uninterrupted),
         ("job-fault-detected", job_fault_detected),
         ("job-moved-with-crd", job_moved_with_crd),
         ("job-moved-unpaced", job_moved_unpaced),
         ("job-moved-as-user", job_moved_as_user),
         ("job-moved-through-store-crd", job_moved_through_store_crd),
         ("job-pre-dump-store-crd", job_pre_dump_store_crd),
         ("job-checkpoint-running-crd", job_checkpoint_running_crd),
         ("job-copy-in-pidns", job_copy_in_pidns),
         ("crjob-checkpoint-running", cli_checkpoint_running),
         ("crjob-stop-restart", cli_stop_restart),
         ("crjob-interval-restart", cli_interval_restart),
         ("crjob-fault-agent-killed", cli_fault_agent_killed),
         ("crjob-fault-store-full", cli_fault_store_full),
         ("crjob-fault-freeze-lost", cli_fault_freeze_lost),
         ("crjob-fault-traffic-dropped", cli_fault_traffic_dropped),
         ("crjob-auth-other-user", cli_auth_other_user)]
