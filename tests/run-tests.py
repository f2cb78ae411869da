#!/usr/bin/env python3
"""crd test runner.

Runs every zdtm test program (tests/zdtm/) through checkpoint and restore in
several modes, the bad-input cases below, and the CASES of every
tests/cases_*.py module.  Prints one line per case and ends with
`N passed, N failed, N skipped`; exits 1 if anything failed.

The runner is a child subreaper: orphans of the trees it checkpoints come
back to it and are reaped here, so their PIDs are free for the restores.
It spawns and reaps every process itself (no subprocess.Popen), and kills
what a failed case leaves behind by PID.
"""
import argparse
import ctypes
import glob
import importlib.util
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
import unittest

PR_SET_CHILD_SUBREAPER = 36
libc = ctypes.CDLL(None, use_errno=True)

# statuses of every process reaped so far, by pid
reaped = {}


def reap_some():
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG | 0x40000000)  # __WALL
        except ChildProcessError:
            return
        if pid == 0:
            return
        reaped[pid] = status


def wait_for(pid, timeout):
    """Wait for pid (our child or an orphan we adopted); its wait status or None."""
    deadline = time.time() + timeout
    while True:
        reap_some()
        if pid in reaped:
            return reaped.pop(pid)
        if time.time() > deadline:
            return None
        time.sleep(0.005)


def alive(pid):
    reap_some()
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False


def exit_code(status):
    if status is None:
        return None
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 128 + os.WTERMSIG(status)


def spawn(argv, cwd=None, out=None, env=None, user=None, keep_fd=None, tty=None):
    """fork+exec with stdin /dev/null and stdout+stderr to the file out (or all on tty)."""
    pid = os.fork()
    if pid == 0:
        try:
            if user:
                os.setgroups([])
                os.setresgid(user, user, user)
                os.setresuid(user, user, user)
            if cwd:
                os.chdir(cwd)
            fd = os.open("/dev/null", os.O_RDONLY)
            os.dup2(fd, 0)
            if tty is not None:
                for i in range(3):
                    os.dup2(tty, i)
            if out:
                ofd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.dup2(ofd, 1)
                os.dup2(ofd, 2)
            if keep_fd is not None:
                os.dup2(keep_fd, 3, inheritable=True)
            os.closerange(3 if keep_fd is None else 4, 1 << 16)
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            os.execve(argv[0], argv, env if env is not None else os.environ)
        finally:
            os._exit(127)
    # pids wrap (pid_max may be 32768): a status kept for an earlier process of this pid
    # (an orphan we reaped) is not this one's
    reaped.pop(pid, None)
    return pid


class Result:
    def __init__(self, status, out):
        self.status = status
        self.code = exit_code(status)
        self.out = out


def run(argv, timeout=120, cwd=None):
    fd, path = tempfile.mkstemp(prefix="crd-run-")
    os.close(fd)
    try:
        pid = spawn(argv, cwd=cwd, out=path)
        st = wait_for(pid, timeout)
        if st is None:
            kill_tree(pid)
            raise AssertionError(f"{' '.join(argv)}: timed out")
        with open(path, errors="replace") as f:
            return Result(st, f.read())
    finally:
        os.unlink(path)


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for t in glob.glob(f"/proc/{p}/task/*/children"):
            try:
                with open(t) as f:
                    todo += [int(x) for x in f.read().split()]
            except OSError:
                pass
    return out


def kill_tree(pid):
    for p in descendants(pid):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.time() + 5
    while time.time() < deadline and any(alive(p) for p in descendants(pid)):
        time.sleep(0.01)
    reap_some()


def proc_status(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None


class Env:
    pass


# ------------------------------------------------------------------ zdtm

class Zdtm:
    """One zdtm program in one directory."""

    def __init__(self, env, prog, extra_env=None, user=None):
        self.env = env
        self.prog = os.path.join(env.zdtm, prog)
        self.work = os.path.join(env.tmpdir, "work")
        self.user = user
        os.mkdir(self.work)
        if user:
            for d in (os.path.dirname(env.tmpdir), env.tmpdir):
                os.chmod(d, 0o755)
            os.chown(self.work, user, user)
        self.log = os.path.join(self.work, "test.log")
        self.pid = None
        self.extra_env = extra_env or {}

    def start(self, timeout=120):
        e = dict(os.environ)
        e.update(self.extra_env)
        self.pid = spawn([self.prog], cwd=self.work, out=self.log, env=e, user=self.user)
        deadline = time.time() + timeout
        while not os.path.exists(os.path.join(self.work, "ready")):
            if not alive(self.pid) or time.time() > deadline:
                raise AssertionError(f"test did not get ready: {self.tail()}")
            time.sleep(0.01)

    def tail(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-2000:].strip()
        except OSError:
            return ""

    def imgdir(self, name="img"):
        d = os.path.join(self.env.tmpdir, name)
        os.makedirs(d, exist_ok=True)
        return d

    def crd(self, *args, timeout=180):
        return run([self.env.crd] + list(args), timeout=timeout)

    def dump(self, img, *extra):
        r = self.crd("dump", "-t", str(self.pid), "-D", img, *extra)
        assert r.code == 0, f"dump failed ({r.code}): {r.out}"
        return r

    def dump_kill(self, img, *extra):
        """dump, which must kill the tree: every process of it is gone after"""
        self.dump(img, *extra)
        pids = [int(f[5:-4]) for f in os.listdir(img) if f.startswith("task-")]
        assert wait_for(self.pid, 10) is not None, "the dump did not kill the tree"
        deadline = time.time() + 10
        while any(alive(p) or os.path.exists(f"/proc/{p}") for p in pids):
            assert time.time() < deadline, "the dump did not kill the whole tree"
            time.sleep(0.005)

    def finish(self, pid, timeout=60):
        os.kill(pid, signal.SIGUSR2)
        st = wait_for(pid, timeout)
        if st is None:
            kill_tree(pid)
            raise AssertionError("restored test did not finish")
        assert exit_code(st) == 0, f"verification failed ({exit_code(st)}): {self.tail()}"

    def cleanup(self):
        if self.pid and alive(self.pid):
            kill_tree(self.pid)
        # a dumped tree that was never restored keeps its connections locked
        if self.pid:
            self.crd("net-unlock", str(self.pid))
        # what a failed test may leave in /dev/shm (names end in its pid)
        for f in glob.glob(f"/dev/shm/crd-zdtm-*-{self.pid}"):
            os.unlink(f)
        # System V objects a test noted (they outlive processes)
        try:
            with open(os.path.join(self.work, "sysv-ids")) as f:
                for line in f:
                    kind, ident = line.split()
                    run([shutil.which("ipcrm"), {"sem": "-s", "msg": "-q", "shm": "-m"}[kind],
                         ident])
        except OSError:
            pass
        # and System V segments keyed by its pid (sysv_shm), which outlive processes
        if self.pid:
            key = 0x7a000000 | (self.pid & 0xffffff)
            with open("/proc/sysvipc/shm") as f:
                for line in f.readlines()[1:]:
                    k, shmid = line.split()[:2]
                    if int(k) == key:
                        run([shutil.which("ipcrm"), "-m", shmid])


def maps_of(pid):
    with open(f"/proc/{pid}/maps") as f:
        return f.read()


def zdtm_kill_detach(env, prog, user=None):
    """dump (tree killed) -> restore --detach -> verify"""
    t = Zdtm(env, prog, user=user)
    try:
        t.start()
        img = t.imgdir()
        t.dump_kill(img)
        r = t.crd("restore", "-D", img, "--detach")
        assert r.code == 0, f"restore failed ({r.code}): {r.out}"
        assert int(r.out.split()[-1]) == t.pid, f"restore printed {r.out!r}"
        if user:
            with open(f"/proc/{t.pid}/status") as f:
                st = f.read()
            assert f"Uid:\t{user}\t{user}\t{user}\t{user}" in st and \
                "CapEff:\t0000000000000000" in st, "restored with other credentials"
        t.finish(t.pid)
    finally:
        t.cleanup()


def zdtm_kill_wait(env, prog):
    """dump -> restore (crd stays the parent and returns the test's status)"""
    t = Zdtm(env, prog)
    try:
        t.start()
        img = t.imgdir()
        t.dump_kill(img)
        out = os.path.join(env.tmpdir, "restore.log")
        rpid = spawn([env.crd, "restore", "-D", img], out=out)
        deadline = time.time() + 60
        # restored once it runs untraced under crd
        while not (alive(t.pid) and proc_status(t.pid, "TracerPid") == "0"
                   and proc_status(t.pid, "PPid") == str(rpid)):
            assert time.time() < deadline and alive(rpid), \
                f"restore did not finish: {open(out).read()}"
            time.sleep(0.01)
        os.kill(t.pid, signal.SIGUSR2)
        st = wait_for(rpid, 60)
        assert st is not None, "crd restore did not return"
        assert exit_code(st) == 0, \
            f"restore returned {exit_code(st)}: {open(out).read()} {t.tail()}"
    finally:
        t.cleanup()


def zdtm_leave_redump(env, prog):
    """dump --leave-running -> dump again -> restore -> verify"""
    t = Zdtm(env, prog)
    try:
        t.start()
        before = maps_of(t.pid)
        t.dump(t.imgdir("img1"), "--leave-running")
        assert alive(t.pid), "the tree died in a --leave-running dump"
        assert proc_status(t.pid, "TracerPid") == "0", "the tree is still traced"
        assert not proc_status(t.pid, "State").startswith("t"), "the tree is still stopped"
        assert maps_of(t.pid) == before, "the dump left its mark in the address space"
        img = t.imgdir("img2")
        t.dump_kill(img)
        r = t.crd("restore", "-D", img, "--detach")
        assert r.code == 0, f"restore failed ({r.code}): {r.out}"
        t.finish(t.pid)
    finally:
        t.cleanup()


def zdtm_many_checkpoints(env, prog, count=20):
    """20 --leave-running dumps in a row, then a restore from the last: nothing leaks"""
    t = Zdtm(env, prog)
    try:
        t.start()
        before = maps_of(t.pid)
        fds_before = len(os.listdir(f"/proc/{t.pid}/fd"))
        for i in range(count):
            t.dump(t.imgdir(f"img{i}"), "--leave-running")
            assert maps_of(t.pid) == before, f"dump {i} left its mark"
            assert len(os.listdir(f"/proc/{t.pid}/fd")) == fds_before, f"dump {i} left an fd"
        img = t.imgdir("last")
        t.dump_kill(img)
        r = t.crd("restore", "-D", img, "--detach")
        assert r.code == 0, f"restore failed ({r.code}): {r.out}"
        t.finish(t.pid)
    finally:
        t.cleanup()


def zdtm_corrupt_detected(env, prog):
    """TEST_CORRUPT=1 makes the test fail: verification is not vacuous"""
    t = Zdtm(env, prog, {"TEST_CORRUPT": "1"})
    try:
        t.start()
        os.kill(t.pid, signal.SIGUSR2)
        st = wait_for(t.pid, 60)
        assert exit_code(st) == 1, f"corrupted state passed ({exit_code(st)})"
    finally:
        t.cleanup()


def zdtm_plain(env, prog):
    """no checkpoint: the test passes on its own (the baseline of every mode)"""
    t = Zdtm(env, prog)
    try:
        t.start()
        t.finish(t.pid)
    finally:
        t.cleanup()


def zdtm_cgroup_freezer(env, prog):
    """dump --freezer=cgroup -> restore -> verify"""
    if not os.path.isdir("/sys/fs/cgroup/freezer"):
        raise unittest.SkipTest("no cgroup v1 freezer")
    t = Zdtm(env, prog)
    try:
        t.start()
        img = t.imgdir()
        t.dump_kill(img, "--freezer=cgroup")
        assert not glob.glob("/sys/fs/cgroup/freezer/crd-*"), "freezer cgroup left behind"
        r = t.crd("restore", "-D", img, "--detach")
        assert r.code == 0, f"restore failed ({r.code}): {r.out}"
        t.finish(t.pid)
    finally:
        t.cleanup()


def scratch_on_another_node(env):
    """files in /dev/shm and --capture-path dirs are recreated where missing"""
    t = Zdtm(env, "scratch")
    shm = None
    try:
        t.start()
        shm = f"/dev/shm/crd-zdtm-scratch-{t.pid}"
        img = t.imgdir()
        t.dump_kill(img, "--capture-path", t.work)
        # as on another node: the scratch files are not there
        os.unlink(shm)
        os.unlink(os.path.join(t.work, "scratch.dat"))
        r = t.crd("restore", "-D", img, "--detach")
        assert r.code == 0, f"restore failed ({r.code}): {r.out}"
        assert os.stat(os.path.join(t.work, "scratch.dat")).st_mode & 0o777 == 0o640, \
            "recreated with another mode"
        t.finish(t.pid)
    finally:
        t.cleanup()
        if shm and os.path.exists(shm):
            os.unlink(shm)


def sysv_ipc_on_another_node(env):
    """semaphores and queues gone before restore (another node): recreated with their ids,
    twice in a row, so the restored tree is found as their user by the next dump"""
    t = Zdtm(env, "sysv_ipc")
    try:
        t.start()
        with open(os.path.join(t.work, "sysv-ids")) as f:
            ids = [line.split() for line in f]
        for n in range(2):
            img = t.imgdir(f"img{n}")
            t.dump_kill(img)
            for kind, ident in ids:
                r = run([shutil.which("ipcrm"), {"sem": "-s", "msg": "-q"}[kind], ident])
                assert r.code == 0, f"ipcrm {kind} {ident}: {r.out}"
            r = t.crd("restore", "-D", img, "--detach")
            assert r.code == 0, f"restore {n} failed ({r.code}): {r.out}"
        t.finish(t.pid)
    finally:
        t.cleanup()


def tcp_endpoints(pid):
    """(local, remote) hex addresses of pid's established TCP sockets"""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    out = []
    with open(f"/proc/{pid}/net/tcp") as f:
        for line in f.readlines()[1:]:
            p = line.split()
            if p[9] in inodes and p[3] == "01":
                out.append((p[1].split(":")[0], p[2].split(":")[0]))
    return out


def remap_ip(env):
    """restore --remap-ip moves TCP endpoints to a new address; the stream goes on"""
    t = Zdtm(env, "tcp_pair")
    try:
        t.start()
        assert tcp_endpoints(t.pid) == [("0100007F", "0100007F")], tcp_endpoints(t.pid)
        img = t.imgdir()
        t.dump_kill(img)
        r = t.crd("restore", "-D", img, "--detach", "--remap-ip", "127.0.0.1=127.0.0.2")
        assert r.code == 0, f"restore failed ({r.code}): {r.out}"
        got = tcp_endpoints(t.pid)
        assert got == [("0200007F", "0200007F")], f"endpoints after the remap: {got}"
        t.finish(t.pid)
    finally:
        t.cleanup()


def restore_in_other_netns(env):
    """a tree with TCP and UDP on loopback restored inside another network namespace"""
    ns = f"crd-test-{os.getpid()}"
    t = Zdtm(env, "tcp_pair")
    r = run([shutil.which("ip"), "netns", "add", ns])
    assert r.code == 0, f"ip netns add: {r.out}"
    try:
        r = run([shutil.which("ip"), "-n", ns, "link", "set", "lo", "up"])
        assert r.code == 0, f"lo up: {r.out}"
        t.start()
        img = t.imgdir()
        t.dump_kill(img)
        r = run([shutil.which("nsenter"), f"--net=/run/netns/{ns}", env.crd, "restore", "-D", img,
                 "--detach"])
        assert r.code == 0, f"restore in {ns} failed ({r.code}): {r.out}"
        assert os.stat(f"/proc/{t.pid}/ns/net").st_ino == os.stat(f"/run/netns/{ns}").st_ino, \
            "the tree is not in the other namespace"
        t.finish(t.pid)
    finally:
        t.cleanup()
        run([shutil.which("ip"), "netns", "del", ns])


def _read_pty(master, want, timeout=30):
    """what arrives on a pty master until want shows up (or timeout)"""
    import select
    got = b""
    deadline = time.time() + timeout
    while want not in got and time.time() < deadline:
        r, _, _ = select.select([master], [], [], 0.1)
        if r:
            try:
                got += os.read(master, 4096)
            except OSError:
                break
    return got


def shell_job(env):
    """a tree on a terminal: dump refused without --shell-job; restored onto another terminal"""
    m1, s1 = os.openpty()
    m2, s2 = os.openpty()
    work = os.path.join(env.tmpdir, "work")
    os.mkdir(work)
    prog = os.path.join(env.zdtm, "signals")
    pid = spawn([prog], cwd=work, tty=s1)
    try:
        deadline = time.time() + 30
        while not os.path.exists(os.path.join(work, "ready")):
            assert time.time() < deadline and alive(pid), "test did not start"
            time.sleep(0.01)
        img = os.path.join(env.tmpdir, "img")
        os.mkdir(img)
        r = run([env.crd, "dump", "-t", str(pid), "-D", img, "--leave-running"])
        assert r.code == 1 and "dump with --shell-job" in r.out, f"dump on a tty: {r.out}"
        r = run([env.crd, "dump", "-t", str(pid), "-D", img, "--shell-job"])
        assert r.code == 0, f"dump --shell-job failed: {r.out}"
        assert wait_for(pid, 10) is not None, "the dump did not kill the tree"
        # restored from another terminal: the tree's output goes there now
        rpid = spawn([env.crd, "restore", "-D", img, "--detach", "--shell-job"], tty=s2)
        st = wait_for(rpid, 60)
        assert exit_code(st) == 0, f"restore --shell-job failed ({exit_code(st)}): " + \
            _read_pty(m2, b"never", 0.5).decode(errors="replace")
        os.kill(pid, signal.SIGUSR2)
        got = _read_pty(m2, b"PASS")
        st = wait_for(pid, 30)
        assert exit_code(st) == 0 and b"PASS" in got, f"restored test: {exit_code(st)} {got!r}"
    finally:
        kill_tree(pid)
        for fd in (m1, s1, m2, s2):
            os.close(fd)


def pidns_while_running(env):
    """restore --pidns while the original tree still runs with the same PIDs"""
    # a tree without named objects: both copies run side by side
    t = Zdtm(env, "fork_tree")
    init = None
    try:
        t.start()
        img = t.imgdir()
        t.dump(img, "--leave-running")
        r = t.crd("restore", "-D", img, "--pidns", "--detach")
        assert r.code == 0, f"restore --pidns failed ({r.code}): {r.out}"
        init = int(r.out.split()[-1])
        kids = descendants(init)
        assert len(kids) >= 5, f"restored tree incomplete: {kids}"
        root = kids[1] if kids[0] == init else kids[0]
        with open(f"/proc/{root}/status") as f:
            nspid = [l for l in f if l.startswith("NSpid:")][0].split()[1:]
        assert nspid[-1] == str(t.pid), f"restored root has pid {nspid} in its namespace"
        t.finish(t.pid)		# the original
        os.kill(root, signal.SIGUSR2)
        st = wait_for(init, 60)
        assert exit_code(st) == 0, f"restored tree failed ({exit_code(st)}): {t.tail()}"
        init = None
    finally:
        if init:
            kill_tree(init)
        t.cleanup()


def busy_pids_refused(env):
    """restore without --pidns while the PIDs are taken: clear error, original unharmed"""
    t = Zdtm(env, "signals")
    try:
        t.start()
        img = t.imgdir()
        t.dump(img, "--leave-running")
        r = t.crd("restore", "-D", img)
        assert r.code not in (0, None) and r.code < 128, f"restore returned {r.code}"
        assert f"pid {t.pid} is in use" in r.out, f"unclear error: {r.out}"
        t.finish(t.pid)
    finally:
        t.cleanup()


def dump_missing_pid(env):
    """dump of a PID that does not exist: clear error"""
    pid = spawn(["/bin/true"])
    wait_for(pid, 10)
    r = run([env.crd, "dump", "-t", str(pid), "-D", env.tmpdir])
    assert r.code == 1, f"dump returned {r.code}"
    assert f"pid {pid}: no such process" in r.out, f"unclear error: {r.out}"
    assert not os.listdir(env.tmpdir), "files left in the image directory"


def dump_unsupported_fd(env):
    """a tree holding a netlink socket: dump fails naming it, the tree keeps running"""
    py = shutil.which("python3")
    work = os.path.join(env.tmpdir, "work")
    os.mkdir(work)
    pid = spawn([py, "-c", "import socket, time\n"
                 "s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)\n"
                 "open('ready', 'w').close()\n"
                 "n = 0\n"
                 "while True:\n"
                 "    n += 1; time.sleep(0.01)\n"], cwd=work)
    try:
        deadline = time.time() + 30
        while not os.path.exists(os.path.join(work, "ready")):
            assert time.time() < deadline and alive(pid), "helper did not start"
            time.sleep(0.01)
        before = maps_of(pid)
        img = os.path.join(env.tmpdir, "img")
        os.mkdir(img)
        r = run([env.crd, "dump", "-t", str(pid), "-D", img])
        assert r.code == 1, f"dump returned {r.code}: {r.out}"
        assert f"pid {pid} fd" in r.out and "unsupported file type socket:" in r.out, \
            f"unclear error: {r.out}"
        assert alive(pid) and proc_status(pid, "TracerPid") == "0", "tree not released"
        assert maps_of(pid) == before, "the failed dump left its mark in the address space"
        assert not os.listdir(img), f"failed dump left files: {os.listdir(img)}"
    finally:
        kill_tree(pid)


def shm_removed_while_frozen(env):
    """a System V segment removed between freeze and dump (--action-script does it): it is
    dumped as removed, comes back removed, still shared, with its contents"""
    t = Zdtm(env, "sysv_shm", {"TEST_SHM_REMOVED": "1"})
    try:
        t.start()
        key = 0x7a000000 | (t.pid & 0xffffff)
        with open("/proc/sysvipc/shm") as f:
            ids = [line.split()[1] for line in f.readlines()[1:] if int(line.split()[0]) == key]
        assert len(ids) == 1, f"segment with key {key:#x}: {ids}"
        script = os.path.join(env.tmpdir, "action.sh")
        with open(script, "w") as f:
            f.write(f"#!/bin/sh\n[ \"$CRD_ACTION\" = post-freeze ] || exit 0\n"
                    f"exec {shutil.which('ipcrm')} -m {ids[0]}\n")
        os.chmod(script, 0o755)
        img = t.imgdir()
        t.dump_kill(img, "--action-script", script)
        r = t.crd("restore", "-D", img, "--detach")
        assert r.code == 0, f"restore failed ({r.code}): {r.out}"
        t.finish(t.pid)
    finally:
        t.cleanup()


def tcp_peer_gone(env):
    """a TCP connection whose peer went away (CLOSE_WAIT): dump fails naming it, the tree
    keeps running"""
    import socket
    lsk = socket.socket()
    lsk.bind(("127.0.0.1", 0))
    lsk.listen(1)
    port = lsk.getsockname()[1]
    work = os.path.join(env.tmpdir, "work")
    os.mkdir(work)
    pid = spawn([shutil.which("python3"), "-c", "import socket, time\n"
                 f"s = socket.create_connection(('127.0.0.1', {port}))\n"
                 "open('ready', 'w').close()\n"
                 "while True:\n"
                 "    time.sleep(0.01)\n"], cwd=work)
    try:
        conn, _ = lsk.accept()
        deadline = time.time() + 30
        while not os.path.exists(os.path.join(work, "ready")):
            assert time.time() < deadline and alive(pid), "helper did not start"
            time.sleep(0.01)
        conn.close()	# the peer is gone: the tree's end is in CLOSE_WAIT
        lsk.close()
        time.sleep(0.1)
        img = os.path.join(env.tmpdir, "img")
        os.mkdir(img)
        r = run([env.crd, "dump", "-t", str(pid), "-D", img])
        assert r.code == 1, f"dump returned {r.code}: {r.out}"
        assert f"pid {pid} fd 3" in r.out and "TCP socket in state 8 (CLOSE_WAIT)" in r.out and "peer is gone" in r.out, \
            f"unclear error: {r.out}"
        assert alive(pid) and proc_status(pid, "TracerPid") == "0", "tree not released"
        assert not proc_status(pid, "State").startswith("t"), "the tree is still stopped"
        assert not os.listdir(img), f"failed dump left files: {os.listdir(img)}"
    finally:
        kill_tree(pid)


def scm_creds_in_flight(env):
    """credentials in flight in a UNIX socket (SO_PASSCRED): dump fails saying so, the tree
    runs on"""
    work = os.path.join(env.tmpdir, "work")
    os.mkdir(work)
    pid = spawn([shutil.which("python3"), "-c", "import os, socket, time\n"
                 "a, b = socket.socketpair()\n"
                 "b.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)\n"
                 "a.send(b'x')\n"
                 "open('ready', 'w').close()\n"
                 "while True:\n"
                 "    time.sleep(0.01)\n"], cwd=work)
    try:
        _wait_ready(work, pid)
        img = os.path.join(env.tmpdir, "img")
        os.mkdir(img)
        r = run([env.crd, "dump", "-t", str(pid), "-D", img])
        assert r.code == 1 and "credentials in flight" in r.out and f"pid {pid}" in r.out, \
            f"dump returned {r.code}: {r.out}"
        assert alive(pid) and proc_status(pid, "TracerPid") == "0", "tree not released"
        assert not os.listdir(img), f"failed dump left files: {os.listdir(img)}"
    finally:
        kill_tree(pid)


def dump_disk_full(env):
    """the image directory fills up mid-dump: clear error, tree unharmed, nothing left"""
    t = Zdtm(env, "mem_random", {"ZDTM_MEM_MB": "64"})
    img = t.imgdir()
    r = run(["/bin/mount", "-t", "tmpfs", "-o", "size=16m", "crd-test-full", img])
    assert r.code == 0, f"can't mount a small tmpfs: {r.out}"
    try:
        t.start()
        before = maps_of(t.pid)
        r = t.crd("dump", "-t", str(t.pid), "-D", img)
        assert r.code == 1, f"dump into a full disk returned {r.code}: {r.out}"
        assert "No space left on device" in r.out, f"unclear error: {r.out}"
        assert alive(t.pid) and proc_status(t.pid, "TracerPid") == "0", "tree not released"
        assert maps_of(t.pid) == before, "the failed dump left its mark"
        assert not os.listdir(img), f"partial images left: {os.listdir(img)}"
        t.finish(t.pid)
    finally:
        t.cleanup()
        run(["/bin/umount", img])


def dump_external_unix(env):
    """a UNIX socket connected to a process outside the tree: dump refuses, names it"""
    import socket
    py = shutil.which("python3")
    work = os.path.join(env.tmpdir, "work")
    os.mkdir(work)
    a, b = socket.socketpair()
    pid = spawn([py, "-c", "import time\n"
                 "open('ready', 'w').close()\n"
                 "while True:\n"
                 "    time.sleep(0.01)\n"], cwd=work, keep_fd=b.fileno())
    b.close()
    try:
        deadline = time.time() + 30
        while not os.path.exists(os.path.join(work, "ready")):
            assert time.time() < deadline and alive(pid), "helper did not start"
            time.sleep(0.01)
        img = os.path.join(env.tmpdir, "img")
        os.mkdir(img)
        r = run([env.crd, "dump", "-t", str(pid), "-D", img])
        assert r.code == 1, f"dump returned {r.code}: {r.out}"
        assert f"connected to socket {os.fstat(a.fileno()).st_ino} outside the dumped tree" \
            in r.out and "--external unix:" in r.out, f"unclear error: {r.out}"
        assert alive(pid) and proc_status(pid, "TracerPid") == "0", "tree not released"
        assert not os.listdir(img), f"failed dump left files: {os.listdir(img)}"
    finally:
        a.close()
        kill_tree(pid)


def _wait_ready(work, pid):
    deadline = time.time() + 30
    while not os.path.exists(os.path.join(work, "ready")):
        assert time.time() < deadline and alive(pid), "helper did not start"
        time.sleep(0.01)


def external_unix_pair(env):
    """--external unix:INODE: a socket whose peer is outside; restored, the tree reads what
    was queued for it, then sees its peer gone"""
    import socket
    work = os.path.join(env.tmpdir, "work")
    os.mkdir(work)
    a, b = socket.socketpair()
    ino = os.fstat(b.fileno()).st_ino
    pid = spawn([shutil.which("python3"), "-c", "import os, socket, time\n"
                 "s = socket.socket(fileno=3)\n"
                 "open('ready', 'w').close()\n"
                 "while not os.path.exists('go'):\n"
                 "    time.sleep(0.01)\n"
                 "got = b''\n"
                 "while True:\n"
                 "    d = s.recv(100)\n"
                 "    if not d: break\n"
                 "    got += d\n"
                 "open('got', 'wb').write(got)\n"], cwd=work, keep_fd=b.fileno())
    b.close()
    try:
        _wait_ready(work, pid)
        a.sendall(b"queued for the tree")
        img = os.path.join(env.tmpdir, "img")
        os.mkdir(img)
        r = run([env.crd, "dump", "-t", str(pid), "-D", img, "--external", f"unix:{ino}"])
        assert r.code == 0, f"dump returned {r.code}: {r.out}"
        assert wait_for(pid, 10) is not None, "the dump did not kill the tree"
        r = run([env.crd, "restore", "-D", img, "--detach"])
        assert r.code == 0, f"restore failed ({r.code}): {r.out}"
        open(os.path.join(work, "go"), "w").close()
        st = wait_for(pid, 30)
        assert exit_code(st) == 0, f"restored tree failed ({exit_code(st)})"
        with open(os.path.join(work, "got"), "rb") as f:
            assert f.read() == b"queued for the tree", "queued data lost"
    finally:
        a.close()
        kill_tree(pid)


def external_unix_reconnect(env):
    """--external unix:PATH: a client of a server outside the tree is connected to the
    server again on restore and goes on talking"""
    import socket
    work = os.path.join(env.tmpdir, "work")
    os.mkdir(work)
    path = os.path.join(work, "server.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(4)
    srv.settimeout(30)
    pid = spawn([shutil.which("python3"), "-c", "import os, socket, time\n"
                 "s = socket.socket(socket.AF_UNIX)\n"
                 f"s.connect({path!r})\n"
                 "s.sendall(b'before;')\n"
                 "open('ready', 'w').close()\n"
                 "while not os.path.exists('go'):\n"
                 "    time.sleep(0.01)\n"
                 "s.sendall(b'after;')\n"
                 "s.close()\n"], cwd=work)
    conns = []
    try:
        conns.append(srv.accept()[0])
        _wait_ready(work, pid)
        assert conns[0].recv(100) == b"before;", "no data before the dump"
        img = os.path.join(env.tmpdir, "img")
        os.mkdir(img)
        r = run([env.crd, "dump", "-t", str(pid), "-D", img])
        assert r.code == 1 and f"--external unix:" in r.out and path in r.out, \
            f"dump without --external: {r.code}: {r.out}"
        assert alive(pid), "the refused dump killed the tree"
        r = run([env.crd, "dump", "-t", str(pid), "-D", img, "--external", f"unix:{path}"])
        assert r.code == 0, f"dump returned {r.code}: {r.out}"
        assert wait_for(pid, 10) is not None, "the dump did not kill the tree"
        r = run([env.crd, "restore", "-D", img, "--detach"])
        assert r.code == 0, f"restore failed ({r.code}): {r.out}"
        conns.append(srv.accept()[0])
        open(os.path.join(work, "go"), "w").close()
        conns[1].settimeout(30)
        assert conns[1].recv(100) == b"after;", "the restored tree does not talk to the server"
        st = wait_for(pid, 30)
        assert exit_code(st) == 0, f"restored tree failed ({exit_code(st)})"
    finally:
        for c in conns:
            c.close()
        srv.close()
        kill_tree(pid)


def corrupt_images(env):
    """every image file truncated, bit-flipped or missing: clear error, nothing created"""
    t = Zdtm(env, "pipe_data")
    try:
        t.start()
        img = t.imgdir()
        t.dump_kill(img)
        pids = [int(f[5:-4]) for f in os.listdir(img) if f.startswith("task-")]
        files = sorted(os.listdir(img))
        n = 0
        for name in files:
            size = os.path.getsize(os.path.join(img, name))
            variants = [("missing", None), ("empty", 0), ("header cut", 10),
                        ("half", size // 2), ("last byte cut", size - 1),
                        ("flip header", ("flip", 5)), ("flip middle", ("flip", size // 2)),
                        ("flip end", ("flip", size - 1)), ("appended", ("append", 0))]
            for what, how in variants:
                bad = os.path.join(env.tmpdir, f"bad{n}")
                n += 1
                shutil.copytree(img, bad)
                path = os.path.join(bad, name)
                if how is None:
                    os.unlink(path)
                elif isinstance(how, int):
                    os.truncate(path, how)
                else:
                    with open(path, "r+b") as f:
                        if how[0] == "flip":
                            f.seek(how[1])
                            b = f.read(1)
                            f.seek(how[1])
                            f.write(bytes([b[0] ^ 0x10]))
                        else:
                            f.seek(0, 2)
                            f.write(b"junk")
                r = run([env.crd, "restore", "-D", bad])
                assert r.code == 1, f"{name} {what}: restore returned {r.code}: {r.out}"
                assert name in r.out, f"{name} {what}: error does not name the file: {r.out}"
                for p in pids:
                    assert not alive(p), f"{name} {what}: process {p} was created"
                shutil.rmtree(bad)
        # and the intact images still restore
        r = t.crd("restore", "-D", img, "--detach")
        assert r.code == 0, f"restore of the intact images failed: {r.out}"
        t.finish(t.pid)
    finally:
        t.cleanup()


ZDTM_PROGS = ["mem_random", "mem_sparse", "file_maps", "threads_regs", "fork_tree", "files",
              "pipe_data", "signals", "timers", "rlimits_umask_cwd", "sleep_read", "shm", "unix_pairs", "fd_kinds", "zombie", "stopped", "scratch", "tcp_pair", "pty", "task_state", "sysv_shm", "sysv_ipc", "inotify_watch", "unix_dgram", "unix_scm", "blocked_calls"]


def zdtm_cases():
    cases = []
    for p in ZDTM_PROGS:
        cases.append((f"zdtm/{p}/plain", lambda env, p=p: zdtm_plain(env, p)))
        cases.append((f"zdtm/{p}/corrupt-detected", lambda env, p=p: zdtm_corrupt_detected(env, p)))
        cases.append((f"zdtm/{p}/dump-restore", lambda env, p=p: zdtm_kill_detach(env, p)))
        cases.append((f"zdtm/{p}/leave-running-redump",
                      lambda env, p=p: zdtm_leave_redump(env, p)))
    for p in ["unix_pairs", "fd_kinds", "tcp_pair"]:
        cases.append((f"zdtm/{p}/20-checkpoints", lambda env, p=p: zdtm_many_checkpoints(env, p)))
    for p in ["files", "fork_tree", "signals"]:
        cases.append((f"zdtm/{p}/restore-as-parent", lambda env, p=p: zdtm_kill_wait(env, p)))
    for p in ["signals", "fork_tree", "threads_regs", "shm"]:
        cases.append((f"zdtm/{p}/as-nobody", lambda env, p=p: zdtm_kill_detach(env, p, 65534)))
    for p in ["fork_tree", "threads_regs"]:
        cases.append((f"zdtm/{p}/cgroup-freezer", lambda env, p=p: zdtm_cgroup_freezer(env, p)))
    cases += [("restore/pidns-while-running", pidns_while_running),
              ("restore/remap-ip", remap_ip),
              ("restore/other-netns", restore_in_other_netns),
              ("restore/shell-job", shell_job),
              ("restore/scratch-on-another-node", scratch_on_another_node),
              ("restore/sysv-ipc-on-another-node", sysv_ipc_on_another_node),
              ("restore/busy-pids-refused", busy_pids_refused),
              ("restore/corrupt-images", corrupt_images),
              ("dump/missing-pid", dump_missing_pid),
              ("dump/disk-full", dump_disk_full),
              ("dump/shm-removed-while-frozen", shm_removed_while_frozen),
              ("dump/tcp-peer-gone", tcp_peer_gone),
              ("dump/scm-credentials-in-flight", scm_creds_in_flight),
              ("dump/external-unix-socket", dump_external_unix),
              ("restore/external-unix-pair", external_unix_pair),
              ("restore/external-unix-reconnect", external_unix_reconnect),
              ("dump/unsupported-fd", dump_unsupported_fd)]
    return cases


def net_locks():
    """crd's network lock tables in our network namespace"""
    nft = shutil.which("nft") or "/usr/sbin/nft"
    r = run([nft, "list", "tables"])
    return {line.split()[-1] for line in r.out.splitlines() if "crd_lock_" in line}


def module_cases(srcdir):
    cases = []
    for path in sorted(glob.glob(os.path.join(srcdir, "tests", "cases_*.py"))):
        name = os.path.basename(path)[:-3]
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        cases += [(f"{name[6:]}/{n}", fn) for n, fn in getattr(mod, "CASES", [])]
    return cases


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--builddir", default=os.getcwd())
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("filters", nargs="*", help="run only cases whose name contains one of these")
    args = ap.parse_args()

    if os.geteuid() != 0:
        print("the crd tests need root")
        print("0 passed, 1 failed")
        return 1
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    srcdir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = Env()
    env.builddir = os.path.abspath(args.builddir)
    env.srcdir = srcdir
    env.crd = os.path.join(env.builddir, "crd", "crd")
    env.zdtm = os.path.join(env.builddir, "tests", "zdtm")
    cases = zdtm_cases() + module_cases(srcdir)
    if args.filters:
        cases = [c for c in cases if any(f in c[0] for f in args.filters)]
    passed = failed = skipped = 0
    top = tempfile.mkdtemp(prefix="crd-tests-")
    for i, (name, fn) in enumerate(cases):
        env.tmpdir = os.path.join(top, f"case{i}")
        os.mkdir(env.tmpdir)
        t0 = time.time()
        locks = net_locks()
        try:
            fn(env)
            left = net_locks() - locks
            assert not left, f"network locks left behind: {sorted(left)}"
            passed += 1
            print(f"PASS {name} ({time.time() - t0:.1f}s)", flush=True)
        except unittest.SkipTest as e:
            skipped += 1
            print(f"SKIP {name}: {e}", flush=True)
        except Exception as e:
            failed += 1
            msg = str(e) or type(e).__name__
            print(f"FAIL {name}: {msg}", flush=True)
            if args.verbose:
                traceback.print_exc()
        shutil.rmtree(env.tmpdir, ignore_errors=True)
        reap_some()
    shutil.rmtree(top, ignore_errors=True)
    print(f"{passed} passed, {failed} failed, {skipped} skipped", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
