"""rpc/: tests/rpc/rpc_test against two private munged (two keys), one line per check."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import munge  # noqa: E402

_runner = sys.modules["__main__"]

CHECKS = ("parse-hostport", "op-name", "round-trip", "async-client",
          "other-key-rejected", "serves-after-other-key",
          "hello-replay-rejected", "serves-after-replay",
          "garbage-hello-rejected", "serves-after-garbage-hello", "welcome-to-server-rejected",
          "data-before-hello-rejected", "serves-after-data-before-hello",
          "raw-ping", "garbage-msg-rejected", "serves-after-garbage",
          "tampered-rejected", "serves-after-tampered",
          "data-replay-rejected", "serves-after-data-replay",
          "oversize-rejected", "serves-after-oversize", "server-close", "serves-after-close",
          "refused")


def rpc_checks(env):
    """round trips, events, async client; in the handshake a HELLO of another munge key, a
    replayed HELLO, a credential that is no HELLO, a WELCOME or DATA first; in a session a
    frame that is no Msg, an altered frame, a replayed frame; an oversized frame: each
    rejected, logged with its reason, and the server serves on"""
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
        for why in ("bad credential", "not a HELLO", "before the handshake ended",
                    "not a Msg", "Replayed", "forged, altered or replayed", "bytes (at most"):
            assert why in r.out, f"no '{why}' logged: {r.out[-2000:]}"
    finally:
        good.stop()
        other.stop()


CASES = [("rpc-test", rpc_checks)]
