"""What the node agent builds on: action-script hooks of dump and restore, and
restore --owner (an image edited by its owner cannot raise privileges)."""
import ctypes
import os
import stat
import struct
import sys

_runner = sys.modules["__main__"]

# a hook that notes where it ran and in which state the tree's root was
HOOK = """#!/bin/sh
state=$(sed -n 's/^State:\\t//p' /proc/$CRD_PID/status)
echo "$1 $CRD_PID $state" >> {log}
{extra}
"""


def _hook(env, extra=""):
    log = os.path.join(env.tmpdir, "hook.log")
    path = os.path.join(env.tmpdir, "hook.sh")
    with open(path, "w") as f:
        f.write(HOOK.format(log=log, extra=extra))
    os.chmod(path, 0o755)
    return path, log


def _lines(log):
    try:
        with open(log) as f:
            return [l.split(None, 2) for l in f.read().splitlines()]
    except FileNotFoundError:
        return []


def restore_pre_resume_hook(env):
    """restore runs the hook while the tree is back but still stopped"""
    hook, log = _hook(env)
    t = _runner.Zdtm(env, "fork_tree")
    try:
        t.start()
        img = t.imgdir()
        t.dump_kill(img)
        r = t.crd("restore", "-D", img, "--detach", "--action-script", hook)
        assert r.code == 0, f"restore failed: {r.out}"
        got = _lines(log)
        assert len(got) == 1 and got[0][0] == "pre-resume" and int(got[0][1]) == t.pid, got
        assert got[0][2].startswith("t"), f"the tree ran before the hook returned: {got}"
        t.finish(t.pid)
    finally:
        t.cleanup()


def restore_hook_refuses(env):
    """a failing pre-resume hook kills the restored tree: nothing runs"""
    hook, log = _hook(env, "exit 1")
    t = _runner.Zdtm(env, "fork_tree")
    try:
        t.start()
        img = t.imgdir()
        t.dump_kill(img)
        r = t.crd("restore", "-D", img, "--detach", "--action-script", hook)
        assert r.code != 0 and "pre-resume" in r.out, f"restore did not fail: {r.out}"
        _runner.reap_some()
        assert not os.path.exists(f"/proc/{t.pid}/stat") or \
            _runner.proc_status(t.pid, "State").startswith("Z"), "the tree runs"
        # and the images still restore without the hook
        r = t.crd("restore", "-D", img, "--detach")
        assert r.code == 0, f"second restore failed: {r.out}"
        t.finish(t.pid)
    finally:
        t.cleanup()


def dump_no_commit_durable_at_post_dump(env):
    """--no-commit: the writer is complete (.done) when post-dump runs"""
    store = os.path.join(env.tmpdir, "store")
    hook, log = _hook(env, 'ls "$STORE"/jobs/j1/gen-1.partial >> ' +
                      os.path.join(env.tmpdir, "ls.log"))
    t = _runner.Zdtm(env, "mem_random", extra_env={})
    try:
        t.start()
        os.environ["STORE"] = store
        r = t.crd("dump", "-t", str(t.pid), "--store", store, "--job", "j1",
                  "--writer", "n0", "--no-commit", "--leave-running", "--action-script", hook)
        assert r.code == 0, f"dump failed: {r.out}"
        with open(os.path.join(env.tmpdir, "ls.log")) as f:
            listed = f.read().split()
        assert "n0.done" in listed, f"post-dump ran before the writer finished: {listed}"
        assert [l[0] for l in _lines(log)] == ["post-freeze", "post-dump"], _lines(log)
        r = t.crd("store", "commit", "j1", "1", "--writer", "n0", "--store", store)
        assert r.code == 0, f"commit failed: {r.out}"
        t.finish(t.pid)
    finally:
        os.environ.pop("STORE", None)
        t.cleanup()


def _rewrite(path, old, new):
    """replace old by new (same length) in an image and fix its header's hash"""
    xxh = ctypes.CDLL("libxxhash.so.0")
    xxh.XXH3_64bits.restype = ctypes.c_uint64
    xxh.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    with open(path, "rb") as f:
        data = f.read()
    assert len(old) == len(new) and old in data, f"{old!r} is not in {path}"
    off = struct.unpack_from("<I", data, 8)[0]
    payload = data[off:].replace(old, new)
    hdr = bytearray(data[:off])
    struct.pack_into("<Q", hdr, 24, xxh.XXH3_64bits(payload, len(payload)))
    with open(path, "wb") as f:
        f.write(bytes(hdr) + payload)


def _dump_as_root(env):
    t = _runner.Zdtm(env, "signals")
    t.start()
    img = t.imgdir()
    t.dump_kill(img)
    return t, img


def owner_refuses_other_creds(env):
    """restore --owner U of a tree whose credentials are root's is refused"""
    t, img = _dump_as_root(env)
    try:
        r = t.crd("restore", "-D", img, "--detach", "--owner", "65534")
        assert r.code != 0 and "not the owner's 65534" in r.out, f"not refused: {r.out}"
        _runner.reap_some()
        assert not _runner.alive(t.pid), "a process was created"
        r = t.crd("restore", "-D", img, "--detach", "--owner", "0")
        assert r.code == 0, f"restore as its owner failed: {r.out}"
        t.finish(t.pid)
    finally:
        t.cleanup()


def owner_refuses_unreachable_file(env):
    """an image edited to open a file its owner can't read is refused"""
    t = _runner.Zdtm(env, "files", user=65534)
    try:
        t.start()
        img = t.imgdir()
        t.dump_kill(img)
        r = t.crd("restore", "-D", img, "--detach", "--owner", "65534")
        assert r.code == 0, f"restore by its owner failed: {r.out}"
        t.finish(t.pid)
        t.start()
        t.dump_kill(img)
        # the owner edits a path in the image (same length) and fixes its checksum
        fake = os.path.join(t.work, "secr.txt")
        with open(fake, "w") as f:
            f.write("root only\n")
        os.chmod(fake, stat.S_IRUSR | stat.S_IWUSR)
        _rewrite(os.path.join(img, "inventory.img"),
                 os.path.join(t.work, "data.txt").encode(), fake.encode())
        r = t.crd("restore", "-D", img, "--detach", "--owner", "65534")
        assert r.code != 0, f"restore was not refused: {r.out}"
        assert "may not use it" in r.out and "secr.txt" in r.out, r.out
        _runner.reap_some()
        assert not _runner.alive(t.pid), "a process was created"
    finally:
        t.cleanup()


def owner_captured_root_group(env):
    """a captured file of the owner's in root's group (slurmd writes a user's batch script
    as UID:0) is restored by --owner in the owner's group, without group permissions"""
    t = _runner.Zdtm(env, "scratch", user=65534)
    shm = None
    try:
        t.start()
        shm = f"/dev/shm/crd-zdtm-scratch-{t.pid}"
        dat = os.path.join(t.work, "scratch.dat")
        os.chown(dat, 65534, 0)
        os.chmod(dat, 0o640)
        img = t.imgdir()
        t.dump_kill(img, "--capture-path", t.work)
        os.unlink(shm)
        os.unlink(dat)
        r = t.crd("restore", "-D", img, "--detach", "--owner", "65534")
        assert r.code == 0, f"restore by its owner failed: {r.out}"
        st = os.stat(dat)
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (65534, 65534, 0o600), \
            f"scratch.dat restored as {st.st_uid}:{st.st_gid} mode {st.st_mode & 0o777:o}"
        t.finish(t.pid)
    finally:
        t.cleanup()
        if shm and os.path.exists(shm):
            os.unlink(shm)


CASES = [("restore-pre-resume", restore_pre_resume_hook),
         ("restore-hook-fails", restore_hook_refuses),
         ("dump-no-commit-durable", dump_no_commit_durable_at_post_dump),
         ("owner-other-creds-refused", owner_refuses_other_creds),
         ("owner-unreachable-file-refused", owner_refuses_unreachable_file),
         ("owner-captured-root-group", owner_captured_root_group)]
