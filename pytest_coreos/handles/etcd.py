"""The etcd handle that tests use: v2 keys, cluster membership and the v3 JSON gateway.

One :class:`EtcdClient` talks to one or more members over HTTP with ``requests``. Given
several endpoints it fails over: a member that refuses or times out is skipped and the
next one asked, so a cluster-wide client keeps working while a machine is down. Given one
endpoint it is pinned to that member, which is what a test needs to read from a chosen
machine.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import requests
import urllib3.exceptions

from pytest_coreos.errors import EtcdError, EtcdKeyNotFoundError

KEY_NOT_FOUND = 100
"""etcd v2 error code for a missing key; raised as :class:`EtcdKeyNotFoundError`."""
NOT_A_FILE = 102
NOT_A_DIRECTORY = 104

_BODY_EXCERPT = 200


@dataclass(frozen=True)
class Member:
    """One member of an etcd cluster as the cluster itself reports it."""

    id: str
    """Member id in hex, as ``etcdctl member list`` prints it."""
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]


class _WaitTimedOut(Exception):
    """A blocking request (a v2 watch) got its headers but no body in time."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        super().__init__(endpoint)


class _Transport:
    """HTTP to a list of endpoints, failing over between them.

    Shared by :class:`EtcdClient` and its :attr:`EtcdClient.v3` so both start from the
    member that last answered.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout: float,
        session: requests.Session | None,
        owns_session: bool = False,
    ) -> None:
        if isinstance(endpoints, str):
            # A lone URL is a Sequence[str] too; iterating it would give one endpoint a letter.
            endpoints = [endpoints]
        self.endpoints = tuple(endpoint.rstrip("/") for endpoint in endpoints)
        if not self.endpoints:
            raise ValueError("an etcd client needs at least one endpoint")
        self.timeout = timeout
        self._owns_session = session is None or owns_session
        self.session = session if session is not None else requests.Session()
        self._preferred = 0

    @property
    def last_answered(self) -> str:
        """The endpoint that answered most recently, where the next request starts."""
        return self.endpoints[self._preferred]

    def close(self) -> None:
        if self._owns_session:
            self.session.close()

    def _rotation(self) -> Iterator[int]:
        count = len(self.endpoints)
        start = self._preferred
        return ((start + offset) % count for offset in range(count))

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
        wait_timeout: float | None = None,
        waits: bool = False,
    ) -> tuple[str, requests.Response, bytes]:
        """Send one request, trying each endpoint in turn from the last one that answered.

        Returns the endpoint that answered, its response and the body. ``waits`` marks a
        request the server holds open until something happens (a v2 watch): etcd sends
        its headers at once, so a timeout after them means nothing happened, which is an
        answer, not a dead member.
        """
        read_timeout = wait_timeout if waits else self.timeout
        tried: list[str] = []
        last_exception: requests.RequestException | None = None
        for index in self._rotation():
            endpoint = self.endpoints[index]
            tried.append(endpoint)
            headers_received = False
            try:
                with self.session.request(
                    method,
                    endpoint + path,
                    params=params,
                    data=form,
                    json=json_body,
                    timeout=(self.timeout, read_timeout),
                    stream=True,
                ) as response:
                    headers_received = True
                    body = response.content
            except requests.RequestException as exc:
                if waits and headers_received and _is_read_timeout(exc):
                    self._preferred = index
                    raise _WaitTimedOut(endpoint) from exc
                last_exception = exc
                continue
            self._preferred = index
            return endpoint, response, body
        assert last_exception is not None  # the loop ran at least once and never returned
        raise EtcdError(
            ", ".join(tried),
            f"{method} {path} failed on every endpoint tried; last problem: "
            f"{_describe(last_exception)}",
        ) from last_exception

    def request_json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
        key: str | None = None,
    ) -> dict[str, Any]:
        """Send one request and return its JSON object, raising etcd's errors as EtcdError."""
        endpoint, response, body = self.request(
            method, path, params=params, form=form, json_body=json_body
        )
        return decode_reply(endpoint, response.status_code, body, key=key)


def _is_read_timeout(exc: requests.RequestException) -> bool:
    # requests raises a read timeout while reading a streamed body as a ConnectionError
    # wrapping urllib3's ReadTimeoutError, not as requests.ReadTimeout.
    if isinstance(exc, requests.ReadTimeout):
        return True
    return any(isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in exc.args)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def decode_reply(
    endpoint: str, status_code: int, body: bytes, *, key: str | None = None
) -> dict[str, Any]:
    """Turn an etcd HTTP reply into its JSON object, or raise the error it carries.

    v2 errors (``{"errorCode": 105, ...}``) keep etcd's code, and name ``key`` besides
    etcd's cause, which for a missing key is only its first missing parent. v3 gateway
    errors (``{"error": ..., "code": 5}``, a gRPC code) and replies that are not JSON at
    all (a 404 page, a proxy's error) keep the HTTP status.
    """
    text = body.decode("utf-8", errors="replace")
    try:
        decoded: Any = json.loads(text)
    except ValueError:
        decoded = None
    if isinstance(decoded, dict):
        if "errorCode" in decoded:
            code = int(decoded["errorCode"])
            problem = str(decoded.get("message", "error"))
            cause = str(decoded.get("cause") or "")
            if cause:
                problem += f": {cause}"
            if key is not None and key != cause:
                problem += f" (for {key})"
            error_type = EtcdKeyNotFoundError if code == KEY_NOT_FOUND else EtcdError
            raise error_type(endpoint, problem, error_code=code, status_code=status_code)
        if "error" in decoded and "code" in decoded:
            problem = f"{decoded.get('message') or decoded['error']} (gRPC code {decoded['code']})"
            raise EtcdError(endpoint, problem, status_code=status_code)
        if 200 <= status_code < 300:
            return decoded
    excerpt = text.strip()[:_BODY_EXCERPT] or "(empty body)"
    if 200 <= status_code < 300:
        problem = f"HTTP {status_code} with a reply that is not a JSON object: {excerpt}"
    else:
        problem = f"HTTP {status_code}: {excerpt}"
    raise EtcdError(endpoint, problem, status_code=status_code)


def _absolute_key(key: str) -> str:
    return key if key.startswith("/") else "/" + key


def _v2_path(key: str) -> str:
    return "/v2/keys" + urllib.parse.quote(_absolute_key(key), safe="/")


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _member_id_hex(raw_id: str | int) -> str:
    # The gateway prints uint64 ids as decimal strings; etcdctl and the logs show hex.
    return format(int(raw_id), "x")


def _child_keys(node: Mapping[str, Any], recursive: bool) -> Iterator[str]:
    for child in node.get("nodes", []):
        yield str(child["key"])
        if recursive and child.get("dir"):
            yield from _child_keys(child, recursive)


class _EtcdHandle:
    """What the v2 and v3 clients share: endpoints, name, timeout, closing."""

    _transport: _Transport
    name: str | None

    def __repr__(self) -> str:
        label = f"name={self.name!r}, " if self.name is not None else ""
        return f"{type(self).__name__}({label}endpoints={list(self.endpoints)!r})"

    @property
    def endpoints(self) -> tuple[str, ...]:
        """Client URLs, tried in this order from the one that last answered."""
        return self._transport.endpoints

    @property
    def timeout(self) -> float:
        """Seconds to connect, and to wait for each reply, before trying the next endpoint."""
        return self._transport.timeout

    def close(self) -> None:
        """Close the HTTP session, unless the caller passed in their own."""
        self._transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class EtcdClient(_EtcdHandle):
    """A handle on an etcd cluster: v2 keys, membership, health, and :attr:`v3`.

    With several endpoints it fails over between them; with one it is pinned to that
    member. The v2 keys API needs etcd to run with ``--enable-v2=true``.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout: float = 5.0,
        name: str | None = None,
        session: requests.Session | None = None,
        owns_session: bool = False,
    ) -> None:
        """``session`` is used for every request; ``owns_session`` makes :meth:`close`
        close it too (by default only a session the client made itself is closed)."""
        self._transport = _Transport(
            endpoints, timeout=timeout, session=session, owns_session=owns_session
        )
        self.name = name
        self._v3: EtcdV3Client | None = None

    @property
    def v3(self) -> EtcdV3Client:
        """The v3 API over the same endpoints, session and failover state."""
        if self._v3 is None:
            self._v3 = EtcdV3Client._over(self._transport, self.name)
        return self._v3

    # v2 keys

    def _keys_request(
        self,
        method: str,
        key: str,
        *,
        params: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        return self._transport.request_json(
            method, _v2_path(key), params=params, form=form, key=_absolute_key(key)
        )

    def get(self, key: str, *, quorum: bool = True) -> str:
        """The value of ``key``; a quorum read by default, so never stale on any member.

        Raises :class:`EtcdKeyNotFoundError` when it is missing.
        """
        node = self.get_node(key, quorum=quorum)
        if node.get("dir"):
            raise EtcdError(
                self._transport.last_answered,
                f"Not a file: {node.get('key', key)} is a directory",
                error_code=NOT_A_FILE,
            )
        return str(node.get("value", ""))

    def get_node(self, key: str, *, recursive: bool = False, quorum: bool = True) -> dict[str, Any]:
        """The raw v2 node of ``key`` (``key``, ``value`` or ``dir``/``nodes``, indexes, ttl)."""
        params = {"quorum": _flag(quorum)}
        if recursive:
            params["recursive"] = "true"
        reply = self._keys_request("GET", key, params=params)
        node: dict[str, Any] = reply["node"]
        return node

    def set(
        self,
        key: str,
        value: str,
        *,
        ttl: int | None = None,
        prev_exist: bool | None = None,
        prev_value: str | None = None,
        prev_index: int | None = None,
    ) -> dict[str, Any]:
        """Write ``key`` and return its new node.

        ``prev_exist=False`` creates only (etcd error 105 if the key exists),
        ``prev_exist=True`` updates only; ``prev_value``/``prev_index`` compare and swap
        (error 101 when the comparison fails). ``ttl`` makes the key expire.
        """
        form = {"value": value}
        if ttl is not None:
            form["ttl"] = str(ttl)
        params: dict[str, str] = {}
        if prev_exist is not None:
            params["prevExist"] = _flag(prev_exist)
        if prev_value is not None:
            params["prevValue"] = prev_value
        if prev_index is not None:
            params["prevIndex"] = str(prev_index)
        reply = self._keys_request("PUT", key, params=params, form=form)
        node: dict[str, Any] = reply["node"]
        return node

    def mkdir(self, key: str, *, ttl: int | None = None) -> dict[str, Any]:
        """Create the directory ``key`` and return its node; error 105 if the key exists.

        Like ``os.mkdir``, an existing key is an error rather than silently kept, so a
        test that expects a fresh directory finds out when it is not.
        """
        form = {"dir": "true"}
        if ttl is not None:
            form["ttl"] = str(ttl)
        reply = self._keys_request("PUT", key, params={"prevExist": "false"}, form=form)
        node: dict[str, Any] = reply["node"]
        return node

    def delete(self, key: str, *, recursive: bool = False, dir: bool = False) -> None:
        """Delete ``key``; a directory needs ``dir=True`` (empty) or ``recursive=True``."""
        params: dict[str, str] = {}
        if recursive:
            params["recursive"] = "true"
        if dir:
            params["dir"] = "true"
        self._keys_request("DELETE", key, params=params)

    def ls(self, key: str = "/", *, recursive: bool = False) -> list[str]:
        """Full keys of the children of directory ``key`` (all descendants if recursive), sorted."""
        node = self.get_node(key, recursive=recursive)
        if not node.get("dir"):
            raise EtcdError(
                self._transport.last_answered,
                f"Not a directory: {node.get('key', key)}",
                error_code=NOT_A_DIRECTORY,
            )
        return sorted(_child_keys(node, recursive))

    def watch(
        self,
        key: str,
        *,
        index: int | None = None,
        recursive: bool = False,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Block until ``key`` changes and return etcd's reply (``action``, ``node``, ...).

        ``index`` waits for the first change at or after that etcd index, which may already
        have happened, so pass ``node["modifiedIndex"] + 1`` of an earlier write to miss
        nothing in between. ``timeout`` (seconds, None for ever) raises EtcdError when
        nothing changed in time.
        """
        params = {"wait": "true"}
        if index is not None:
            params["waitIndex"] = str(index)
        if recursive:
            params["recursive"] = "true"
        path = _v2_path(key)
        try:
            endpoint, response, body = self._transport.request(
                "GET", path, params=params, wait_timeout=timeout, waits=True
            )
        except _WaitTimedOut as timed_out:
            raise EtcdError(
                timed_out.endpoint,
                f"watch on {_absolute_key(key)} saw no change within {timeout}s",
            ) from timed_out.__cause__
        return decode_reply(endpoint, response.status_code, body, key=_absolute_key(key))

    def exists(self, key: str) -> bool:
        """Whether ``key`` (a value or a directory) exists, by a quorum read."""
        try:
            self.get_node(key)
        except EtcdKeyNotFoundError:
            return False
        return True

    # cluster

    def members(self) -> list[Member]:
        """The cluster's members, through the v3 gateway (so v2 need not be enabled)."""
        reply = self._transport.request_json("POST", "/v3/cluster/member/list", json_body={})
        return [
            Member(
                id=_member_id_hex(member["ID"]),
                # A member added but not yet started has no name and no client URLs.
                name=str(member.get("name", "")),
                peer_urls=tuple(member.get("peerURLs", ())),
                client_urls=tuple(member.get("clientURLs", ())),
            )
            for member in reply.get("members", [])
        ]

    def leader(self) -> Member | None:
        """The current leader as the answering member sees it; None while there is none."""
        status = self._transport.request_json("POST", "/v3/maintenance/status", json_body={})
        raw_leader = status.get("leader", "0")
        if int(raw_leader) == 0:
            return None
        leader_id = _member_id_hex(raw_leader)
        return next((member for member in self.members() if member.id == leader_id), None)

    def health(self) -> bool:
        """True when the answering member reports itself healthy; False on any failure."""
        try:
            reply = self._transport.request_json("GET", "/health")
        except EtcdError:
            return False
        return reply.get("health") in ("true", True)

    def version(self) -> dict[str, str]:
        """Server and cluster versions, e.g. ``{"etcdserver": "3.5.1", "etcdcluster": "3.5.0"}``."""
        reply = self._transport.request_json("GET", "/version")
        return {str(name): str(value) for name, value in reply.items()}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _unb64(encoded: str) -> str:
    return base64.b64decode(encoded).decode("utf-8")


def _prefix_range(prefix: str) -> dict[str, str]:
    """The v3 ``key``/``range_end`` pair covering every key that starts with ``prefix``.

    Like etcd's GetPrefixRangeEnd: the range ends just past the prefix's last byte that
    can be incremented; ``"\\0"`` as an end (or as key and end) means the whole keyspace.
    """
    start = prefix.encode("utf-8")
    end = bytearray(start)
    while end and end[-1] == 0xFF:
        end.pop()
    if end:
        end[-1] += 1
    else:
        end = bytearray(b"\0")
    return {
        "key": base64.b64encode(start or b"\0").decode("ascii"),
        "range_end": base64.b64encode(bytes(end)).decode("ascii"),
    }


class EtcdV3Client(_EtcdHandle):
    """The etcd v3 API through its JSON gateway (``/v3/...``), which base64s keys and values.

    Usually reached as :attr:`EtcdClient.v3`, sharing that client's endpoints, session and
    failover; closing either closes both.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout: float = 5.0,
        name: str | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self._transport = _Transport(endpoints, timeout=timeout, session=session)
        self.name = name

    @classmethod
    def _over(cls, transport: _Transport, name: str | None) -> EtcdV3Client:
        client = cls.__new__(cls)
        client._transport = transport
        client.name = name
        return client

    def _post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._transport.request_json("POST", path, json_body=body)

    def put(self, key: str, value: str, *, lease: int | None = None) -> int:
        """Write ``key`` (attached to ``lease`` if given) and return the new revision."""
        body = {"key": _b64(key), "value": _b64(value)}
        if lease is not None:
            # int64 fields travel as strings in the gateway's JSON.
            body["lease"] = str(lease)
        reply = self._post("/v3/kv/put", body)
        return int(reply["header"]["revision"])

    def get(self, key: str) -> str | None:
        """The value of ``key``, or None when it does not exist."""
        reply = self._post("/v3/kv/range", {"key": _b64(key)})
        kvs = reply.get("kvs", [])
        return _unb64(kvs[0].get("value", "")) if kvs else None

    def get_prefix(self, prefix: str) -> dict[str, str]:
        """Every key starting with ``prefix`` and its value."""
        reply = self._post("/v3/kv/range", _prefix_range(prefix))
        return {_unb64(kv["key"]): _unb64(kv.get("value", "")) for kv in reply.get("kvs", [])}

    def delete(self, key: str, *, prefix: bool = False) -> int:
        """Delete ``key`` (or every key starting with it) and return how many went."""
        body = _prefix_range(key) if prefix else {"key": _b64(key)}
        reply = self._post("/v3/kv/deleterange", body)
        # The gateway leaves out zero-valued fields, so nothing deleted means no "deleted".
        return int(reply.get("deleted", 0))

    def lease(self, ttl: int) -> int:
        """Grant a lease of ``ttl`` seconds and return its id."""
        reply = self._post("/v3/lease/grant", {"TTL": str(ttl)})
        return int(reply["ID"])

    def revoke(self, lease_id: int) -> None:
        """Revoke a lease, deleting every key attached to it."""
        self._post("/v3/lease/revoke", {"ID": str(lease_id)})
