"""Service configuration, read from the environment (prefix RNNSERVE_) by pydantic-settings.

Nothing reads these at import time: `create_app(settings)` receives one instance.
"""
from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RNNSERVE_", extra="ignore")

    models_dir: Path = Field(REPOSITORY_ROOT / "weights", description="one sub-directory per model")
    default_language_model: str | None = Field(None, description="model id used when a request names none")
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda, cuda:N")

    # Input limits: every size a request controls is capped.
    max_body_bytes: int = Field(1_000_000, description="largest JSON request body")
    max_prompt_chars: int = 20_000
    max_prompt_tokens: int = 4_096
    max_new_tokens: int = 1_024
    max_n: int = 16
    max_score_texts: int = 256
    max_score_tokens: int = 4_096
    max_stop_sequences: int = 8

    request_timeout_s: float = Field(60.0, description="a request still running after this answers 504")
    cache_max_entries: int = Field(10_000, description="in-process result cache size (0 disables)")
    log_level: str = "INFO"
