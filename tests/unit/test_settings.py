"""Settings (rtt/settings.py): one declaration each, bounds checked, errors name the variable."""

import subprocess
import sys

import pytest

from rtt.settings import SettingsError, build_settings, settings_from


def test_defaults_are_valid():
    settings = build_settings()
    assert settings.engine == "local" and settings.heartbeat_seconds == 30.0


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RTT_HEARTBEAT_SECONDS", "-5"),
        ("RTT_HEARTBEAT_SECONDS", "0"),
        ("RTT_HEARTBEAT_SECONDS", "soon"),
        ("RTT_PORT", "70000"),
        ("RTT_ENGINE", "mongo"),
        ("RTT_MAX_CONNECTIONS", "0"),
        ("RTT_SOCKET_BUFFER_BYTES", "1"),
        ("RTT_MAX_JSON_DEPTH", "1000"),
        ("RTT_HTTP_HEADER_TIMEOUT_SECONDS", "-1"),
        ("RTT_REDIS_TIMEOUT_SECONDS", "nan"),
    ],
)
def test_a_bad_variable_is_refused_by_name(monkeypatch, variable, value):
    """Pins: RTT_HEARTBEAT_SECONDS=-5 was accepted and the node served; a malformed number
    raised a raw ValueError that named no variable."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as refused:
        settings_from(None)
    assert variable in str(refused.value)


def test_command_line_values_win_over_variables(monkeypatch):
    monkeypatch.setenv("RTT_PORT", "9000")
    monkeypatch.setenv("RTT_HEARTBEAT_SECONDS", "12.5")
    settings = settings_from(None, port=9100, host=None)
    assert settings.port == 9100 and settings.heartbeat_seconds == 12.5


def test_settings_that_contradict_each_other_are_refused():
    """A page reply may take at most half a socket's budget, so a reply alone never gets a
    reading client closed as slow."""
    with pytest.raises(SettingsError, match="reply_max_bytes"):
        build_settings(socket_buffer_bytes=256 * 1024, reply_max_bytes=200 * 1024)


def test_rtt_serve_exits_naming_the_variable(tmp_path):
    """`rtt serve` with a bad value stops at start-up with the message, not a traceback."""
    run = subprocess.run(
        [sys.executable, "-m", "rtt", "serve", "--port", "0"],
        env={"RTT_HEARTBEAT_SECONDS": "-5", "PATH": "", "RTT_DATABASE": str(tmp_path / "x.db")},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode != 0
    assert "RTT_HEARTBEAT_SECONDS" in run.stderr and "Traceback" not in run.stderr, run.stderr
