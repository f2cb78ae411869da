#!/usr/bin/env python3
"""The local demo: checkpoint a running program, kill it, restore it, verify.

(The multi-node MPI demo under Slurm comes with the node agents.)
"""
import ctypes
import os
import shutil
import signal
import sys
import tempfile
import time

top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
crd = os.path.join(top, "crd", "crd")
counter = os.path.join(top, "demo", "counter")
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # child subreaper: we reap what we start


def run(*argv):
    pid = os.fork()
    if pid == 0:
        os.execv(argv[0], list(argv))
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def last(log, n=3):
    with open(log) as f:
        return [l.split() for l in f.read().split("\n") if l][-n:]


work = tempfile.mkdtemp(prefix="crjob-demo-")
log, img = os.path.join(work, "counter.log"), os.path.join(work, "images")
os.mkdir(img)
pid = os.fork()
if pid == 0:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(os.open("/dev/null", os.O_RDONLY), 0)
    os.closerange(2, 1024)
    os.execv(counter, [counter])
print(f"== started the counter, pid {pid}, logging to {log}")
time.sleep(1.5)
before = last(log)
print("   it counts:", " | ".join(" ".join(l) for l in before))
print(f"== crd dump -t {pid} -D {img}")
if run(crd, "dump", "-t", str(pid), "-D", img):
    sys.exit("demo: dump failed")
os.waitpid(pid, 0)
stopped_at = int(last(log, 1)[0][0])
print(f"   images: {sorted(os.listdir(img))}; the process is gone: "
      f"{not os.path.exists(f'/proc/{pid}')}; it had counted to {stopped_at}")
time.sleep(1)
print(f"== crd restore -D {img} --detach")
if run(crd, "restore", "-D", img, "--detach"):
    sys.exit("demo: restore failed")
time.sleep(1.5)
after = last(log)
print(f"   pid {pid} is back: " + " | ".join(" ".join(l) for l in after))
counts = [int(l.split()[0]) for l in open(log) if l.strip()]
os.kill(pid, signal.SIGKILL)
os.waitpid(pid, 0)
ok = counts == list(range(1, len(counts) + 1)) and counts[-1] > stopped_at
print("== verify: the count went on from %d without a gap or a restart: %s"
      % (stopped_at, "yes" if ok else "NO"))
if os.environ.get("KEEP"):
    print(f"   images and log kept in {work}")
else:
    shutil.rmtree(work)
sys.exit(0 if ok else 1)
