"""``cluster.reset()`` on three VMs, checked from inside an inner session of the Vagrant
e2e (``test_vagrant_checkout.py``, last: a reset that puts etcd's data back must not run
before other checks of the same cluster). Not collected by the outer run: its name is no
``test_*.py``; the inner run names it explicitly.

The session's cluster was not booted resettable: the check clears what the tests before it
wrote and keeps that state, as ``coreos_fresh_cluster`` keeps it at ready, then dirties the
cluster as fault tests would and resets it each way the vagrant provider has.
"""

from __future__ import annotations

import json
import time

RESET_UNIT = "[Service]\nExecStart=/bin/sleep 3600\n"


def test_a_reset_returns_the_vms_to_the_state_kept(coreos_cluster, capsys):
    cluster = coreos_cluster
    for key in cluster.etcd.ls("/"):
        cluster.etcd.delete(key, recursive=True)
    cluster.etcd.v3.delete_all()
    for lease in cluster.etcd.v3.leases():
        cluster.etcd.v3.revoke(lease)
    cluster.save_ready()
    members = sorted(member.id for member in cluster.etcd.members())
    addresses = [machine.private_ipv4 for machine in cluster]
    discovery = cluster.discovery_url
    timings = {}

    def reset(label, way):
        started = time.perf_counter()
        cluster.reset()
        timings[label] = time.perf_counter() - started
        assert cluster.last_reset == way
        assert all(machine.running for machine in cluster)
        assert sorted(member.id for member in cluster.etcd.members()) == members
        assert [machine.private_ipv4 for machine in cluster] == addresses
        assert cluster.discovery_url == discovery
        assert cluster.etcd.ls("/") == []
        assert cluster.etcd.v3.get_prefix("/") == {}
        assert cluster.etcd.v3.leases() == []
        cluster.wait_until_healthy(timeout=5)

    # What a test leaves: keys, a lease, a unit on every machine.
    cluster.etcd.set("/e2e-reset/key", "dirty")
    cluster.etcd.mkdir("/e2e-reset/dir")
    cluster.etcd.v3.put("/e2e-reset/leased", "dirty", lease=cluster.etcd.v3.lease(600))
    cluster.units.deploy("e2e-reset.service", RESET_UNIT)
    reset("unit removed (in place)", "in place")
    for machine in cluster:
        assert machine.systemd.status("e2e-reset.service").load_state == "not-found"

    # A key listings hide (as fleet's are): only putting every member's data back finds it.
    cluster.etcd.set("/_e2e-reset/hidden", "dirty")
    reset("hidden key (restore)", "restore")
    assert not cluster.etcd.exists("/_e2e-reset/hidden")

    # A suspended follower (a suspended leader stalls writes until the others elect).
    # (the checkout's user-data leaves etcd's member names to etcd: found by address)
    leader = cluster.etcd.leader()
    follower = next(m for m in cluster if f"//{m.private_ipv4}:" not in leader.peer_urls[0])
    cluster.etcd.set("/e2e-reset/key", "dirty")
    follower.pause()
    reset("after a suspend (in place)", "in place")
    assert follower.ssh.run(["true"]).exit_status == 0
    with capsys.disabled():
        # read by benchmarks/reset_bench.py
        print("\nvagrant reset: " + json.dumps({k: round(v, 2) for k, v in timings.items()}))
