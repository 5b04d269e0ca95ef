"""D2: admin tokens. ``name:token`` with ':' as the only separator; base64 tokens with '='
padding work as themselves; blank tokens refuse to start; exact (constant-time) matching."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.api.auth import ADMIN_NAME_PATTERN, AdminTokenError, parse_admin_tokens
from cloud.api.container import CloudServices
from cloud.fleet.channel import RecordingChannel
from tests.cloud.controller.conftest import LiveServer, free_port, make_settings

ROOT = Path(__file__).resolve().parents[2]
# Printable, no whitespace: what a bearer token can be.
TOKEN_CHARS = st.characters(min_codepoint=33, max_codepoint=126)
tokens = st.text(TOKEN_CHARS, min_size=1, max_size=64)
names = st.from_regex(ADMIN_NAME_PATTERN, fullmatch=True)


@given(name=names, token=tokens)
def test_named_entry_keeps_everything_after_the_first_colon(name: str, token: str) -> None:
    assert parse_admin_tokens([f"{name}:{token}"]) == {token: name}


@given(token=tokens.filter(lambda t: ":" not in t))
def test_bare_token_is_itself(token: str) -> None:
    (parsed,) = parse_admin_tokens([token]).items()
    assert parsed[0] == token and parsed[1].startswith("admin-")


@given(raw=st.binary(min_size=1, max_size=48), name=names)
def test_base64_tokens_with_padding_are_kept_whole(raw: bytes, name: str) -> None:
    for token in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
        assert parse_admin_tokens([token]).keys() == {token}
        assert parse_admin_tokens([f"{name}:{token}"]) == {token: name}


@given(entries=st.lists(st.tuples(names, tokens), max_size=6, unique_by=(lambda e: e[0], lambda e: e[1])))
def test_parser_is_a_faithful_mapping(entries: list[tuple[str, str]]) -> None:
    assert parse_admin_tokens([f"{n}:{t}" for n, t in entries]) == {t: n for n, t in entries}


@given(blank=st.text(st.sampled_from(" \t\n\r"), max_size=4), name=names)
@settings(max_examples=30)
def test_blank_tokens_are_refused(blank: str, name: str) -> None:
    for entry in (blank, f"{name}:{blank}"):
        if entry == "":
            entry = ":"  # an empty bare entry
        with pytest.raises(AdminTokenError):
            parse_admin_tokens([entry])


@pytest.mark.parametrize(
    "entry", ["alice:", "alice: ", "bad name:tok", ":tok", "tok en", "alice:a\tb", "é:x"]
)
def test_bad_entries_refuse_with_one_line(entry: str) -> None:
    with pytest.raises(AdminTokenError) as err:
        parse_admin_tokens([entry])
    assert "\n" not in str(err.value)


def test_same_token_twice_is_refused() -> None:
    with pytest.raises(AdminTokenError, match="same token"):
        parse_admin_tokens(["a:x1", "b:x1"])


def test_base64_admin_token_works_and_equals_sign_is_no_password(tmp_path: Path) -> None:
    """The finding: with ``name=token`` parsing, a token ending in '==' made '=' the password."""
    token = base64.b64encode(b"\xfb\xff" * 8 + b"k").decode()
    assert token.endswith("=")
    svc = CloudServices.build(
        make_settings(tmp_path, admin_tokens=[token, f"ops:{token[:-1]}x="]), channel=RecordingChannel()
    )
    try:
        with LiveServer(svc) as live:

            def create(bearer: str, name: str) -> int:
                r = httpx.post(
                    f"{live.url}/api/v1/models",
                    json={"name": name},
                    headers={"Authorization": f"Bearer {bearer}"},
                )
                return r.status_code

            assert create(token, "m-b64") == 201
            assert create(f"{token[:-1]}x=", "m-named") == 201
            for guess in ("=", "==", token.split("=")[0], token[:-1]):
                assert create(guess, "m-guess") == 401, guess
    finally:
        svc.close()


def test_cloud_serve_refuses_blank_admin_token_with_one_line(tmp_path: Path) -> None:
    env = {
        "AUTOGLM_CLOUD_ADMIN_TOKENS": '["alice:  "]',
        "AUTOGLM_CLOUD_DATA_DIR": str(tmp_path),
        "AUTOGLM_CLOUD_MQTT_ENABLED": "false",
        "AUTOGLM_CLOUD_HTTP_PORT": str(free_port()),
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
    }
    p = subprocess.run(
        [sys.executable, "-m", "autoglm", "cloud", "serve"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode != 0
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "admin token 'alice' is empty" in lines[0], p.stderr
