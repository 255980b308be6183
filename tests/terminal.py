"""Run a command in a pseudo-terminal and read back what a person would see on the screen.

The command gets a real terminal (a pty of 120 x 40 characters), so it takes its terminal code
paths (progress bars, carriage returns, clearing); pyte, a VT100 emulator, then replays the bytes
to give the screen's lines, scrollback included, as the terminal shows them.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import termios
import time

COLUMNS, ROWS = 120, 40


def run_in_terminal(argv: list[str], env: dict[str, str] | None = None, timeout: float = 300) -> tuple[bytes, int]:
    """Run ``argv`` with its stdin, stdout and stderr on a new pty; return the bytes it wrote and its exit status."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its terminal is the pty
        try:
            os.execvpe(argv[0], argv, env if env is not None else os.environ)
        finally:
            os._exit(127)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    output, deadline = bytearray(), time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if fd in ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
        else:
            os.kill(pid, 9)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return bytes(output), os.waitstatus_to_exitcode(status)


def screen_lines(output: bytes) -> list[str]:
    """What the terminal shows after ``output``: the scrollback, then the screen, trailing blanks dropped."""
    import pyte

    screen = pyte.HistoryScreen(COLUMNS, ROWS, history=10_000)
    pyte.ByteStream(screen).feed(output)
    scrolled = ["".join(row[column].data for column in range(COLUMNS)) for row in screen.history.top]
    lines = [line.rstrip() for line in scrolled + list(screen.display)]
    while lines and not lines[-1]:
        lines.pop()
    return lines
