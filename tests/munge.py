"""A private munged for tests: its own key, socket and directory.

    m = Munged(); m.start()
    ... m.socket (pass as --munge-socket or $CRJOB_MUNGE_SOCKET) ...
    m.stop()

munged runs as the user munge and refuses directories it does not own, so
everything lives in a temporary directory owned by munge.  Two instances with
different keys (Munged(), Munged()) do not accept each other's credentials.
stop() kills munged by its PID and removes the directory.  Usable on its own
or under tests/run-tests.py (whose reaper may collect munged's status first).

As a command: `python3 tests/munge.py [-n N] CMD [ARG...]` runs CMD with N
private munged (default 1, each its own key): $CRJOB_MUNGE_SOCKET is the
first one's socket and "{0}", "{1}", ... in the arguments become their
sockets; exits with CMD's status, e.g.
    python3 tests/munge.py -n 2 tests/rpc/rpc_test {0} {1}
"""
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time


class Munged:
    def __init__(self, key=None):
        """key: bytes of the key (another Munged's .key to share it), or random"""
        self.key = key if key is not None else os.urandom(1024)
        self.dir = None
        self.pid = None
        self.socket = None

    def _path(self, name):
        return os.path.join(self.dir, name)

    def start(self, timeout=10):
        pw = pwd.getpwnam("munge")
        self.dir = tempfile.mkdtemp(prefix="crjob-munge-")
        try:
            os.chmod(self.dir, 0o755)	# clients reach the socket through it
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            keydir = self._path("etc")
            os.mkdir(keydir, 0o700)
            os.chown(keydir, pw.pw_uid, pw.pw_gid)
            key = os.path.join(keydir, "munge.key")
            with open(key, "wb") as f:
                f.write(self.key)
            os.chmod(key, 0o400)
            os.chown(key, pw.pw_uid, pw.pw_gid)
            self.socket = self._path("munge.socket")
            pidfile = self._path("munged.pid")
            # munged daemonizes once its socket is up: its exit means ready
            r = subprocess.run(
                [shutil.which("setpriv"), "--reuid=munge", "--regid=munge", "--init-groups",
                 shutil.which("munged"), "--key-file", key, "--socket", self.socket,
                 "--pid-file", pidfile, "--log-file", self._path("munged.log"),
                 "--seed-file", self._path("munged.seed"), "--num-threads", "2"],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                timeout=timeout)
            if r.returncode != 0:
                raise RuntimeError(f"munged failed ({r.returncode}): {r.stdout.decode()} "
                                   f"{self.log()}")
            deadline = time.time() + timeout
            while not (os.path.exists(pidfile) and os.path.exists(self.socket)):
                if time.time() > deadline:
                    raise RuntimeError(f"munged did not start: {self.log()}")
                time.sleep(0.01)
            with open(pidfile) as f:
                self.pid = int(f.read().split()[0])
        except BaseException:
            self.stop()
            raise
        return self

    def log(self):
        try:
            with open(self._path("munged.log"), errors="replace") as f:
                return f.read()[-2000:]
        except (OSError, TypeError):
            return ""

    def stop(self):
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGTERM)
                deadline = time.time() + 5
                while os.path.exists(f"/proc/{self.pid}") and time.time() < deadline:
                    with open(f"/proc/{self.pid}/stat") as f:
                        if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                            break
                    time.sleep(0.01)
                if os.path.exists(f"/proc/{self.pid}"):
                    os.kill(self.pid, signal.SIGKILL)
            except (ProcessLookupError, FileNotFoundError):
                pass
            self.pid = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv):
    n = 1
    if argv[:1] == ["-n"]:
        n, argv = int(argv[1]), argv[2:]
    if not argv:
        print("usage: munge.py [-n N] CMD [ARG...]", file=sys.stderr)
        return 2
    ms = []
    try:
        for _ in range(n):
            ms.append(Munged().start())
        socks = [m.socket for m in ms]
        env = dict(os.environ, CRJOB_MUNGE_SOCKET=socks[0])
        return subprocess.call([a.format(*socks) for a in argv], env=env)
    finally:
        for m in ms:
            m.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
