"""A private redis-server on a free port, for tests that stop and restart Redis
(an outage) without touching the shared one on 6379."""

import shutil
import socket
import subprocess
import sys
import time

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis(port: int):
    """Starts redis-server on port and waits until it accepts connections; returns the process."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("private redis-server did not start")


def run_through_an_outage(script: str, env: dict, cwd, port: int, redis) -> tuple[list, list, list, str]:
    """Runs `script` (a Python program that prints "READY <phase>", waits for "go" on
    stdin and prints "RESULT <phase> ..." for the phases up, down and back) while the
    private Redis on `port` (the process `redis`) is up, stopped, then started again
    on the same address. Returns the three RESULT lines split into words, and all output."""
    app = subprocess.Popen(
        [sys.executable, "-c", script],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=str(cwd),
    )
    lines = []

    def next_line(prefix):
        while True:
            line = app.stdout.readline()
            assert line, "app process ended early:\n" + "".join(lines)
            lines.append(line)
            if line.startswith(prefix):
                return line.split()

    def phase():
        next_line("READY")
        app.stdin.write("go\n")
        app.stdin.flush()
        return next_line("RESULT")

    try:
        up = phase()
        next_line("READY")
        redis.terminate()  # Redis stops while the app keeps running ...
        redis.wait(timeout=10)
        app.stdin.write("go\n")
        app.stdin.flush()
        down = next_line("RESULT")
        redis = start_redis(port)  # ... and comes back on the same address, empty
        back = phase()
        app.wait(timeout=60)
    finally:
        app.kill()
        redis.kill()
    return up, down, back, "".join(lines)
