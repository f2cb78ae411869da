"""crd check and crd show."""
import json
import os
import shutil
import signal
import time


import sys

_runner = sys.modules["__main__"]


def check_all_ok(env):
    """crd check passes every probe on this machine"""
    r = _runner.run([env.crd, "check"])
    lines = [l for l in r.out.splitlines() if l.strip()]
    assert r.code == 0, f"crd check failed: {r.out}"
    assert len(lines) >= 15 and all(l.startswith("ok ") for l in lines), r.out


def show_decodes_dump(env):
    """crd show turns a real dump into JSON that matches the process"""
    t = _runner.Zdtm(env, "fork_tree")
    try:
        t.start()
        img = t.imgdir()
        t.dump(img, "--leave-running")
        r = _runner.run([env.crd, "show", img])
        assert r.code == 0, f"crd show failed: {r.out}"
        doc = json.loads(r.out)
        by_name = {i["file"]: i for i in doc["images"]}
        inv = by_name["inventory.img"]["entries"][0]
        assert inv["root_pid"] == t.pid and len(inv["tasks"]) == 4, inv
        task = by_name[f"task-{t.pid}.img"]["entries"][0]
        regs = task["threads"][0]["regs"]
        vmas = task["vmas"]
        ex = [v for v in vmas if v["start"] <= regs["rip"] < v["end"]]
        assert ex and ex[0]["prot"] & 4, "rip is not in an executable mapping"
        assert any(v["start"] <= regs["rsp"] < v["end"] for v in vmas), "rsp is not mapped"
        assert by_name[f"pages-{t.pid}.img"]["type"] == "pages"
        # one file decodes alone too
        r = _runner.run([env.crd, "show", os.path.join(img, f"task-{t.pid}.img")])
        assert r.code == 0 and json.loads(r.out)["type"] == "task", r.out
        # and a damaged one is refused with its name
        bad = os.path.join(env.tmpdir, "bad.img")
        shutil.copy(os.path.join(img, "inventory.img"), bad)
        with open(bad, "r+b") as f:
            f.seek(40)
            b = f.read(1)
            f.seek(40)
            f.write(bytes([b[0] ^ 1]))
        r = _runner.run([env.crd, "show", bad])
        assert r.code == 1 and "bad.img: checksum mismatch" in r.out, r.out
        t.finish(t.pid)
    finally:
        t.cleanup()


CASES = [
    ("check-all-ok", check_all_ok),
    ("show-decodes-dump", show_decodes_dump),
]
