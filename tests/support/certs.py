"""A throwaway test CA and a server certificate for 127.0.0.1 / localhost (openssl, EC P-256)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def make_ca_and_server_cert(d: Path) -> tuple[Path, Path, Path]:
    """Write ``ca.key``/``ca.crt`` and a server ``server.key``/``server.crt`` signed by it into ``d``
    (subjectAltName IP:127.0.0.1, DNS:localhost; valid 2 days); returns (ca.crt, server.crt,
    server.key). Skips the test when openssl is not installed."""
    exe = shutil.which("openssl")
    if exe is None:
        pytest.skip("openssl not installed")

    def run(*args: str) -> None:
        subprocess.run([exe, *args], cwd=d, check=True, capture_output=True, timeout=60)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    run("req", "-x509", *ec, "-days", "2", "-subj", "/CN=test-ca", "-keyout", "ca.key", "-out", "ca.crt")
    run("req", *ec, "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run(
        "x509",
        *("-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial"),
        *("-days", "2", "-extfile", "ext.cnf", "-out", "server.crt"),
    )
    return d / "ca.crt", d / "server.crt", d / "server.key"
