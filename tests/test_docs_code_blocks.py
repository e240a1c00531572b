"""Every `python` and `bash` block of the README and of docs/ runs, as a reader would run it.

Why: a getting-started page whose third command fails loses the reader at the third
command, and nothing else notices. So each page is run top to bottom, in a scratch
directory with no API key and no DOXA_* settings, its blocks in order and sharing state
(the shell's variables across `bash` blocks, one namespace across `python` blocks), the way
a reader pastes them into one terminal and one interpreter.

A block says how it runs with an HTML comment on the line above it:
- nothing: it runs, offline, and must succeed;
- `<!-- doctest: skip (why) -->`: it is not run, and the reason is required (it installs
  packages, needs a key, a network or a server doxa does not start);
- `<!-- doctest: background -->`: a `bash` server started for the rest of the page (the
  reader's "in a second terminal"), ready when its `--port` accepts connections, stopped
  when the page ends;
- `<!-- doctest: fake-provider -->`: a block written for a hosted OpenAI model, run with
  OPENAI_BASE_URL pointing at doxa's fake provider, so its code is checked for real.
Other languages (`console` transcripts, `json`, `yaml`, `text`, `ts`) are shown, not run.
Ports a page names (8799 for the fake provider, 8080 for `doxa serve`) are swapped for
free ones, so a run never collides with a server already listening.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
RUNNABLE = ("python", "bash")
SHOWN = ("console", "json", "yaml", "text", "ts", "toml", "jsonl", "http")
MARKER = re.compile(r"^<!--\s*doctest:\s*(?P<mode>[a-z-]+)\s*(?:\((?P<why>[^)]*)\))?\s*-->\s*$")
DOCUMENTED_PORTS = ("8799", "8080")
SETTINGS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL",
            "OLLAMA_HOST", "DOXA_DB", "DOXA_MODEL", "DOXA_API_KEYS", "DOXA_API_KEYS_FILE")
LINKED = ("fixtures", "evals", "prompts", "scripts")
"""Repository folders the pages name by relative path, linked into the scratch directory."""
BLOCK_TIMEOUT_S = 600


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    language: str
    mode: str  # run | skip | background | fake-provider
    why: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks_of(page: Path) -> list[Block]:
    """The page's fenced blocks, each with the mode its preceding comment gives."""
    tokens = MarkdownIt("commonmark").parse(page.read_text(encoding="utf-8"))
    found: list[Block] = []
    previous: Any = None
    for token in tokens:
        if token.type == "fence":
            language = token.info.split()[0] if token.info.strip() else ""
            mode, why = "run", ""
            if previous is not None and previous.type == "html_block":
                match = MARKER.match(previous.content.strip())
                if match:
                    mode, why = match["mode"], (match["why"] or "").strip()
            line = token.map[0] + 1 if token.map else 0
            found.append(Block(page, line, language, mode, why, token.content))
        if token.type not in ("inline",) and token.nesting >= 0:
            previous = token
    return found


ALL_BLOCKS = [block for page in PAGES for block in blocks_of(page)]
PAGES_TO_RUN = [page for page in PAGES
                if any(b.language in RUNNABLE and b.mode != "skip" for b in blocks_of(page))]


def test_every_block_names_its_language_and_a_known_mode() -> None:
    problems = []
    for block in ALL_BLOCKS:
        if block.language not in RUNNABLE + SHOWN:
            problems.append(f"{block.where}: language {block.language!r}: use one of "
                            f"{', '.join(RUNNABLE + SHOWN)}")
        if block.mode not in ("run", "skip", "background", "fake-provider"):
            problems.append(f"{block.where}: unknown doctest mode {block.mode!r}")
        if block.mode == "skip" and not block.why:
            problems.append(f"{block.where}: a skipped block says why: "
                            "<!-- doctest: skip (reason) -->")
        if block.mode == "background" and (block.language != "bash"
                                           or not re.search(r"--port \d+", block.code)):
            problems.append(f"{block.where}: a background block is bash naming --port N")
        if block.mode == "fake-provider" and block.language != "python":
            problems.append(f"{block.where}: fake-provider blocks are python")
    assert not problems, "\n".join(problems)


def test_the_pages_run_blocks_at_all() -> None:
    """Guards the harness itself: a parser change that found no blocks would pass quietly."""
    run = [b for b in ALL_BLOCKS if b.language in RUNNABLE and b.mode != "skip"]
    assert len(run) >= 20 and len(PAGES_TO_RUN) >= 8, [b.where for b in run]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, server: subprocess.Popen[str], block: Block) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            output = server.stdout.read() if server.stdout else ""
            pytest.fail(f"{block.where}: the background command exited {server.returncode}:\n"
                        f"{output}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    pytest.fail(f"{block.where}: nothing listened on port {port} within 180 s")


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(20)


class Shell:
    """One bash for the page, as a reader's terminal: variables carry from block to block.

    Each block is sourced from a file (so a command reading standard input reads
    /dev/null, never the next block) under `set -eo pipefail`; a failing command ends the
    shell, and the block is reported with what it printed."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"], cwd=cwd, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(self.process.stdout,), daemon=True).start()
        self._send("set -eo pipefail")

    def _pump(self, stream: TextIO | None) -> None:
        assert stream is not None
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)

    def _send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def run(self, block: Block, code: str) -> None:
        script = self.cwd / f".doctest-{block.line}.sh"
        script.write_text(code, encoding="utf-8")
        done = f"__doctest_done_{block.line}__"
        # On a line of its own: a block's last output need not end with a newline.
        self._send(f"source {script.name} </dev/null; printf '\\n%s\\n' {done}")
        printed: list[str] = []
        deadline = time.monotonic() + BLOCK_TIMEOUT_S
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"{block.where}: still running after {BLOCK_TIMEOUT_S} s:\n"
                            + "".join(printed))
            if line is None:
                self.process.wait(10)
                pytest.fail(f"{block.where}: failed (exit {self.process.returncode}):\n"
                            f"{block.code}\n--- it printed:\n" + "".join(printed))
            if line.strip() == done:
                return
            printed.append(line)

    def close(self) -> None:
        if self.process.poll() is None and self.process.stdin is not None:
            self.process.stdin.close()
        _stop(self.process)


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A reader's fresh terminal: the repository's folders at hand, no key, no settings,
    this checkout's doxa first on the path, and the scratch directory as the cwd."""
    for name in LINKED:
        (tmp_path / name).symlink_to(ROOT / name)
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])])
    env["COLUMNS"] = "100"
    monkeypatch.chdir(tmp_path)
    yield env


@pytest.mark.parametrize("page", PAGES_TO_RUN, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_page_runs(page: Path, scratch: dict[str, str], tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    ports = {documented: str(_free_port()) for documented in DOCUMENTED_PORTS}

    def localised(code: str) -> str:
        for documented, free in ports.items():
            code = code.replace(documented, free)
        return code

    servers: list[subprocess.Popen[str]] = []
    shell: Shell | None = None
    namespace: dict[str, Any] = {"__name__": "__doctest__"}
    try:
        for block in blocks_of(page):
            if block.language not in RUNNABLE or block.mode == "skip":
                continue
            code = localised(block.code)
            if block.mode == "background":
                server = subprocess.Popen(
                    ["bash", "-c", "exec " + code.strip()], cwd=tmp_path, env=scratch,
                    text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                    start_new_session=True)
                servers.append(server)
                port = re.search(r"--port (\d+)", code)
                assert port is not None
                _wait_for_port(int(port[1]), server, block)
            elif block.language == "bash":
                shell = shell or Shell(tmp_path, scratch)
                shell.run(block, code)
            else:
                _run_python(block, code, namespace, monkeypatch)
    finally:
        if shell is not None:
            shell.close()
        for server in servers:
            _stop(server)


def _run_python(block: Block, code: str, namespace: dict[str, Any],
                monkeypatch: pytest.MonkeyPatch) -> None:
    # doxa's core is async, so a page may `await engine.ingest(...)` at the top level, as
    # in Jupyter or `python -m asyncio`: such a block runs as one coroutine.
    compiled = compile(code, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)

    def execute() -> None:
        result = eval(compiled, namespace)
        if inspect.iscoroutine(result):
            asyncio.run(result)

    if block.mode != "fake-provider":
        execute()
        return
    from doxa.testing.fake_provider import FakeProvider, serving_in_thread

    with serving_in_thread(FakeProvider()) as fake, monkeypatch.context() as patched:
        patched.setenv("OPENAI_BASE_URL", fake.base_url)
        patched.setenv("OPENAI_API_KEY", "sk-doctest")
        execute()
        assert fake.stats.requests > 0, f"{block.where}: the block never called the model"


def test_a_python_block_may_await_at_the_top_level(monkeypatch: pytest.MonkeyPatch) -> None:
    namespace: dict[str, Any] = {}
    block = Block(ROOT / "README.md", 1, "python", "run", "",
                  "import asyncio\nawait asyncio.sleep(0)\nanswer = 42\n")
    _run_python(block, block.code, namespace, monkeypatch)
    assert namespace["answer"] == 42
