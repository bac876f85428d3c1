"""A loopback test server in the Falcon API's request and response shapes, for the `edr` and
`forensics` tests: hosts, containment, RTR sessions, `kill` and `get`, with switches for 429 with
Retry-After, 5xx, slow answers and expired tokens. It keeps what it was asked, to count effects.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from aiohttp import web
from pydantic import JsonValue

from soar.connectors import Secrets
from soar.connectors.testing import FaultSwitches

CLIENT_ID = "test-client-id"
TOKEN_PATH = "/oauth2/token"  # noqa: S105 - a path, not a password
JSON = dict[str, JsonValue]


def envelope(
    resources: list[JsonValue] | None = None,
    *,
    errors: list[JsonValue] | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """A Falcon JSON envelope: `{"meta": {...}, "resources": [...], "errors": [...]}`."""
    body: JSON = {
        "meta": {"query_time": 0.001, "powered_by": "soar-test", "trace_id": secrets.token_hex(8)},
        "resources": resources or [],
        "errors": errors or [],
    }
    return web.json_response(body, status=status, headers=headers)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return envelope(errors=[{"code": status, "message": message}], status=status, headers=headers)


@dataclass
class Device:
    device_id: str
    hostname: str
    status: str = "normal"
    processes: set[int] = field(default_factory=set)
    files: dict[str, bytes] = field(default_factory=dict)
    protected: set[int] = field(default_factory=set)  # `kill` is refused: access denied

    def record(self) -> JSON:
        return {
            "device_id": self.device_id,
            "hostname": self.hostname,
            "status": self.status,
            "platform_name": "Windows",
            "os_version": "Windows 11",
            "local_ip": "10.0.0.5",
            "last_seen": "2026-11-29T07:00:00Z",
        }


@dataclass
class Seen:
    """One request the server answered: what tests assert on."""

    method: str
    path: str
    query: dict[str, str]
    idempotency_key: str | None
    body: str


class FalconTestServer(FaultSwitches):
    """`async with FalconTestServer(client_secret=...) as falcon:` on 127.0.0.1, a free port.

    Switches (each counts down per answered API request, the token endpoint included only
    where said): `rate_limit(times, retry_after)`, `fail(times, status)`, `slow(seconds,
    times)` (see `FaultSwitches`), `expire_tokens()`; `pending_polls` makes RTR commands
    report `complete: false` that many times first.
    """

    def __init__(self, *, client_secret: str = "test-client-secret") -> None:  # noqa: S107
        super().__init__()
        self.client_id = CLIENT_ID
        self.client_secret = client_secret
        self.devices: dict[str, Device] = {}
        self.tokens: set[str] = set()
        self.token_requests = 0
        self.seen: list[Seen] = []
        self.effects: Counter[str] = Counter()  # "contain:<id>", "kill:<id>:<pid>", "get:..."
        self.pending_polls = 0
        self.expires_in = 1799
        self._sessions: dict[str, str] = {}
        self._session_files: dict[str, list[JSON]] = {}
        self._commands: dict[str, JSON] = {}
        self._polls: Counter[str] = Counter()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- set-up --------------------------------------------------------------------------

    def add_host(
        self,
        hostname: str,
        *,
        status: str = "normal",
        processes: set[int] | None = None,
        files: dict[str, bytes] | None = None,
    ) -> Device:
        device = Device(
            secrets.token_hex(16), hostname, status, set(processes or ()), dict(files or {})
        )
        self.devices[device.device_id] = device
        return device

    def host(self, hostname: str) -> Device:
        return next(d for d in self.devices.values() if d.hostname == hostname)

    @property
    def settings(self) -> dict[str, JsonValue]:
        return {"base_url": self.url, "poll_interval": 0.01}

    @property
    def secrets(self) -> Secrets:
        return Secrets({"client_id": self.client_id, "client_secret": self.client_secret})

    # -- switches ------------------------------------------------------------------------

    def expire_tokens(self) -> None:
        """Every token issued so far is refused from now on (401), as after expiry."""
        self.tokens.clear()

    def writes(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.method == "POST" and s.path == path]

    # -- life ----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post(TOKEN_PATH, self._token)
        app.router.add_get("/devices/queries/devices/v1", self._query_devices)
        app.router.add_get("/devices/entities/devices/v2", self._get_devices)
        app.router.add_post("/devices/entities/devices-actions/v2", self._device_action)
        app.router.add_post("/real-time-response/entities/sessions/v1", self._open_session)
        command = "/real-time-response/entities/active-responder-command/v1"
        app.router.add_post(command, self._run_command)
        app.router.add_get(command, self._command_status)
        app.router.add_get("/real-time-response/entities/file/v2", self._list_files)
        app.router.add_get(
            "/real-time-response/entities/extracted-file-contents/v1", self._file_contents
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- the API ---------------------------------------------------------------------------

    @web.middleware
    async def _middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        body = await request.text() if request.path != TOKEN_PATH else "<form>"
        self.seen.append(
            Seen(
                request.method,
                request.path,
                dict(request.query),
                request.headers.get("Idempotency-Key"),
                body,
            )
        )
        fault = await self.next_fault(request.path)
        if fault is not None and fault.retry_after is not None:
            return error(429, "API rate limit exceeded.", fault.headers)
        if fault is not None:
            return error(fault.status, "internal server error")
        if request.path != TOKEN_PATH:
            auth = request.headers.get("Authorization", "")
            if auth.removeprefix("Bearer ") not in self.tokens:
                return error(401, "access denied, invalid bearer token")
        return await handler(request)

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        form = await request.post()
        if form.get("client_id") != self.client_id or form.get("client_secret") != (
            self.client_secret
        ):
            return error(403, "Failed to issue access token - Not Authorized")
        token = secrets.token_urlsafe(24)
        self.tokens.add(token)
        return web.json_response(
            {"access_token": token, "token_type": "bearer", "expires_in": self.expires_in},
            status=201,
        )

    async def _query_devices(self, request: web.Request) -> web.Response:
        wanted = request.query.get("filter", "")
        if not (wanted.startswith("hostname:'") and wanted.endswith("'")):
            return error(400, f"invalid filter: {wanted!r}")
        name = wanted[len("hostname:'") : -1]
        return envelope([d.device_id for d in self.devices.values() if d.hostname == name])

    async def _get_devices(self, request: web.Request) -> web.Response:
        ids = request.query.getall("ids", [])
        found: list[JsonValue] = [self.devices[i].record() for i in ids if i in self.devices]
        if not found:
            return error(404, "no devices found")
        return envelope(found)

    async def _device_action(self, request: web.Request) -> web.Response:
        action = request.query.get("action_name")
        body = await request.json()
        ids = body.get("ids") if isinstance(body, dict) else None
        if action not in ("contain", "lift_containment") or not isinstance(ids, list):
            return error(400, f"invalid action_name {action!r} or body")
        done: list[JsonValue] = []
        for device_id in ids:
            device = self.devices.get(device_id)
            if device is None:
                return error(404, f"device {device_id} not found")
            device.status = "contained" if action == "contain" else "normal"
            self.effects[f"{action}:{device_id}"] += 1
            done.append({"id": device_id, "path": ""})
        return envelope(done, status=202)

    async def _open_session(self, request: web.Request) -> web.Response:
        body = await request.json()
        device_id = body.get("device_id") if isinstance(body, dict) else None
        if device_id not in self.devices:
            return error(404, "device not found")
        # as Falcon does, an open session on the device is returned rather than a second one
        session_id = next((s for s, d in self._sessions.items() if d == device_id), None)
        if session_id is None:
            session_id = secrets.token_hex(16)
            self._sessions[session_id] = device_id
            self._session_files[session_id] = []
        return envelope([{"session_id": session_id, "scripts": [], "existing_aid_sessions": 1}])

    async def _run_command(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not isinstance(body, dict):
            return error(400, "invalid body")
        session_id = body.get("session_id")
        if session_id not in self._sessions:
            return error(404, "session not found")
        device = self.devices[self._sessions[session_id]]
        base, _, argument = str(body.get("command_string", "")).partition(" ")
        if base != body.get("base_command") or base not in ("kill", "get"):
            return error(400, f"unsupported command {base!r}")
        request_id = secrets.token_hex(16)
        stderr = ""
        if base == "kill":
            pid = int(argument) if argument.isdigit() else -1
            if pid in device.protected:
                stderr = f"Access is denied: cannot kill process {pid}"
            elif pid in device.processes:
                device.processes.discard(pid)
                self.effects[f"kill:{device.device_id}:{pid}"] += 1
            else:
                stderr = f"Process {argument} not found"
        else:
            path = argument.strip('"')
            content = device.files.get(path)
            if content is None:
                stderr = f"File {path} not found"
            else:
                self.effects[f"get:{device.device_id}:{path}"] += 1
                self._session_files[session_id].append(
                    {
                        "name": path,
                        "sha256": hashlib.sha256(content).hexdigest(),
                        "size": len(content),
                        "cloud_request_id": request_id,
                        "session_id": session_id,
                    }
                )
        self._commands[request_id] = {
            "session_id": session_id,
            "base_command": base,
            "stdout": "" if stderr else "ok",
            "stderr": stderr,
        }
        return envelope(
            [{"cloud_request_id": request_id, "queued_command_offline": False}], status=201
        )

    async def _command_status(self, request: web.Request) -> web.Response:
        request_id = request.query.get("cloud_request_id", "")
        command = self._commands.get(request_id)
        if command is None:
            return error(404, "command not found")
        self._polls[request_id] += 1
        complete = self._polls[request_id] > self.pending_polls
        result: JSON = {**command, "complete": complete, "sequence_id": 0}
        if not complete:
            result["stdout"] = result["stderr"] = ""
        return envelope([result])

    async def _list_files(self, request: web.Request) -> web.Response:
        session_id = request.query.get("session_id", "")
        if session_id not in self._session_files:
            return error(404, "session not found")
        return envelope([dict(f) for f in self._session_files[session_id]])

    async def _file_contents(self, request: web.Request) -> web.StreamResponse:
        session_id = request.query.get("session_id", "")
        sha256 = request.query.get("sha256", "")
        for item in self._session_files.get(session_id, []):
            if item["sha256"] == sha256:
                device = self.devices[self._sessions[session_id]]
                # Falcon sends a 7z archive (password "infected"); this server sends the bytes
                content = device.files[str(item["name"])]
                return web.Response(body=content, content_type="application/x-7z-compressed")
        return error(404, "file not found")
