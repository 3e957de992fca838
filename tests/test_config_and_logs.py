"""Settings read the seed deployment's env names; logs never carry a bot token."""

from __future__ import annotations

import logging

import pytest

from stylebot.config import Settings
from stylebot.logs import REDACTED, RedactingFilter, redact, setup_logging
from stylebot.telegram import make_token

FAKE_TOKEN = make_token(123456789)


def test_seed_env_names_still_work(monkeypatch: pytest.MonkeyPatch) -> None:
    seed = {
        "API_TOKEN": FAKE_TOKEN,
        "WEBHOOK_HOST_ADDR": "https://bot.example.org",
        "PORT": "8443",
        "S3_BUCKET_WITH_RESULTS_NAME": "results-bucket",
        "S3_RESULTS_PREFIX": "nst",
        "AWS_ACCESS_KEY_ID": "AKIAFAKE",
        "AWS_SECRET_ACCESS_KEY": "secret-fake",
        "REGION_NAME": "eu-west-1",
        "ML_SERVER_HOST_ADDR": "http://10.0.0.5:8000",
        "DEFAULT_FAST_DEV_RUN": "true",
    }
    for name, value in seed.items():
        monkeypatch.setenv(name, value)
    s = Settings()
    assert s.api_token is not None and s.api_token.get_secret_value() == FAKE_TOKEN
    assert s.webhook_host_addr == "https://bot.example.org"
    assert s.port == 8443
    assert (s.s3_bucket, s.s3_prefix, s.region_name) == ("results-bucket", "nst", "eu-west-1")
    assert s.aws_secret_access_key is not None
    assert s.aws_secret_access_key.get_secret_value() == "secret-fake"
    assert s.ml_server_host_addr == "http://10.0.0.5:8000"
    assert s.default_fast_dev_run is True
    assert s.storage_backend == "s3"
    # Secrets stay masked in reprs, so a settings dump in a log cannot leak them.
    assert FAKE_TOKEN not in repr(s) and "secret-fake" not in repr(s)


def test_prefixed_names_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STYLEBOT_PORT", "9000")
    s = Settings()
    assert s.port == 9000
    assert s.storage_backend == "local"
    assert s.default_fast_dev_run is False


@pytest.mark.parametrize("bad", ["0", "70000", "eighty"])
def test_bad_port_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("PORT", bad)
    with pytest.raises(ValueError, match=r"(?i)port"):
        Settings()


def test_redact_removes_tokens_in_urls_and_text() -> None:
    url = f"https://api.telegram.org/bot{FAKE_TOKEN}/getUpdates"
    assert FAKE_TOKEN not in redact(url)
    assert REDACTED in redact(url)
    assert redact("job 42 done in 3.1 s") == "job 42 done in 3.1 s"
    assert "hunter2-secret" not in redact("password hunter2-secret", "hunter2-secret")


def test_log_records_and_tracebacks_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("stylebot.test")
    caplog.handler.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO):
        logger.info("calling %s", f"https://api.telegram.org/bot{FAKE_TOKEN}/sendMessage")
        try:
            raise RuntimeError(f"request to /bot{FAKE_TOKEN}/getFile failed")
        except RuntimeError:
            logger.exception("boom")
    assert FAKE_TOKEN not in caplog.text
    assert caplog.text.count(REDACTED) >= 2


def test_setup_logging_installs_the_filter_once() -> None:
    setup_logging("INFO")
    setup_logging("DEBUG")
    for handler in logging.getLogger().handlers:
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) <= 1


def test_every_configured_secret_is_redacted_whatever_its_length(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr")  # 4 characters: still a secret
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSHORT")
    monkeypatch.setenv("ML_SERVER_TOKEN", "tok-1234567890abcdef")
    settings = Settings()
    assert sorted(settings.secret_values()) == sorted(["s3cr", "AKIDSHORT", "tok-1234567890abcdef"])
    line = "S3 said no to AKIDSHORT with s3cr; ML token tok-1234567890abcdef"
    clean = redact(line, *settings.secret_values())
    for secret in settings.secret_values():
        assert secret not in clean
    assert clean.startswith("S3 said no to <redacted> with <redacted>")


def test_a_secret_inside_a_longer_secret_does_not_leave_a_tail() -> None:
    # Longest first: redacting "abc" first would leave "<redacted>def" and reveal the long one's tail.
    assert redact("key abcdef", "abc", "abcdef") == "key <redacted>"
