"""rpc/: tests/rpc/rpc_test against two private munged (two keys), one line per check."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import munge  # noqa: E402

_runner = sys.modules["__main__"]

CHECKS = ("parse-hostport", "seal-unseal", "unseal-replay", "op-name", "round-trip",
          "async-client", "other-key-rejected", "serves-after-other-key", "garbage-msg-rejected",
          "serves-after-garbage", "replay-rejected", "serves-after-replay", "oversize-rejected",
          "serves-after-oversize", "server-close", "serves-after-close", "refused")


def rpc_checks(env):
    """round trips, events, async client; other key, garbage Msg, replay, oversize rejected,
    each logged with its reason, and the server serves on"""
    good, other = munge.Munged(), munge.Munged()
    try:
        good.start()
        other.start()
        exe = os.path.join(env.builddir, "tests", "rpc", "rpc_test")
        r = _runner.run([exe, good.socket, other.socket], timeout=120)
        failed = [l for l in r.out.splitlines() if l.startswith("FAIL ")]
        assert r.code == 0 and not failed, \
            f"rpc_test returned {r.code}: {'; '.join(failed) or r.out[-2000:]}"
        for check in CHECKS:
            assert f"PASS {check}:" in r.out, f"{check} did not run: {r.out[-2000:]}"
        # the server said why it closed each bad connection
        for why in ("bad credential", "not a Msg", "Replayed", "bytes (at most"):
            assert why in r.out, f"no '{why}' logged: {r.out[-2000:]}"
    finally:
        good.stop()
        other.stop()


CASES = [("rpc-test", rpc_checks)]
