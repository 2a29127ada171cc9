"""Helpers for tests that start a server process."""

import subprocess


def stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    """Terminate ``proc`` and wait for it; kill it if it has not ended after ``timeout`` s."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
