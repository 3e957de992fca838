"""All settings in one place (pydantic-settings).

Every field reads ``STYLEBOT_<NAME>``; the env names of the seed deployment (``API_TOKEN``,
``WEBHOOK_HOST_ADDR``, ``PORT``, ``S3_BUCKET_WITH_RESULTS_NAME``, ...) keep working as aliases.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from platformdirs import user_cache_dir, user_data_dir
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _env(name: str, *seed_names: str) -> AliasChoices:
    return AliasChoices(f"STYLEBOT_{name}", *seed_names)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    # --- Telegram bot -------------------------------------------------------------------------
    api_token: SecretStr | None = Field(None, validation_alias=_env("API_TOKEN", "API_TOKEN"))
    telegram_api_base: str | None = Field(
        None,
        validation_alias=_env("TELEGRAM_API_BASE"),
        description="Bot API server base URL (e.g. the local Telegram); default: api.telegram.org",
    )
    webhook_host_addr: str | None = Field(
        None,
        validation_alias=_env("WEBHOOK_HOST_ADDR", "WEBHOOK_HOST_ADDR"),
        description="Public base URL for webhook mode; unset means long polling",
    )
    port: int = Field(8080, validation_alias=_env("PORT", "PORT"), ge=1, le=65535)
    webhook_secret: SecretStr | None = Field(None, validation_alias=_env("WEBHOOK_SECRET"))
    webhook_path: str = Field("/telegram/webhook", validation_alias=_env("WEBHOOK_PATH"))
    webhook_delete_on_shutdown: bool = Field(
        False,
        validation_alias=_env("WEBHOOK_DELETE_ON_SHUTDOWN"),
        description="Remove the webhook when the bot stops (else Telegram keeps queueing updates)",
    )
    redis_url: str | None = Field(None, validation_alias=_env("REDIS_URL", "REDIS_URL"))
    refine: bool = Field(
        True,
        validation_alias=_env("REFINE"),
        description="on|off: after the instant result, refine it with live previews (users can change it "
        "in /settings)",
    )

    # --- ML server ---------------------------------------------------------------------------
    ml_server_host_addr: str | None = Field(
        None,
        validation_alias=_env("ML_SERVER_HOST_ADDR", "ML_SERVER_HOST_ADDR"),
        description="Base URL of a remote ML server; unset means the in-process worker",
    )
    ml_server_token: SecretStr | None = Field(
        None, validation_alias=_env("ML_SERVER_TOKEN", "ML_SERVER_TOKEN")
    )
    default_fast_dev_run: bool = Field(
        False, validation_alias=_env("DEFAULT_FAST_DEV_RUN", "DEFAULT_FAST_DEV_RUN")
    )
    executor: Literal["direct", "papermill"] = Field("direct", validation_alias=_env("EXECUTOR"))
    workers: int = Field(1, validation_alias=_env("WORKERS"), ge=1, le=64)
    queue_size: int = Field(100, validation_alias=_env("QUEUE_SIZE"), ge=1)
    per_owner_limit: int = Field(1, validation_alias=_env("PER_OWNER_LIMIT"), ge=1)
    allow_caller_fast_dev_run: bool = Field(
        False,
        validation_alias=_env("ALLOW_CALLER_FAST_DEV_RUN"),
        description="Honour params.fast_dev_run from callers (tests, debugging); else it is ignored",
    )
    # Ray backend (`stylebot server --backend ray`); RAY_ADDRESS picks an existing cluster.
    ray_num_cpus: int | None = Field(
        None,
        validation_alias=_env("RAY_NUM_CPUS"),
        ge=1,
        description="CPUs of a locally started Ray cluster (default: all)",
    )
    ray_object_store_mb: int | None = Field(None, validation_alias=_env("RAY_OBJECT_STORE_MB"), ge=75)
    ray_max_replicas: int = Field(2, validation_alias=_env("RAY_MAX_REPLICAS"), ge=1, le=256)
    cyclegan_max_batch: int = Field(8, validation_alias=_env("CYCLEGAN_MAX_BATCH"), ge=1, le=64)

    # --- Storage -----------------------------------------------------------------------------
    storage_dir: Path = Field(
        Path(user_data_dir("stylebot")) / "storage", validation_alias=_env("STORAGE_DIR")
    )
    bot_state_dir: Path | None = Field(
        None,
        validation_alias=_env("BOT_STATE_DIR"),
        description="the bot's pending deliveries and sessions without Redis (default: next to STORAGE_DIR)",
    )
    s3_bucket: str | None = Field(None, validation_alias=_env("S3_BUCKET", "S3_BUCKET_WITH_RESULTS_NAME"))
    s3_prefix: str = Field("stylebot", validation_alias=_env("S3_PREFIX", "S3_RESULTS_PREFIX"))
    s3_endpoint_url: str | None = Field(None, validation_alias=_env("S3_ENDPOINT_URL"))
    aws_access_key_id: SecretStr | None = Field(
        None, validation_alias=_env("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID")
    )
    aws_secret_access_key: SecretStr | None = Field(
        None, validation_alias=_env("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY")
    )
    region_name: str = Field("us-east-1", validation_alias=_env("REGION_NAME", "REGION_NAME"))
    retention_hours: float = Field(24.0, validation_alias=_env("RETENTION_HOURS"), gt=0)
    failed_notebook_retention_hours: float = Field(
        24.0 * 14, validation_alias=_env("FAILED_NOTEBOOK_RETENTION_HOURS"), gt=0
    )

    # --- Models and compute ------------------------------------------------------------------
    models_dir: Path = Field(Path(user_cache_dir("stylebot")) / "models", validation_alias=_env("MODELS_DIR"))
    backbone: Literal["auto", "vgg19", "vgg16"] = Field("auto", validation_alias=_env("BACKBONE"))
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", validation_alias=_env("DEVICE"))
    # Weight sources (overridable for mirrors and for tests against a local HTTP server).
    vgg19_url: str = Field(
        "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth", validation_alias=_env("VGG19_URL")
    )
    cyclegan_base_url: str = Field(
        "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models",
        validation_alias=_env("CYCLEGAN_BASE_URL"),
    )

    # --- Input limits ------------------------------------------------------------------------
    max_upload_bytes: int = Field(20 * 1024 * 1024, validation_alias=_env("MAX_UPLOAD_BYTES"), gt=0)
    max_input_pixels: int = Field(50_000_000, validation_alias=_env("MAX_INPUT_PIXELS"), gt=0)

    log_level: str = Field("INFO", validation_alias=_env("LOG_LEVEL", "LOG_LEVEL"))

    @property
    def storage_backend(self) -> Literal["local", "s3"]:
        return "s3" if self.s3_bucket else "local"

    def secret_values(self) -> list[str]:
        """Every configured secret in clear text, for log redaction; never print these."""
        return [
            field.get_secret_value()
            for field in (
                self.api_token,
                self.webhook_secret,
                self.ml_server_token,
                self.aws_access_key_id,
                self.aws_secret_access_key,
            )
            if field is not None and field.get_secret_value()
        ]


@lru_cache
def get_settings() -> Settings:
    return Settings()
