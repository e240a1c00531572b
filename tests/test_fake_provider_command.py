"""`python -m doxa.testing`: the fake provider as a command, for the no-LLM path of the docs.

Why a test of its own: the getting-started page tells a reader without a key to start it
and point `--base-url` at it; it must say where it listens, answer as the in-process fake
does, and stop cleanly on Ctrl-C and SIGTERM like any server a reader runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_it_says_where_it_listens_answers_and_stops(stop: signal.Signals) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    server = subprocess.Popen([sys.executable, "-m", "doxa.testing", "--port", "0"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("fake provider listening on http://127.0.0.1:"), line
        base_url = line.split()[-1]
        request = urllib.request.Request(
            f"{base_url}/chat/completions", method="POST",
            headers={"Content-Type": "application/json"},
            data=json.dumps({"model": "fake", "messages": [
                {"role": "user", "content": "<events>\n<event id=\"e1\" type=\"chat\">I "
                 "prefer short answers</event>\n</events>"}]}).encode())
        with urllib.request.urlopen(request, timeout=30) as answer:
            body = json.loads(answer.read())
        assert body["choices"][0]["message"]["role"] == "assistant"
        assert body["usage"]["prompt_tokens"] > 0
        server.send_signal(stop)
        assert server.wait(30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)
