"""The listener guard catches what it is there to catch: a real socket on 0.0.0.0, from another process or this
one, also when it is gone before the test ends; loopback listeners pass. Every socket on 0.0.0.0 here is opened
inside a private network namespace, so that no other test run on this machine can see it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import ROOT
from listeners import is_loopback, parse_ss

LISTEN = ("import socket, sys, time; s = socket.socket(); s.bind((sys.argv[1], 0)); s.listen(); "
          "print(s.getsockname()[1], flush=True); time.sleep(float(sys.argv[2]))")


def _listen(host: str, seconds: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", LISTEN, host, str(seconds)], stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def _in_private_netns(code: str) -> dict:
    """Run ``code`` (which prints one JSON line) with a guard of its own inside a fresh network namespace, so that
    the socket it opens on 0.0.0.0 is seen by that guard alone, never by a test run beside it on this machine."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a private network namespace")
    proc = subprocess.run(["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
                           sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "tests")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_guard_names_the_process_address_and_port_of_a_listener_on_all_interfaces():
    out = _in_private_netns(f"""
        import json, subprocess, sys
        from listeners import ListenerGuard, failure
        guard = ListenerGuard()
        guard.begin()
        proc = subprocess.Popen([sys.executable, "-c", {LISTEN!r}, "0.0.0.0", "60"], stdout=subprocess.PIPE, text=True)
        port = proc.stdout.readline().strip()
        found = guard.check()
        proc.kill()
        print(json.dumps({{"found": [[f.address, f.port] for f in found], "message": failure(found), "port": port,
                          "pid": proc.pid}}))
    """)
    assert out["found"] == [["0.0.0.0", out["port"]]], out
    message = out["message"]
    assert f"tcp 0.0.0.0:{out['port']}" in message and f"pid={out['pid']}" in message and '"python' in message, message


def test_guard_catches_a_listener_that_is_gone_before_the_test_ends():
    out = _in_private_netns("""
        import json, socket, time
        from listeners import ListenerGuard
        guard = ListenerGuard()
        guard.start()
        guard.begin()
        with socket.socket() as s:
            s.bind(("0.0.0.0", 0))
            s.listen()
            port = str(s.getsockname()[1])
            time.sleep(1.5)  # three sampling intervals
        print(json.dumps({"port": port, "seen": [f.port for f in guard.end()]}))
    """)
    assert out["port"] in out["seen"], out


def test_guard_lets_loopback_listeners_pass(listener_guard):
    proc, port = _listen("127.0.0.1", 60)
    try:
        time.sleep(1.0)
        assert port not in [f.port for f in listener_guard.check()]
    finally:
        proc.kill()
        proc.wait()


def test_ss_lines_parse_and_only_loopback_counts_as_loopback():
    text = ("tcp LISTEN 0 4096 *:41634 *:* users:((\"python\",pid=7,fd=3))\n"
            "tcp LISTEN 0 128 0.0.0.0:2024 0.0.0.0:*\n"
            "tcp LISTEN 0 128 [::ffff:127.0.0.1]:5 [::]:*\n"
            "udp UNCONN 0 0 127.0.0.53%lo:53 0.0.0.0:*\n"
            "tcp LISTEN 0 128 [::]:22 [::]:*\n")
    parsed = parse_ss(text)
    assert [(p.proto, p.address, p.port) for p in parsed] == [
        ("tcp", "*", "41634"), ("tcp", "0.0.0.0", "2024"), ("tcp", "[::ffff:127.0.0.1]", "5"),
        ("udp", "127.0.0.53%lo", "53"), ("tcp", "[::]", "22")]
    assert parsed[0].process == 'users:(("python",pid=7,fd=3))'
    assert [is_loopback(p.address) for p in parsed] == [False, False, True, True, False]
    assert not is_loopback("10.0.0.1") and is_loopback("[::1]")


def test_a_test_that_leaves_a_listener_on_all_interfaces_fails_the_run(tmp_path):
    """The whole mechanism, as make test meets it: a sub-pytest with this suite's conftest as a plugin, inside a
    network namespace of its own (so that its leak is its guard's to see, not this run's)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a private network namespace")
    (tmp_path / "test_leak.py").write_text(
        "import socket, time\n"
        "def test_leaks():\n"
        "    s = socket.socket(); s.bind(('0.0.0.0', 0)); s.listen(); time.sleep(1)\n"
        "    test_leaks.kept = s\n")
    tests = ROOT / "tests"
    proc = subprocess.run(["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
                           sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider",
                           str(tmp_path / "test_leak.py")], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tests)})
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "ERROR at teardown of test_leaks" in proc.stdout and "listener guard: " in proc.stdout
    assert "tcp 0.0.0.0:" in proc.stdout and '"python' in proc.stdout, proc.stdout[-2000:]
