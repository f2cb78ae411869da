"""The image store (store/): tests/store/store_test, one line per check."""
import os
import sys

_runner = sys.modules["__main__"]


def _store_test(env, *args):
    exe = os.path.join(env.builddir, "tests", "store", "store_test")
    scratch = os.path.join(env.tmpdir, "store")
    os.mkdir(scratch)
    r = _runner.run([exe, scratch] + list(args), timeout=300)
    failed = [l for l in r.out.splitlines() if l.startswith("FAIL ")]
    assert r.code == 0 and not failed, \
        f"store_test returned {r.code}: {'; '.join(failed) or r.out[-2000:]}"
    return r.out


def store_checks(env):
    """dedup, two writers, compression, partials, gc --keep, corruption, ENOSPC, CLI"""
    out = _store_test(env, "64")
    for check in ("dedup-across-generations", "two-writers-concurrently", "enospc-error",
                  "verify-finds-corrupt-page", "truncated-manifest-not-listed", "gc-keep-2"):
        assert f"PASS {check}:" in out, f"{check} did not run: {out[-2000:]}"


CASES = [("store-test", store_checks)]
