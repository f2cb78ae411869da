"""Test "hosts" on this machine: network namespaces on a private bridge.

Every host is a namespace with one veth into a bridge that the test owns, on
the private subnet 10.250.X.0/24 (X from the test's pid).  Everything made is
removed by name of what we created, never by pattern: the bridge, the veths
(they die with their namespaces) and the namespaces.
"""
import os
import shutil
import subprocess


def _ip(*args):
    r = subprocess.run([shutil.which("ip") or "/usr/sbin/ip"] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode:
        raise AssertionError(f"ip {' '.join(args)}: {r.stdout.strip()}")


_made = [0]


class Hosts:
    def __init__(self, n, tag=None):
        # unique per instance: a namespace just deleted may keep its veth a while
        # (until the last process in it is gone), so names are not reused at once
        _made[0] += 1
        self.tag = tag or f"{os.getpid() % 100000}{chr(ord('a') + _made[0] % 26)}"
        self.subnet = f"10.250.{os.getpid() % 250}"
        self.bridge = f"crdbr{self.tag}"
        self.names = []
        self.addrs = []
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("link", "set", self.bridge, "up")
            for i in range(n):
                self.add()
        except Exception:
            self.destroy()
            raise

    def add(self):
        """one more host; returns its index"""
        i = len(self.names)
        ns = f"crdh{self.tag}-{i}"
        veth, peer = f"crdv{self.tag}-{i}", f"crdp{self.tag}-{i}"
        _ip("netns", "add", ns)
        self.names.append(ns)
        self.addrs.append(f"{self.subnet}.{i + 1}")
        _ip("link", "add", veth, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", ns)
        _ip("link", "set", veth, "master", self.bridge, "up")
        _ip("-n", ns, "link", "set", peer, "name", "eth0")
        _ip("-n", ns, "addr", "add", f"{self.addrs[i]}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        return i

    def path(self, i):
        return f"/run/netns/{self.names[i]}"

    def argv(self, i, argv):
        """argv run inside host i's network namespace (and nothing else changed)"""
        return [shutil.which("nsenter"), f"--net={self.path(i)}"] + list(argv)

    def destroy(self):
        for ns in self.names:
            subprocess.run([shutil.which("ip"), "netns", "del", ns],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run([shutil.which("ip"), "link", "del", self.bridge],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.names = []
