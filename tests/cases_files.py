"""Output files across a restart from an older checkpoint: a job restarted
from a checkpoint finds the output it wrote after it and writes on from where
it was; a file cut below what the image needs is refused."""
import os
import sys
import time

_runner = sys.modules["__main__"]

WRITER = "i=0; while :; do echo $i; i=$((i+1)); sleep 0.02; done"


def _start(env, out):
    """a shell writing 0, 1, 2, ... to out (opened without O_APPEND)"""
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.set_inheritable(fd, True)	# spawn's dup2 to 3 is a no-op if it is 3 already
    try:
        return _runner.spawn(["/bin/sh", "-c", "exec 1>&3 3>&-; " + WRITER], cwd=env.tmpdir,
                             keep_fd=fd)
    finally:
        os.close(fd)


def _lines(out):
    with open(out) as f:
        return f.read().split("\n")


def _wait_lines(out, n):
    deadline = time.time() + 30
    while len(_lines(out)) < n:
        assert time.time() < deadline, "the writer does not write"
        time.sleep(0.02)


def _dump_and_go_on(env, out):
    """dump (tree runs on) once it wrote 20 lines, let it write 40 more, kill it"""
    img = os.path.join(env.tmpdir, "img")
    os.mkdir(img)
    pid = _start(env, out)
    try:
        _wait_lines(out, 20)
        r = _runner.run([env.crd, "dump", "-t", str(pid), "-D", img, "--leave-running"])
        assert r.code == 0, f"dump failed: {r.out}"
        at = os.path.getsize(out)
        _wait_lines(out, 60)
    finally:
        _runner.kill_tree(pid)
        _runner.wait_for(pid, 10)
    return pid, img, at


def output_grew_since_dump(env):
    """restart from an older image: the output file grew since; restore goes on
    from the offset of the dump, and the file stays one unbroken sequence"""
    out = os.path.join(env.tmpdir, "out.txt")
    pid, img, at = _dump_and_go_on(env, out)
    try:
        r = _runner.run([env.crd, "restore", "-D", img, "--detach"])
        assert r.code == 0, f"restore refused a file that grew: {r.out}"
        assert "grew from" in r.out, r.out
        _wait_lines(out, 100)
        lines = _lines(out)
        whole = [int(x) for x in lines[:-1]]
        assert whole == list(range(len(whole))), \
            f"the restored writer did not go on from its offset {at}: {lines[:80]}"
    finally:
        _runner.kill_tree(pid)


def output_cut_since_dump(env):
    """the output file was cut below the dump's offset: restore refuses, nothing runs"""
    out = os.path.join(env.tmpdir, "out.txt")
    pid, img, at = _dump_and_go_on(env, out)
    os.truncate(out, at // 2)
    r = _runner.run([env.crd, "restore", "-D", img, "--detach"])
    assert r.code != 0 and "was cut since" in r.out, f"not refused: {r.out}"
    _runner.reap_some()
    assert not _runner.alive(pid), "a process was created"


CASES = [("output-grew-since-dump", output_grew_since_dump),
         ("output-cut-since-dump", output_cut_since_dump)]
