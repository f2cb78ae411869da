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


def store_cli(env):
    """the command line over what store_test left: ls, show, verify, gc --keep, rm"""
    _store_test(env, "4")
    exe = os.path.join(env.builddir, "tests", "store", "store_test")
    store = os.path.join(env.tmpdir, "store")

    def cli(*args):
        return _runner.run([exe, "--cli"] + list(args) + ["-S", store])

    r = cli("ls")
    assert r.code == 0 and "RATIO" in r.out, f"ls: {r.code}: {r.out}"
    rows = [l.split() for l in r.out.splitlines()[1:]]
    gens = [int(l[1]) for l in rows if l[0] == "jobA"]
    assert gens == [1, 2, 3], f"jobA generations listed: {gens}: {r.out}"
    r = cli("show", "jobA", "2")
    assert r.code == 0 and "dedup ratio" in r.out and "gen-1/n0.pack" in r.out, r.out
    r = cli("verify", "jobC", "1")
    assert r.code == 1 and "jobC gen 1: page" in r.out and "n0.pack at offset" in r.out, \
        f"verify of a damaged generation: {r.code}: {r.out}"
    r = cli("gc", "--keep", "1", "jobA")
    assert r.code == 0 and "2 generations" in r.out, f"gc: {r.code}: {r.out}"
    r = cli("verify", "jobA")
    assert r.code == 0 and "job jobA generation 3: ok" in r.out, f"verify: {r.code}: {r.out}"
    r = cli("rm", "jobA")
    assert r.code == 0 and not os.path.exists(os.path.join(store, "jobs", "jobA")), r.out
    r = cli("frob")
    assert r.code == 2 and "usage" in r.out, f"bad subcommand: {r.code}: {r.out}"


CASES = [("store-test", store_checks),
         ("store-cli", store_cli)]
