"""Node beside the tests: one long-lived process checks bodies as JavaScript re-serialises them."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

HERE = Path(__file__).parent


class JsRoundTrip:
    """`node js_roundtrip.mjs`, asked one body at a time over a pipe (not one process per body)."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            ["node", str(HERE / "js_roundtrip.mjs")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def rewritten(self, body: bytes) -> str | None:
        """None when JSON.stringify(JSON.parse(body)) gives `body` back; else what it gives."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(base64.b64encode(body) + b"\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline().decode().rstrip("\n")
        assert answer, "node stopped answering"
        return None if answer == "1" else answer[2:]

    def close(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        self.process.wait(10)
        self.process.stdout.close()
