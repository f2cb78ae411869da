"""crd dump/restore through the image store: generations, dedup, crash safety, damage."""
import os
import random
import re
import shutil
import signal
import sys
import time

_runner = sys.modules["__main__"]


class Memgen:
    """tests/store/memgen in its own directory"""

    def __init__(self, env, mib, pct, name="work"):
        self.env = env
        self.work = os.path.join(env.tmpdir, name)
        os.makedirs(self.work)
        self.log = os.path.join(self.work, "out.log")
        prog = os.path.join(env.builddir, "tests", "store", "memgen")
        self.pid = _runner.spawn([prog, str(mib), str(pct)], cwd=self.work, out=self.log)
        deadline = time.time() + 60
        while not os.path.exists(os.path.join(self.work, "ready")):
            assert time.time() < deadline and _runner.alive(self.pid), "memgen did not start"
            time.sleep(0.01)
        self.gen = 0

    def gens(self):
        try:
            with open(os.path.join(self.work, "gens")) as f:
                return len(f.read().split("\n")) - 1
        except OSError:
            return 0

    def mutate(self):
        self.gen += 1
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.time() + 60
        while self.gens() < self.gen:
            assert time.time() < deadline and _runner.alive(self.pid), "memgen did not mutate"
            time.sleep(0.005)

    def verify(self, want_gen):
        os.kill(self.pid, signal.SIGUSR2)
        st = _runner.wait_for(self.pid, 60)
        with open(self.log) as f:
            out = f.read()
        assert _runner.exit_code(st) == 0, f"verification failed: {out[-500:]}"
        assert out.strip().split("\n")[-1] == f"verified {want_gen}", \
            f"restored the wrong generation: {out[-200:]}"

    def kill(self):
        if _runner.alive(self.pid):
            _runner.kill_tree(self.pid)
        self.gone()

    def gone(self):
        """the process is dead (killed or dumped): forget its status, a restore comes next"""
        deadline = time.time() + 10
        while _runner.alive(self.pid):
            assert time.time() < deadline, "the process did not die"
            time.sleep(0.005)
        _runner.reap_some()
        _runner.reaped.pop(self.pid, None)


def crd(env, *args):
    return _runner.run([env.crd] + list(args), timeout=300)


def store_args(store, job="j"):
    return ["--store", store, "--job", job]


def dump(env, m, store, *extra, job="j"):
    r = crd(env, "dump", "-t", str(m.pid), *store_args(store, job), *extra)
    assert r.code == 0, f"dump failed ({r.code}): {r.out}"
    g = re.search(r"generation (\d+)", r.out)
    assert g, f"dump did not name its generation: {r.out}"
    return int(g.group(1))


def listed(env, store, job="j"):
    """{generation: (logical, stored)} from crd store ls"""
    r = crd(env, "store", "ls", job, "--store", store)
    assert r.code == 0, f"store ls failed: {r.out}"
    gens = {}
    for line in r.out.splitlines()[1:]:
        w = line.split()
        gens[int(w[1])] = (w[5] + w[6], w[7] + w[8])
    return gens


def stored_bytes(store, job, gen):
    r = _runner.run([shutil.which("du"), "-sb",
                     os.path.join(store, "jobs", job, f"gen-{gen}")])
    return int(r.out.split()[0])


def generations_restore_exactly(env):
    """5 generations of a process rewriting 2% of its pages: each new one costs about 2%,
    and every generation restores to exactly the memory of its moment"""
    store = os.path.join(env.tmpdir, "store")
    os.mkdir(store)
    m = Memgen(env, 64, 2)
    try:
        for g in range(1, 6):
            assert dump(env, m, store, "--leave-running") == g
            m.mutate()
        full = stored_bytes(store, "j", 1)
        for g in range(2, 6):
            b = stored_bytes(store, "j", g)
            assert b < full * 0.08, f"generation {g} stored {b} bytes of {full}"
        assert sorted(listed(env, store)) == [1, 2, 3, 4, 5]
        m.kill()
        for g in range(1, 6):
            r = crd(env, "restore", *store_args(store), "--generation", str(g), "--detach")
            assert r.code == 0, f"restore of generation {g} failed: {r.out}"
            m.verify(g - 1)
        assert not [f for f in os.listdir("/dev/shm") if f.startswith("crd-restore-")], \
            "restore left its staging directory"
    finally:
        m.kill()


def corrupt_pack_refused(env):
    """a damaged byte in a pack: verify names the generation and the pack, restore refuses"""
    store = os.path.join(env.tmpdir, "store")
    os.mkdir(store)
    m = Memgen(env, 16, 2)
    try:
        dump(env, m, store)
        m.gone()
        pack = [f for f in os.listdir(os.path.join(store, "jobs", "j", "gen-1"))
                if f.endswith(".pack")][0]
        path = os.path.join(store, "jobs", "j", "gen-1", pack)
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) // 2)
            b = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([b[0] ^ 0x40]))
        r = crd(env, "store", "verify", "j", "1", "--store", store)
        assert r.code == 1 and "gen 1" in r.out.replace("generation", "gen") and pack in r.out, \
            f"verify: {r.code}: {r.out}"
        r = crd(env, "restore", *store_args(store), "--detach")
        assert r.code != 0 and pack in r.out, f"restore of a damaged generation: {r.out}"
        assert not _runner.alive(m.pid), "a process was created from damaged images"
    finally:
        m.kill()


def dumper_killed(env):
    """crd killed at random points of dumps into the store: the previous generation still
    verifies and restores, the broken ones are not listed, gc reclaims them.  (A tree whose
    dumper is killed in the middle of a syscall injection may die with it: each kill gets
    a tree of its own.)"""
    store = os.path.join(env.tmpdir, "store")
    os.mkdir(store)
    m = Memgen(env, 64, 5)
    victims, killed = [], []
    rnd = random.Random(os.getpid())
    try:
        dump(env, m, store, "--leave-running")
        for i in range(3):
            v = Memgen(env, 160, 100, f"victim{i}")
            victims.append(v)
            v.mutate()
            pid = _runner.spawn([env.crd, "dump", "-t", str(v.pid), *store_args(store)],
                                out=os.path.join(env.tmpdir, f"killed{i}.log"))
            time.sleep(rnd.uniform(0.02, 0.15))
            os.kill(pid, signal.SIGKILL)
            _runner.wait_for(pid, 30)
            killed.append(pid)
        # the next dump removes the staging directories the killed ones left
        dump(env, m, store, "--leave-running")
        stale = [d for d in os.listdir("/tmp")
                 if any(d.startswith(f"crd-dump-{p}-") for p in killed)]
        assert not stale, f"staging directories left by killed dumps: {stale}"
        gens = listed(env, store)
        partial = [d for d in os.listdir(os.path.join(store, "jobs", "j")) if "partial" in d]
        assert partial, "no dump was killed in the middle"
        # a dump killed after its commit is a complete generation; every one listed verifies
        assert 1 in gens and len(gens) + len(partial) <= 5, f"generations: {gens}, {partial}"
        for g in gens:
            r = crd(env, "store", "verify", "j", str(g), "--store", store)
            assert r.code == 0, f"verify of generation {g} after the crashes: {r.out}"
        r = crd(env, "store", "gc", "j", "--force", "--store", store)
        assert r.code == 0, f"gc: {r.out}"
        left = [d for d in os.listdir(os.path.join(store, "jobs", "j")) if "partial" in d]
        assert not left, f"gc left {left}"
        m.kill()
        r = crd(env, "restore", *store_args(store), "--generation", "1", "--detach")
        assert r.code == 0, f"restore of generation 1 failed: {r.out}"
        m.verify(0)
    finally:
        m.kill()
        for v in victims:
            v.kill()


def store_full(env):
    """the store's disk fills up: the dump fails, the tree runs on, generation 1 is intact"""
    store = os.path.join(env.tmpdir, "store")
    os.mkdir(store)
    r = _runner.run(["/bin/mount", "-t", "tmpfs", "-o", "size=56m", "crd-test-store", store])
    assert r.code == 0, f"can't mount a small tmpfs: {r.out}"
    m = None
    try:
        m = Memgen(env, 40, 100)
        dump(env, m, store, "--leave-running")
        m.mutate()
        r = crd(env, "dump", "-t", str(m.pid), *store_args(store), "--leave-running")
        assert r.code == 1 and "No space left" in r.out, f"dump into a full store: {r.out}"
        assert _runner.alive(m.pid), "the failed dump killed the tree"
        assert _runner.proc_status(m.pid, "TracerPid") == "0", "the tree is still traced"
        assert sorted(listed(env, store)) == [1], "a broken generation is listed"
        r = crd(env, "store", "verify", "j", "1", "--store", store)
        assert r.code == 0, f"generation 1 after the failure: {r.out}"
        m.verify(1)
    finally:
        if m:
            m.kill()
        _runner.run(["/bin/umount", store])


def two_writers_one_generation(env):
    """two trees dumped at once into one generation (two "nodes"), committed together:
    each restores its own memory"""
    store = os.path.join(env.tmpdir, "store")
    os.mkdir(store)
    a = Memgen(env, 48, 3, "a")
    b = Memgen(env, 48, 3, "b")
    try:
        a.mutate()
        procs = []
        for m, w in ((a, "node-a"), (b, "node-b")):
            procs.append(_runner.spawn([env.crd, "dump", "-t", str(m.pid), *store_args(store),
                                        "--generation", "1", "--writer", w, "--no-commit"],
                                       out=os.path.join(env.tmpdir, f"{w}.log")))
        for p in procs:
            assert _runner.exit_code(_runner.wait_for(p, 120)) == 0, "a dump failed"
        a.gone()
        b.gone()
        assert listed(env, store) == {}, "visible before the commit"
        r = crd(env, "store", "commit", "j", "1", "--writer", "node-a", "--writer", "node-b",
                "--store", store)
        assert r.code == 0, f"commit: {r.out}"
        r = crd(env, "store", "verify", "j", "1", "--store", store)
        assert r.code == 0, f"verify: {r.out}"
        r = crd(env, "restore", *store_args(store), "--detach")
        assert r.code != 0 and "--writer" in r.out, f"restore without --writer: {r.out}"
        for m, w, g in ((a, "node-a", 1), (b, "node-b", 0)):
            r = crd(env, "restore", *store_args(store), "--writer", w, "--detach")
            assert r.code == 0, f"restore of {w} failed: {r.out}"
            m.verify(g)
    finally:
        a.kill()
        b.kill()


def pre_dump_incremental(env):
    """pre-dump while the tree runs, writes go on, then the final dump writes only what was
    written since; pre-dump and final dump twice in a row; every generation restores"""
    store = os.path.join(env.tmpdir, "store")
    os.mkdir(store)
    m = Memgen(env, 96, 3)
    try:
        for g in (1, 2):
            r = crd(env, "pre-dump", "-t", str(m.pid), *store_args(store))
            assert r.code == 0 and "pages copied" in r.out, f"pre-dump failed: {r.out}"
            m.mutate()
            r = crd(env, "dump", "-t", str(m.pid), *store_args(store), "--leave-running", "-v")
            assert r.code == 0 and f"generation {g}, after the pre-dump" in r.out, \
                f"dump after the pre-dump: {r.out}"
            written = re.search(r"(\d+) ranges written since the pre-dump", r.out)
            assert written and int(written.group(1)) > 0, f"no writes seen: {r.out}"
            fds = os.listdir(f"/proc/{m.pid}/fd")
            assert not [f for f in fds if "userfaultfd" in os.readlink(f"/proc/{m.pid}/fd/{f}")], \
                "the tracker stayed in the process"
        r = crd(env, "store", "verify", "j", "2", "--store", store)
        assert r.code == 0, f"verify: {r.out}"
        m.kill()
        for g in (1, 2):
            r = crd(env, "restore", *store_args(store), "--generation", str(g), "--detach")
            assert r.code == 0, f"restore of generation {g} failed: {r.out}"
            m.verify(g)
            m.gone()
    finally:
        m.kill()


def pre_dump_abandoned(env):
    """a pre-dump no dump follows (a second pre-dump, a plain dump into a directory)
    leaves no tracker behind: the second pre-dump replaces it, the plain dump removes
    it and dumps all the memory, and that image restores exactly"""
    store = os.path.join(env.tmpdir, "store")
    os.mkdir(store)
    img = os.path.join(env.tmpdir, "img")
    os.mkdir(img)
    m = Memgen(env, 32, 3)

    def trackers():
        return [f for f in os.listdir(f"/proc/{m.pid}/fd")
                if "userfaultfd" in os.readlink(f"/proc/{m.pid}/fd/{f}")]
    try:
        for _ in range(2):
            r = crd(env, "pre-dump", "-t", str(m.pid), *store_args(store))
            assert r.code == 0 and "pages copied" in r.out, f"pre-dump failed: {r.out}"
            assert len(trackers()) == 1, f"trackers in the process: {trackers()}"
        m.mutate()
        r = crd(env, "dump", "-t", str(m.pid), "-D", img)
        assert r.code == 0 and "write tracker of a pre-dump" in r.out, f"dump: {r.out}"
        m.gone()
        r = crd(env, "restore", "-D", img, "--detach")
        assert r.code == 0, f"restore failed: {r.out}"
        assert not trackers(), "the restored process has a tracker"
        m.verify(1)
    finally:
        m.kill()


_SHARED_AND_PRIVATE = """
import mmap, os, sys, time
keep = []
for i in range(4):
    keep.append(bytearray(os.urandom(6 << 20)))
    shared = mmap.mmap(-1, 4 << 20)
    shared.write(os.urandom(4 << 20))
    keep.append(shared)
open(sys.argv[1], "w").close()
while True:
    time.sleep(1)
"""


def shared_memory_beside_private(env):
    """regions of shared anonymous memory between private ones: each is dumped while the
    pages writer may still write the private memory before it, both through the one
    store writer of the dump; every generation verifies"""
    store = os.path.join(env.tmpdir, "store")
    os.mkdir(store)
    ready = os.path.join(env.tmpdir, "ready")
    pid = _runner.spawn([sys.executable, "-c", _SHARED_AND_PRIVATE, ready])
    try:
        deadline = time.time() + 30
        while not os.path.exists(ready):
            assert time.time() < deadline and _runner.alive(pid), "the process did not start"
            time.sleep(0.01)
        for g in range(1, 4):
            r = crd(env, "dump", "-t", str(pid), *store_args(store), "--leave-running")
            assert r.code == 0, f"dump {g} failed ({r.code}): {r.out}"
            r = crd(env, "store", "verify", "j", str(g), "--store", store)
            assert r.code == 0, f"generation {g} does not verify: {r.out}"
    finally:
        _runner.kill_tree(pid)


CASES = [("generations-restore-exactly", generations_restore_exactly),
         ("shared-memory-beside-private", shared_memory_beside_private),
         ("corrupt-pack-refused", corrupt_pack_refused),
         ("dumper-killed", dumper_killed),
         ("store-full", store_full),
         ("two-writers-one-generation", two_writers_one_generation),
         ("pre-dump-incremental", pre_dump_incremental),
         ("pre-dump-abandoned", pre_dump_abandoned)]
