"""A real Mosquitto broker for tests: free port, generated conf in a tmp dir, stop/restart/kill.

Usage::

    from tests.support.mosquitto import MosquittoBroker, mosquitto_broker  # fixture

    broker = MosquittoBroker(tmp_path)            # anonymous, persistence on
    broker.start(); broker.host, broker.port
    broker.restart()                               # same port, same persistence file
    broker.kill()                                  # SIGKILL (a crash), then .start() again
    broker.stop()

``passwords={"user": "secret"}`` writes a password file with ``mosquitto_passwd`` and turns
anonymous access off; ``acl="..."`` writes that text as the ACL file; ``conf_extra`` is
appended to the generated conf (e.g. ``"max_queued_messages 10\\n"``). Tests skip with a reason
when the ``mosquitto`` binary is missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")


def mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((c for c in MOSQUITTO_CANDIDATES if os.access(c, os.X_OK)), None)


def mosquitto_passwd_binary() -> str | None:
    return shutil.which("mosquitto_passwd") or next(
        (
            c
            for c in ("/usr/bin/mosquitto_passwd", "/usr/local/bin/mosquitto_passwd")
            if os.access(c, os.X_OK)
        ),
        None,
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def write_password_file(path: Path, passwords: dict[str, str]) -> Path:
    """Hash ``passwords`` into a Mosquitto password file with ``mosquitto_passwd -b``."""
    tool = mosquitto_passwd_binary()
    if tool is None:
        pytest.skip("mosquitto_passwd not installed (apt-get install mosquitto)")
    path.write_text("")
    for user, pw in passwords.items():
        subprocess.run([tool, "-b", str(path), user, pw], check=True, capture_output=True, timeout=30)
    return path


class MosquittoBroker:
    def __init__(
        self,
        tmp_path: Path,
        conf_extra: str = "",
        acl: str | None = None,
        passwords: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        persistence: bool = True,
    ) -> None:
        binary = mosquitto_binary()
        if binary is None:
            pytest.skip("mosquitto binary not installed (apt-get install mosquitto)")
        self.binary = binary
        self.dir = Path(tmp_path) / f"mosquitto-{id(self):x}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port or free_port(host)
        self.conf_extra = conf_extra
        self.acl = acl
        self.passwords = passwords
        self.persistence = persistence
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "mosquitto.log"
        self.conf_path = self._write_conf()

    def _write_conf(self) -> Path:
        lines = [
            f"listener {self.port} {self.host}",
            "set_tcp_nodelay true",
            "max_inflight_messages 1000",
            "max_queued_messages 100000",
            f"log_dest file {self.dir / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # Started as root, Mosquitto drops to user "mosquitto", which cannot read our tmp dir.
            lines.append("user root")
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.dir}/", "autosave_interval 1"]
        if self.passwords is not None:
            pw = write_password_file(self.dir / "passwd", self.passwords)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        if self.acl is not None:
            acl_path = self.dir / "acl"
            acl_path.write_text(self.acl)
            lines.append(f"acl_file {acl_path}")
        conf = self.dir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n" + self.conf_extra + "\n")
        return conf

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> MosquittoBroker:
        if self.running:
            return self
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf_path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {err}\n{log}")
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=0.2):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.host}:{self.port} within {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Mosquitto saves its persistence file) and wait."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL: a crash; whatever was not autosaved is lost, as in production."""
        self._signal(signal.SIGKILL, timeout)

    def _signal(self, sig: signal.Signals, timeout: float) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def restart(self, *, hard: bool = False) -> MosquittoBroker:
        (self.kill if hard else self.stop)()
        return self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def mosquitto_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """An anonymous broker on a free port, stopped after the test."""
    broker = MosquittoBroker(tmp_path).start()
    try:
        yield broker
    finally:
        broker.stop()
