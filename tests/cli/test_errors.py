"""Errors a user makes before any work starts: a bad config, a bad command line, a database that
cannot be reached. Each is one line on stderr naming the fix, with exit code 1 (2 for usage), and
never a traceback or a password. None of these loads a model."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.cli.helpers import (
    SENTINEL_PASSWORD,
    assert_one_error_line,
    cli_env,
    config_document,
    run_cli,
    start_cli,
    to_toml,
    wait_for,
    write_config,
)

# Nothing listens on port 1: a config error must be found before this is tried, and a command
# that wrongly got past the config would fail here rather than touch anything.
UNREACHABLE = f"postgresql://ek:{SENTINEL_PASSWORD}@127.0.0.1:1/db"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path, UNREACHABLE)


def coverage_with(tmp_path: Path, env: dict[str, str], text: str):
    config = write_config(tmp_path, text)
    return run_cli(["coverage", "--config", str(config)], env, timeout=30)


def test_unknown_model_key_exits_1_naming_the_closest_key(tmp_path, env):
    text = to_toml(config_document()).replace("batch_size = 16", "batch_sise = 16")

    result = coverage_with(tmp_path, env, text)

    line = assert_one_error_line(result, 1, "embedkeeper: error: config:")
    assert line == (
        'embedkeeper: error: config: unknown key "batch_sise" in [[models]] "minilm"; '
        'did you mean "batch_size"?'
    )
    assert result.stdout == ""


def test_unknown_section_exits_1_naming_the_closest_section(tmp_path, env):
    text = to_toml(config_document()).replace("[schedule]", "[schedul]")

    result = coverage_with(tmp_path, env, text)

    line = assert_one_error_line(result, 1, "embedkeeper: error: config:")
    assert '"schedul"' in line
    assert 'did you mean "schedule"?' in line


def test_bad_duration_exits_1_showing_a_valid_example(tmp_path, env):
    text = to_toml(config_document(schedule={"interval": "5 minutes"}))

    result = coverage_with(tmp_path, env, text)

    line = assert_one_error_line(result, 1, "embedkeeper: error: config:")
    assert line == (
        'embedkeeper: error: config: [schedule] interval must be a duration such as "30s" or "5m",'
        " not '5 minutes'"
    )


def test_interval_and_cron_together_exit_1(tmp_path, env):
    text = to_toml(config_document(schedule={"interval": "5m", "cron": "*/5 * * * *"}))

    result = coverage_with(tmp_path, env, text)

    line = assert_one_error_line(result, 1, "embedkeeper: error: config:")
    assert line == "embedkeeper: error: config: [schedule] takes interval or cron, not both"


def test_missing_config_file_exits_1_naming_the_path(tmp_path, env):
    missing = tmp_path / "nowhere" / "embedkeeper.toml"

    result = run_cli(["coverage", "--config", str(missing)], env, timeout=30)

    line = assert_one_error_line(result, 1, "embedkeeper: error: config:")
    assert line == f"embedkeeper: error: config: file {missing} not found (given with --config)"


def test_invalid_toml_exits_1_naming_the_file(tmp_path, env):
    result = coverage_with(tmp_path, env, '[source]\ntable = "public.docs\n')

    line = assert_one_error_line(result, 1, "embedkeeper: error: config:")
    assert f"{tmp_path / 'embedkeeper.toml'} is not valid TOML" in line


def test_unknown_command_is_a_usage_error_exit_2(tmp_path, env):
    result = run_cli(["frobnicate"], env, timeout=30)

    assert result.returncode == 2
    assert "invalid choice: 'frobnicate'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("limit", "message"),
    [("0", "must be a positive integer"), ("-3", "must be a positive integer"), ("ten", "ten")],
)
def test_backfill_limit_not_positive_is_a_usage_error_exit_2(tmp_path, env, limit, message):
    config = write_config(tmp_path)

    result = run_cli(["backfill", "--limit", limit, "--config", str(config)], env, timeout=30)

    assert result.returncode == 2
    assert "argument --limit" in result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["coverage", "migrate", "backfill", "failures list"])
def test_unreachable_database_exits_1_and_masks_the_password(tmp_path, env, command):
    config = write_config(tmp_path)

    result = run_cli([*command.split(), "--config", str(config)], env, timeout=60)

    line = assert_one_error_line(result, 1, "embedkeeper: error: cannot connect to")
    assert "postgresql://ek:***@127.0.0.1:1/db" in line
    assert "check [database] url" in line
    assert SENTINEL_PASSWORD not in result.stdout + result.stderr


def test_unreachable_database_from_the_config_file_is_masked_with_verbose(tmp_path):
    """-v prints the traceback too: that must not show the password either."""
    config = write_config(tmp_path, database={"url": UNREACHABLE})

    result = run_cli(["-v", "coverage", "--config", str(config)], cli_env(tmp_path, None), 60)

    assert result.returncode == 1
    assert "Traceback" in result.stderr  # -v asks for it
    assert "embedkeeper: error: cannot connect to postgresql://ek:***@127.0.0.1:1/db" in (
        result.stderr
    )
    assert SENTINEL_PASSWORD not in result.stdout + result.stderr


def test_password_with_an_unencoded_at_sign_is_refused_and_never_appears(tmp_path):
    url = "postgresql://ek:S3ntinel@Leaked0rd@127.0.0.1:1/db"
    config = write_config(tmp_path)

    result = run_cli(["coverage", "--config", str(config)], cli_env(tmp_path, url), 60)

    assert result.returncode == 1
    assert "write an '@' in the user name or password as %40" in result.stderr
    assert "Leaked0rd" not in result.stdout + result.stderr
    assert "S3ntinel" not in result.stdout + result.stderr


def test_daemon_waits_for_an_unreachable_database_and_stops_cleanly_on_sigterm(tmp_path, env):
    config = write_config(tmp_path)
    child = start_cli(["run", "--config", str(config)], env, tmp_path / "logs")
    try:
        wait_for(
            lambda: "database_unavailable attempt=2" in child.output()[1],
            30,
            "two database_unavailable retries",
            alive=child,
        )
        proc = Path("/proc") / str(child.pid)
        title = (proc / "cmdline").read_bytes() + (proc / "comm").read_bytes()
        assert SENTINEL_PASSWORD.encode() not in title  # the process title never shows it
        child.process.send_signal(signal.SIGTERM)
        code = child.wait(30)
    finally:
        child.stop()

    stdout, stderr = child.output()
    assert code == 0, stderr
    assert "stopping signal=SIGTERM" in stderr
    assert "postgresql://ek:***@127.0.0.1:1/db" in stderr
    assert SENTINEL_PASSWORD not in stdout + stderr
    assert "Traceback" not in stderr
