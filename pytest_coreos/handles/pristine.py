"""etcd's state at ready, as :meth:`Cluster.reset` returns to it, and the quick way back
where a test only wrote keys.

The exact way back is the provider's: every member's data folder as it was at ready, put
back with the members stopped (``Deployment.restore``), which costs each member a restart
and the cluster an election. Where a fresh cluster held no key and no lease at ready, and
every v2 change since then shows in etcd's v2 event history as a change of a key that a
listing shows, deleting those keys, every v3 key and every lease through the API leaves
etcd holding exactly what it held at ready (only its revision counters have moved on),
with no member stopped. Anything else (a key etcd hides from listings, such as fleet's
``/_coreos.com``, a member added or removed, history too long to read) takes the exact
way.
"""

from __future__ import annotations

from dataclasses import dataclass

from pytest_coreos.errors import EtcdError
from pytest_coreos.handles.etcd import EtcdClient

# More v2 changes than this since ready, and reading them one by one would cost more than
# the restart it saves.
MAX_CHANGES = 200
# How long a watch from an index etcd's history holds takes to answer, at most: it
# answers from memory. Waiting longer means no change of a key has that index or later.
QUIET = 0.2


@dataclass
class EtcdAtReady:
    """What etcd held when the cluster became ready."""

    members: tuple[str, ...]  # the member IDs, sorted
    empty: bool  # no v2 key a listing shows, no v3 key, no lease
    # The v2 index since which the changes are a test's: at ready, and after every reset
    # (a reset's own deletes are no test's).
    since: int

    @classmethod
    def record(cls, client: EtcdClient) -> EtcdAtReady:
        """Read it from a ready cluster."""
        return cls(
            members=member_ids(client),
            empty=not client.ls("/") and not client.v3.count() and not client.v3.leases(),
            since=client.index(),
        )

    def clear_in_place(self, client: EtcdClient) -> bool:
        """Delete what tests wrote since :attr:`since` through the API, where that gives
        back exactly the state at ready; False (nothing changed) where only the provider's
        restore does."""
        if not self.empty or member_ids(client) != self.members:
            return False
        if not self._only_visible_changes(client):
            return False
        for key in client.ls("/"):
            client.delete(key, recursive=True)
        client.v3.delete_all()
        for lease in client.v3.leases():
            client.v3.revoke(lease)
        return True

    def _only_visible_changes(self, client: EtcdClient) -> bool:
        """Whether every v2 change since :attr:`since` was to a key a listing shows. A
        recursive watch of ``/`` from an index answers at once with the first change of a
        key at or after it that etcd's history holds, hidden keys included (its history
        does not hide them); the indexes it skips are etcd's own changes of its members'
        attributes, outside the keys. A watch that gets no answer in :data:`QUIET`
        seconds found no change of a key up to now."""
        current = client.index()
        if current - self.since > MAX_CHANGES:
            return False
        index = self.since + 1
        while index <= current:
            try:
                reply = client.watch("/", index=index, recursive=True, timeout=QUIET)
            except EtcdError as error:
                # No change of a key left (only etcd's own), or else a history cleared or
                # a member not answering, where only the restore is sure.
                return error.error_code is None and "saw no change" in error.problem
            node = reply["node"]
            if "/_" in str(node.get("key", "/_")):
                return False
            index = int(node["modifiedIndex"]) + 1
        return True


def member_ids(client: EtcdClient) -> tuple[str, ...]:
    """The cluster's member IDs, sorted."""
    return tuple(sorted(member.id for member in client.members()))
