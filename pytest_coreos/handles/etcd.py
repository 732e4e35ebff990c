"""The etcd handle that tests use: v2 keys, cluster membership and the v3 JSON gateway.

One :class:`EtcdClient` talks to one or more members over HTTP with ``requests``. Given
several endpoints it fails over: a member that refuses or times out is skipped and the
next one asked, so a cluster-wide client keeps working while a machine is down. Given one
endpoint it is pinned to that member, which is what a test needs to read from a chosen
machine.

A member that loses its leader (killed, stopped or paused) leaves the others without one
for an election: a write they forward to it meanwhile is dropped, and etcd answers only
when its own request timeout runs out. With a ``deadline``, a client rides that out: the
key operations that can safely be sent twice (``get``, ``set``, ``delete``, ``mkdir``,
``ls`` and v3 ``put``, ``get``, ``delete``) are sent again, after short attempts that
grow, on the same member and on the others of a cluster-wide client, until one succeeds
or the deadline passes. Conditional writes are sent again only where etcd said it did not
apply them; otherwise they raise :class:`EtcdOutcomeUnknownError`, as etcd's own clients
report such a write.
"""

from __future__ import annotations

import base64
import enum
import json
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import requests
import urllib3.exceptions

from pytest_coreos.errors import EtcdError, EtcdKeyNotFoundError, EtcdOutcomeUnknownError

KEY_NOT_FOUND = 100
"""etcd v2 error code for a missing key; raised as :class:`EtcdKeyNotFoundError`."""
NOT_A_FILE = 102
NOT_A_DIRECTORY = 104
NODE_EXIST = 105
RAFT_INTERNAL = 300
LEADER_ELECT = 301
# gRPC codes of the v3 gateway's errors that a new leader clears: DeadlineExceeded
# ("request timed out") and Unavailable ("no leader", "leader changed").
_GRPC_TRANSIENT = {4, 14}
# What etcd says when no leader took the request: it was not applied, so even a
# conditional write may be sent again.
_NOT_APPLIED = ("raft proposal dropped", "no leader", "leader election")
_TRANSIENT_MESSAGES = (*_NOT_APPLIED, "request timed out", "leader changed", "too many requests")
# The first attempt of a request that rides out an election gets this long to answer;
# each attempt after it twice as long as the one before, up to the client's timeout.
FIRST_ATTEMPT = 0.5
RETRY_PAUSE = 0.05

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


class Retry(enum.Enum):
    """How a request may be sent again when a member does not answer it."""

    NEVER = "never"  # one pass over the endpoints, as for a status or a watch
    SAFE = "safe"  # sent again until the deadline: doing it twice does no harm
    CONDITIONAL = "conditional"  # sent again only where it was certainly not applied


@dataclass(frozen=True)
class _Transient:
    """A reply that a new leader would change: etcd's "no leader", "request timed out"."""

    problem: str
    not_applied: bool


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
        deadline: float = 0.0,
    ) -> None:
        if isinstance(endpoints, str):
            # A lone URL is a Sequence[str] too; iterating it would give one endpoint a letter.
            endpoints = [endpoints]
        self.endpoints = tuple(endpoint.rstrip("/") for endpoint in endpoints)
        if not self.endpoints:
            raise ValueError("an etcd client needs at least one endpoint")
        self.timeout = timeout
        self.deadline = deadline
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

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None,
        form: Mapping[str, str] | None,
        json_body: Mapping[str, Any] | None,
        read_timeout: float | None,
        waits: bool = False,
    ) -> tuple[requests.Response, bytes]:
        headers_received = False
        try:
            with self.session.request(
                method,
                url,
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
                raise _WaitTimedOut(url) from exc
            raise
        return response, body

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
            try:
                response, body = self._send(
                    method,
                    endpoint + path,
                    params=params,
                    form=form,
                    json_body=json_body,
                    read_timeout=read_timeout,
                    waits=waits,
                )
            except _WaitTimedOut as timed_out:
                self._preferred = index
                raise _WaitTimedOut(endpoint) from timed_out.__cause__
            except requests.RequestException as exc:
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
        retry: Retry = Retry.NEVER,
        settled: Callable[[EtcdError], dict[str, Any] | None] | None = None,
    ) -> dict[str, Any]:
        """Send one request and return its JSON object, raising etcd's errors as EtcdError.

        ``retry`` says whether it rides out a member without a leader (see the module's
        doc). ``settled`` turns an error that a request sent again may get because an
        earlier try was applied after all (a delete's "key not found") into the reply.
        """
        if retry is Retry.NEVER:
            endpoint, response, body = self.request(
                method, path, params=params, form=form, json_body=json_body
            )
            return decode_reply(endpoint, response.status_code, body, key=key)
        started = time.monotonic()
        deadline = started + self.deadline
        what = f"{method} {path}"
        attempt = 0
        unsure = False  # an earlier try may have been applied
        problems: dict[str, str] = {}
        last_exception: BaseException | None = None
        while True:
            read_timeout = self.timeout
            if retry is Retry.SAFE and self.deadline > 0:
                read_timeout = min(self.timeout, FIRST_ATTEMPT * 2**attempt)
            answered = False  # something took the request: not every member is down
            for index in self._rotation():
                endpoint = self.endpoints[index]
                try:
                    response, body = self._send(
                        method,
                        endpoint + path,
                        params=params,
                        form=form,
                        json_body=json_body,
                        read_timeout=read_timeout,
                    )
                except requests.RequestException as exc:
                    if _maybe_delivered(exc):
                        if retry is Retry.CONDITIONAL:
                            raise EtcdOutcomeUnknownError(endpoint, what, _describe(exc)) from exc
                        answered = unsure = True
                    problems[endpoint] = _describe(exc)
                    last_exception = exc
                    continue
                self._preferred = index
                answered = True
                transient = _transient(response.status_code, body)
                if transient is not None:
                    if retry is Retry.CONDITIONAL and not transient.not_applied:
                        raise EtcdOutcomeUnknownError(endpoint, what, transient.problem)
                    if retry is Retry.CONDITIONAL or self.deadline > 0:
                        # Another member, or this one once it has a leader, may take it.
                        unsure = unsure or not transient.not_applied
                        problems[endpoint] = transient.problem
                        last_exception = None
                        continue
                try:
                    return decode_reply(endpoint, response.status_code, body, key=key)
                except EtcdError as error:
                    reply = settled(error) if unsure and settled is not None else None
                    if reply is None:
                        raise
                    return reply
            now = time.monotonic()
            if not answered or now >= deadline:
                shown = "; ".join(f"{ep}: {problem}" for ep, problem in problems.items())
                if not answered or self.deadline <= 0:
                    problem = f"{what} failed on every endpoint tried; last problem: {shown}"
                else:
                    problem = (
                        f"{what} still failing after {now - started:.1f}s, the deadline "
                        f"({self.deadline:g}s; the plugin's handles have the boot timeout, "
                        f"--coreos-boot-timeout); last problems: {shown}"
                    )
                raise EtcdError(", ".join(problems), problem) from last_exception
            time.sleep(min(RETRY_PAUSE * 2**attempt, 0.5, max(0.0, deadline - now)))
            attempt += 1


def _maybe_delivered(exc: requests.RequestException) -> bool:
    """Whether a failed request may have reached etcd (and so may have been applied): it
    was sent and then timed out or lost its connection, rather than never connecting."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    if isinstance(exc, requests.ReadTimeout | requests.exceptions.ChunkedEncodingError):
        return True
    cause = exc.args[0] if exc.args else None
    return _is_read_timeout(exc) or isinstance(cause, urllib3.exceptions.ProtocolError)


def _transient(status_code: int, body: bytes) -> _Transient | None:
    """The reply as a :class:`_Transient` if it is etcd saying it has no leader (yet),
    or that the request timed out waiting for one; None for any other reply."""
    if status_code < 500:
        return None
    try:
        decoded: Any = json.loads(body.decode("utf-8", errors="replace"))
    except ValueError:
        return None
    if not isinstance(decoded, dict):
        return None
    if "errorCode" in decoded:
        code = int(decoded["errorCode"])
        text = f"{decoded.get('message', '')}: {decoded.get('cause', '')}".strip(": ")
        if code not in (RAFT_INTERNAL, LEADER_ELECT):
            return None
        not_applied = code == LEADER_ELECT or any(m in text.lower() for m in _NOT_APPLIED)
        return _Transient(f"{text} (etcd error {code})", not_applied)
    if "error" in decoded and "code" in decoded:
        text = str(decoded.get("message") or decoded["error"])
        lowered = text.lower()
        if int(decoded["code"]) not in _GRPC_TRANSIENT and not any(
            m in lowered for m in _TRANSIENT_MESSAGES
        ):
            return None
        not_applied = any(m in lowered for m in _NOT_APPLIED)
        return _Transient(f"{text} (gRPC code {decoded['code']})", not_applied)
    return None


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

    @property
    def deadline(self) -> float:
        """Seconds for which key operations are sent again while a member has no leader
        (0: one pass over the endpoints); shared with :attr:`EtcdClient.v3`."""
        return self._transport.deadline

    @deadline.setter
    def deadline(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"deadline must be at least 0 seconds, got {seconds}")
        self._transport.deadline = seconds

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
        deadline: float = 0.0,
    ) -> None:
        """``session`` is used for every request; ``owns_session`` makes :meth:`close`
        close it too (by default only a session the client made itself is closed).
        ``deadline``: seconds for which key operations ride out a member without a leader
        (see the module's doc; 0, the default, tries each endpoint once)."""
        if deadline < 0:
            raise ValueError(f"deadline must be at least 0 seconds, got {deadline}")
        self._transport = _Transport(
            endpoints,
            timeout=timeout,
            session=session,
            owns_session=owns_session,
            deadline=deadline,
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
        retry: Retry = Retry.SAFE,
        settled: Callable[[EtcdError], dict[str, Any] | None] | None = None,
    ) -> dict[str, Any]:
        return self._transport.request_json(
            method,
            _v2_path(key),
            params=params,
            form=form,
            key=_absolute_key(key),
            retry=retry,
            settled=settled,
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

        A plain write rides out an election; a conditional one (any ``prev_*``) that got
        no answer raises :class:`EtcdOutcomeUnknownError` instead of being sent again.
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
        retry = Retry.CONDITIONAL if params else Retry.SAFE
        reply = self._keys_request("PUT", key, params=params, form=form, retry=retry)
        node: dict[str, Any] = reply["node"]
        return node

    def mkdir(self, key: str, *, ttl: int | None = None) -> dict[str, Any]:
        """Create the directory ``key`` and return its node; error 105 if the key exists.

        Like ``os.mkdir``, an existing key is an error rather than silently kept, so a
        test that expects a fresh directory finds out when it is not. Sent again after an
        election, it takes a directory found there as its own: the try that got no answer
        may have made it.
        """
        form = {"dir": "true"}
        if ttl is not None:
            form["ttl"] = str(ttl)

        def made_by_an_earlier_try(error: EtcdError) -> dict[str, Any] | None:
            if error.error_code != NODE_EXIST:
                return None
            node = self.get_node(key)
            return {"node": node} if node.get("dir") else None

        reply = self._keys_request(
            "PUT", key, params={"prevExist": "false"}, form=form, settled=made_by_an_earlier_try
        )
        node: dict[str, Any] = reply["node"]
        return node

    def delete(self, key: str, *, recursive: bool = False, dir: bool = False) -> None:
        """Delete ``key``; a directory needs ``dir=True`` (empty) or ``recursive=True``.

        Sent again after an election, it takes "key not found" as done: the try that got
        no answer may have deleted it.
        """
        params: dict[str, str] = {}
        if recursive:
            params["recursive"] = "true"
        if dir:
            params["dir"] = "true"

        def deleted_by_an_earlier_try(error: EtcdError) -> dict[str, Any] | None:
            return {} if error.error_code == KEY_NOT_FOUND else None

        self._keys_request("DELETE", key, params=params, settled=deleted_by_an_earlier_try)

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

    def index(self, *, quorum: bool = True) -> int:
        """The v2 store's current etcd index (every v2 change adds one); by a quorum read
        unless ``quorum`` is False (the answering member's own, maybe behind)."""
        endpoint, response, body = self._transport.request(
            "GET", _v2_path("/"), params={"quorum": _flag(quorum)}
        )
        decode_reply(endpoint, response.status_code, body, key="/")
        return int(response.headers["X-Etcd-Index"])

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
        deadline: float = 0.0,
    ) -> None:
        self._transport = _Transport(endpoints, timeout=timeout, session=session, deadline=deadline)
        self.name = name

    @classmethod
    def _over(cls, transport: _Transport, name: str | None) -> EtcdV3Client:
        client = cls.__new__(cls)
        client._transport = transport
        client.name = name
        return client

    def _post(
        self, path: str, body: Mapping[str, Any], retry: Retry = Retry.NEVER
    ) -> dict[str, Any]:
        return self._transport.request_json("POST", path, json_body=body, retry=retry)

    def put(self, key: str, value: str, *, lease: int | None = None) -> int:
        """Write ``key`` (attached to ``lease`` if given) and return the new revision."""
        body = {"key": _b64(key), "value": _b64(value)}
        if lease is not None:
            # int64 fields travel as strings in the gateway's JSON.
            body["lease"] = str(lease)
        reply = self._post("/v3/kv/put", body, Retry.SAFE)
        return int(reply["header"]["revision"])

    def get(self, key: str) -> str | None:
        """The value of ``key``, or None when it does not exist."""
        reply = self._post("/v3/kv/range", {"key": _b64(key)}, Retry.SAFE)
        kvs = reply.get("kvs", [])
        return _unb64(kvs[0].get("value", "")) if kvs else None

    def get_prefix(self, prefix: str) -> dict[str, str]:
        """Every key starting with ``prefix`` and its value."""
        reply = self._post("/v3/kv/range", _prefix_range(prefix), Retry.SAFE)
        return {_unb64(kv["key"]): _unb64(kv.get("value", "")) for kv in reply.get("kvs", [])}

    def delete(self, key: str, *, prefix: bool = False) -> int:
        """Delete ``key`` (or every key starting with it) and return how many went (after an
        election ridden out, how many the last try deleted)."""
        body = _prefix_range(key) if prefix else {"key": _b64(key)}
        reply = self._post("/v3/kv/deleterange", body, Retry.SAFE)
        # The gateway leaves out zero-valued fields, so nothing deleted means no "deleted".
        return int(reply.get("deleted", 0))

    def count(self) -> int:
        """How many keys the whole keyspace holds."""
        body = {"key": _b64("\0"), "range_end": _b64("\0"), "count_only": True}
        reply = self._post("/v3/kv/range", body, Retry.SAFE)
        return int(reply.get("count", 0))

    def delete_all(self) -> int:
        """Delete every key of the whole keyspace and return how many went."""
        body = {"key": _b64("\0"), "range_end": _b64("\0")}
        reply = self._post("/v3/kv/deleterange", body, Retry.SAFE)
        return int(reply.get("deleted", 0))

    def lease(self, ttl: int) -> int:
        """Grant a lease of ``ttl`` seconds and return its id."""
        reply = self._post("/v3/lease/grant", {"TTL": str(ttl)})
        return int(reply["ID"])

    def revoke(self, lease_id: int) -> None:
        """Revoke a lease, deleting every key attached to it."""
        self._post("/v3/lease/revoke", {"ID": str(lease_id)})

    def leases(self) -> list[int]:
        """The ids of every lease the cluster holds."""
        reply = self._post("/v3/lease/leases", {}, Retry.SAFE)
        return [int(lease["ID"]) for lease in reply.get("leases", [])]

    def txn(
        self,
        compare: Sequence[Mapping[str, Any]],
        success: Sequence[Mapping[str, Any]] = (),
        failure: Sequence[Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        """A transaction, in the gateway's JSON (keys and values base64, as
        :func:`encode` gives them): ``success`` runs if every ``compare`` holds, else
        ``failure``. Returns etcd's reply (``succeeded``, ``responses``). Conditional: one
        that got no answer raises :class:`EtcdOutcomeUnknownError`."""
        body = {"compare": list(compare), "success": list(success), "failure": list(failure)}
        return self._post("/v3/kv/txn", body, Retry.CONDITIONAL)


def encode(text: str) -> str:
    """``text`` as the v3 gateway takes keys and values (base64 of its UTF-8)."""
    return _b64(text)
