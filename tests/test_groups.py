"""`make test` runs the suite as three groups side by side (tests/run_groups.py): together they run every test
exactly once, and every test that uses a cluster or Ray is in that cluster's group, never among the others."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from conftest import GROUPS, ROOT

COLLECT = textwrap.dedent("""
    import json, sys
    import pytest

    class Items:
        def pytest_collection_finish(self, session):
            self.found = [(item.nodeid, sorted(item.fixturenames), [m.name for m in item.iter_markers()])
                          for item in session.items]

    out = {}
    for group in [None] + sys.argv[1:]:
        items = Items()
        args = ["--collect-only", "-q", "-p", "no:cacheprovider"] + ([f"--test-group={group}"] if group else [])
        assert pytest.main(args, plugins=[items]) == 0
        out[group or "all"] = items.found
    print("GROUPS " + json.dumps(out))
""")


def test_the_three_groups_run_every_test_once_and_keep_cluster_and_ray_tests_in_their_group():
    res = subprocess.run([sys.executable, "-c", COLLECT, *GROUPS], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    found = json.loads(next(line for line in res.stdout.splitlines() if line.startswith("GROUPS "))[7:])
    every = [nodeid for nodeid, _, _ in found["all"]]
    assert len(every) > 250 and len(set(every)) == len(every)
    grouped = [nodeid for group in GROUPS for nodeid, _, _ in found[group]]
    assert sorted(grouped) == sorted(every), "a test is in no group, or in two"
    for nodeid, fixtures, marks in found["slurm"]:
        assert "slurm_cluster" in fixtures, nodeid
    for group in ("multinode-and-ray", "other"):
        for nodeid, fixtures, marks in found[group]:
            assert "slurm_cluster" not in fixtures, f"{nodeid} uses the single-node cluster outside its group"
    for nodeid, fixtures, marks in found["other"]:
        assert "multinode_cluster" not in fixtures and "ray" not in marks, f"{nodeid} uses Ray or the 3 nodes"
    assert found["slurm"] and found["multinode-and-ray"], "each cluster group has tests"
