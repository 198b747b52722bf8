"""The listener guard: nothing a test starts may listen where another machine could reach it.

A background thread samples this network namespace's listeners with their processes (``ss -H -ltnup``) twice a
second, and each test's start and end are sampled too, so a listener that appears during a test and is gone before
it ends is still seen. Listeners on loopback (127.0.0.0/8, ::1) are allowed. Namespaces the test clusters made are
exempt by construction: ``ss`` here does not see their sockets, and they route nowhere.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import threading
from dataclasses import dataclass

INTERVAL_S = 0.5


@dataclass(frozen=True)
class Listener:
    proto: str  # tcp | udp
    address: str  # as ss prints it, without the port: 0.0.0.0, *, [::], 127.0.0.1
    port: str
    process: str  # ss's users:(...) column, "" when ss cannot tell

    @property
    def key(self) -> tuple[str, str, str]:
        return self.proto, self.address, self.port

    def describe(self) -> str:
        return f"{self.proto} {self.address}:{self.port} by {self.process or 'an unknown process'}"


def is_loopback(address: str) -> bool:
    host = address.strip("[]").split("%", 1)[0]
    if host in ("*", ""):
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def parse_ss(text: str) -> list[Listener]:
    """``ss -H -ltnup`` lines: netid, state, recv-q, send-q, local address:port, peer, process."""
    found = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 5:
            continue
        address, _, port = parts[4].rpartition(":")
        found.append(Listener(parts[0], address, port, " ".join(parts[6:])))
    return found


def sample() -> list[Listener]:
    out = subprocess.run(["ss", "-H", "-ltnup"], capture_output=True, text=True, timeout=10)
    return parse_ss(out.stdout)


class ListenerGuard:
    """``begin()`` before a test's fixtures, ``end()`` after its teardown: the listeners off loopback that appeared
    in between (and were not there at ``begin``)."""

    def __init__(self) -> None:
        self.available = shutil.which("ss") is not None
        self._lock = threading.Lock()
        self._baseline: set[tuple[str, str, str]] = set()
        self._seen: dict[tuple[str, str, str], Listener] = {}
        self._active = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def _record(self, listeners: list[Listener]) -> None:
        with self._lock:
            if not self._active:
                return
            for item in listeners:
                if item.key not in self._baseline and not is_loopback(item.address):
                    self._seen.setdefault(item.key, item)

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL_S):
            try:
                self._record(sample())
            except (OSError, subprocess.SubprocessError):
                continue  # one missed sample; the test's end samples again

    def start(self) -> None:
        if self.available and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="listener-guard", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def begin(self) -> None:
        if not self.available:
            return
        current = sample()
        with self._lock:
            self._baseline = {item.key for item in current}
            self._seen = {}
            self._active = True

    def check(self) -> list[Listener]:
        """What appeared off loopback since ``begin`` (sampling once more now); the guard keeps watching."""
        if not self.available:
            return []
        self._record(sample())
        with self._lock:
            return list(self._seen.values())

    def end(self) -> list[Listener]:
        found = self.check()
        with self._lock:
            self._active = False
        return found

    def forget(self) -> None:
        """Drop what was seen so far and count the current listeners as the baseline (a test of the guard)."""
        self.begin()


def failure(found: list[Listener]) -> str:
    return ("listener guard: during this test, something listened off loopback in this machine's network "
            "namespace, where another machine could reach it: " + "; ".join(item.describe() for item in found)
            + ". Bind it to 127.0.0.1, or run it inside a network namespace the test made.")


class NamespaceSampler:
    """Listeners inside other network namespaces (the multi-node cluster's nodes), sampled in the background for
    the duration of a ``with`` block: what a job there listened on, to check it bound to its node's address."""

    def __init__(self, namespaces: tuple[str, ...], interval_s: float = 0.3) -> None:
        self.namespaces = namespaces
        self.interval_s = interval_s
        self.seen: dict[str, set[tuple[str, str, str]]] = {ns: set() for ns in namespaces}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="namespace-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for ns in self.namespaces:
                try:
                    out = subprocess.run(["ip", "netns", "exec", ns, "ss", "-H", "-ltnup"], capture_output=True,
                                         text=True, timeout=10).stdout
                except (OSError, subprocess.SubprocessError):
                    continue
                self.seen[ns] |= {(item.address, item.port, item.process) for item in parse_ss(out)}
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "NamespaceSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def wildcard(self, process: str = "") -> list[str]:
        """Every listener seen on a wildcard address (0.0.0.0, *, [::]) by a process whose ss entry contains
        ``process``, as "node address:port process"."""
        return sorted(f"{ns} {a}:{p} {proc}" for ns, items in self.seen.items() for a, p, proc in items
                      if a.strip("[]") in ("*", "0.0.0.0", "::") and process in proc)
