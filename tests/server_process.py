"""The test side of a helper script's ``serve`` mode: one JSON line in, one line out.

``tests/child_training.py`` and ``tests/distributed_children.py`` each run as a server that
imports torch and trainwell once and then forks children per request; the tests talk to it
through this class.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading


class ServerProcess:
    """Starts ``python SCRIPT serve``, waits for its ``ready`` line, then exchanges lines with it.

    Args:
        script: The helper script's path.
        name: What the server is called in errors ("the training server").
        timeout: Seconds to wait for any line before the server is killed and TimeoutError raised.
    """

    def __init__(self, script: str, name: str, timeout: float) -> None:
        self.name = name
        self.timeout = timeout
        self.process = subprocess.Popen([sys.executable, script, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._lines: queue.Queue = queue.Queue()

        def read() -> None:
            for line in self.process.stdout:
                self._lines.put(line)
            self._lines.put(None)  # the server ended

        threading.Thread(target=read, daemon=True).start()
        assert self.readline() == "ready"

    def send(self, message: dict) -> None:
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def readline(self) -> str:
        try:
            line = self._lines.get(timeout=self.timeout)
        except queue.Empty:
            self.process.kill()
            raise TimeoutError(f"{self.name} said nothing for {self.timeout} s") from None
        if line is None:
            raise RuntimeError(f"{self.name} ended with status {self.process.wait()}")
        return line.strip()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)
