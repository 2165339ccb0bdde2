"""Fixtures for the Palisade end-to-end tests.

A session-scoped fixture starts the real `palisade` binary (path from `PALISADE_BIN`, default
`target/debug/palisade`) on a free port with a fresh data directory and a pack from
`tests/e2e/packs/`, waits for `GET /readyz`, and stops it at the end. Tests create their own
agent keys and use unique task texts and agent names, so they do not depend on each other or
on their order.

Development mode: with `PALISADE_E2E_BASE_URL=http://127.0.0.1:PORT/v1` no gateway is started
and the clients talk to that URL directly (e.g. the `mock-upstream` binary); tests marked
`gateway` (keys, policies, audit) are skipped there.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKS = Path(__file__).resolve().parent / "packs"
READY_TIMEOUT_S = 60.0
DEV_BASE_URL = os.environ.get("PALISADE_E2E_BASE_URL")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")

# The clients talk to 127.0.0.1 only: never through a proxy a CI environment may set.
os.environ["NO_PROXY"] = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"]))


def palisade_bin() -> Path:
    raw = os.environ.get("PALISADE_BIN", "target/debug/palisade")
    path = Path(raw)
    return path if path.is_absolute() else REPO_ROOT / path


def unique(prefix: str) -> str:
    """A readable name that no other test uses (agent names, tasks)."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def mock_reply(text: str, to: str = "user", model: str = "gpt-4o") -> str:
    """The built-in mock provider's answer (crates/provider-clients/src/mock.rs): the last
    message's `name` (or `user`) and the first 60 characters of its text."""
    return f"Mock reply from {model} to {to}: {text[:60]}"


def words(text: str) -> int:
    """Whitespace-separated words: the mock provider's token count."""
    return len(text.split())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Gateway:
    """A running gateway (or, in development mode, a bare upstream)."""

    base_url: str
    root_url: str
    data_dir: Path | None = None
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    _keys: dict[str, str] = field(default_factory=dict)

    @property
    def is_gateway(self) -> bool:
        return self.proc is not None

    def log_tail(self, lines: int = 60) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no gateway log)"
        text = ANSI_ESCAPE.sub("", self.log_path.read_text(errors="replace")).splitlines()
        return "\n".join(text[-lines:])

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Runs `palisade <args> --data-dir <this gateway's data dir>`."""
        assert self.data_dir is not None, "no data dir in development mode"
        return subprocess.run(
            [str(palisade_bin()), *args, "--data-dir", str(self.data_dir)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def create_key(self, agent: str, role: str | None = None, workflow: str | None = None) -> str:
        """`palisade keys create`: returns the key printed alone on stdout."""
        if not self.is_gateway:
            return "dev-mode-key"
        args = ["keys", "create", "--agent", agent]
        if role is not None:
            args += ["--role", role]
        if workflow is not None:
            args += ["--workflow", workflow]
        out = self.cli(*args)
        assert out.returncode == 0, f"keys create failed ({out.returncode}): {out.stderr}"
        lines = out.stdout.splitlines()
        assert len(lines) == 1, f"keys create must print the key alone on stdout, got {out.stdout!r}"
        key = lines[0].strip()
        assert key, "keys create printed an empty key"
        self._keys[agent] = key
        return key

    def audit_events(self) -> list[dict[str, Any]]:
        """`palisade audit export`: every event of the store, parsed from JSONL."""
        out = self.cli("audit", "export")
        assert out.returncode == 0, f"audit export failed ({out.returncode}): {out.stderr}"
        events = []
        for i, line in enumerate(out.stdout.splitlines()):
            if line.strip():
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError as e:
                    pytest.fail(f"audit export line {i + 1} is not JSON ({e}): {line[:200]}")
        return events


def _start_gateway(pack: Path, tmp: Path, name: str) -> Gateway:
    binary = palisade_bin()
    if not binary.exists():
        pytest.fail(
            f"palisade binary not found at {binary}: build it with `cargo build --bin palisade` "
            "or set PALISADE_BIN"
        )
    data_dir = tmp / f"{name}-data"
    log_path = tmp / f"{name}.log"
    last_error = ""
    # The free port can be taken between our probe and the gateway's bind: retry a few times.
    for _attempt in range(3):
        port = _free_port()
        root = f"http://127.0.0.1:{port}"
        log = open(log_path, "ab")
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env["NO_COLOR"] = "1"
        env.pop("OPENAI_API_KEY", None)
        proc = subprocess.Popen(
            [
                str(binary),
                "gateway",
                "run",
                "--policy-config",
                str(pack),
                "--listen",
                f"127.0.0.1:{port}",
                "--data-dir",
                str(data_dir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO_ROOT,
            env=env,
        )
        log.close()
        gw = Gateway(base_url=f"{root}/v1", root_url=root, data_dir=data_dir, log_path=log_path, proc=proc)
        # Readiness probe: bounded poll of /readyz until 200 or the process exits.
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                last_error = f"gateway exited with code {proc.returncode}:\n{gw.log_tail()}"
                break
            try:
                r = httpx.get(f"{root}/readyz", timeout=1.0)
                if r.status_code == 200:
                    return gw
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        else:
            _stop(gw)
            pytest.fail(f"gateway not ready within {READY_TIMEOUT_S}s:\n{gw.log_tail()}")
        if "address" not in last_error.lower() or "in use" not in last_error.lower():
            break
    pytest.fail(f"could not start the gateway with {pack.name}: {last_error}")


def _stop(gw: Gateway) -> None:
    if gw.proc is None or gw.proc.poll() is not None:
        return
    gw.proc.send_signal(signal.SIGTERM)
    try:
        gw.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        gw.proc.kill()
        gw.proc.wait(timeout=5)


def _gateway_fixture(pack_name: str, name: str, tmp_path_factory: pytest.TempPathFactory):
    if DEV_BASE_URL:
        base = DEV_BASE_URL.rstrip("/")
        yield Gateway(base_url=base, root_url=base.removesuffix("/v1"))
        return
    gw = _start_gateway(PACKS / pack_name, tmp_path_factory.mktemp(name), name)
    try:
        yield gw
    finally:
        _stop(gw)
        code = gw.proc.returncode if gw.proc else None
        if code not in (0, None):
            print(f"\n[{name}] gateway exited with {code}; last log lines:\n{gw.log_tail()}")



def inline_pack_gateway(pack_text: str, name: str, tmp_path_factory: pytest.TempPathFactory):
    """Generator for a module fixture: a gateway on a pack a test module writes inline
    (skipped against a dev gateway, which runs its own pack)."""
    if DEV_BASE_URL:
        pytest.skip("needs the Palisade gateway")
    tmp = tmp_path_factory.mktemp(name)
    pack = Path(tmp) / f"{name}.yaml"
    pack.write_text(pack_text)
    gw = _start_gateway(pack, tmp, f"{name}-gateway")
    try:
        yield gw
    finally:
        _stop(gw)


def autogen_client(gw: Gateway, key: str, model: str = "gpt-4o"):
    """AutoGen's OpenAI model client pointed at the gateway with an agent's key."""
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    return OpenAIChatCompletionClient(model=model, base_url=gw.base_url, api_key=key, max_retries=0, timeout=30.0)

@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory):
    """The gateway with `packs/e2e.yaml`: keys required, blocks answered with 403."""
    yield from _gateway_fixture("e2e.yaml", "gateway", tmp_path_factory)


@pytest.fixture(scope="session")
def completion_block_gateway(tmp_path_factory: pytest.TempPathFactory):
    """The gateway with `packs/e2e-completion-block.yaml`: blocks answered as completions."""
    yield from _gateway_fixture("e2e-completion-block.yaml", "completion-block-gateway", tmp_path_factory)


@pytest.fixture(scope="session")
def stream_guard_gateway(tmp_path_factory: pytest.TempPathFactory):
    """The gateway with `packs/e2e-stream-guard.yaml`: output secrets blocked mid-stream."""
    yield from _gateway_fixture("e2e-stream-guard.yaml", "stream-guard-gateway", tmp_path_factory)


@pytest.fixture(autouse=True)
def _skip_gateway_only_in_dev_mode(request: pytest.FixtureRequest):
    if DEV_BASE_URL and request.node.get_closest_marker("gateway"):
        pytest.skip("needs the Palisade gateway (PALISADE_E2E_BASE_URL points at a bare upstream)")


@pytest.fixture
def agent_key(gateway: Gateway) -> str:
    """A fresh key for a fresh agent of this test."""
    return gateway.create_key(unique("sdk_agent"), role="tester")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """On a failure, attach the tail of the gateway's log to the report."""
    report = yield
    if report.when == "call" and report.failed:
        for name in ("gateway", "completion_block_gateway", "stream_guard_gateway"):
            gw = getattr(item, "funcargs", {}).get(name)
            if isinstance(gw, Gateway) and gw.is_gateway:
                report.sections.append((f"{name} log (last lines)", gw.log_tail(40)))
    return report
