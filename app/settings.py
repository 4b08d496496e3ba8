"""Service configuration, read from the environment (prefix RNNSERVE_) by pydantic-settings.

Nothing reads these at import time: `create_app(settings)` receives one instance.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.engine.base import BatchSettings

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_MODELS_DIR = REPOSITORY_ROOT / "weights"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RNNSERVE_", extra="ignore")

    models_dir: str | Path = Field(
        "", description="your model directories, several separated by ':' (each holds one sub-directory per model); "
                        "served next to the shipped models, and a model here hides a shipped one with the same id")
    serve_shipped_models: bool = Field(True, description="also serve the models shipped in the repository's weights/")
    default_language_model: str | None = Field("wikitext2-lstm", description="model id used when a request names none (the first by id when this one is not loaded)")
    default_rescoring_model: str | None = Field(
        "recogniser-lm", description="model id /v1/rescore uses when a request names none: one trained on text in a "
                                     "recogniser's form (lower case, no punctuation); default_language_model when it is not loaded")
    nltk_data: Path | None = Field(None, description="directory with NLTK's punkt_tab tables (else NLTK_DATA, then shared/data/nltk_data beside the checkout)")
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda, cuda:N")
    precision: Literal["auto", "fp32", "int8"] = Field(
        "auto", description="what models compute in: auto (each model's config.json serving_precision, fp32 when it records "
                            "none), fp32, or int8 (recurrent and output layers quantized at load; CPU workers only, a GPU "
                            "serves fp32); see docs/quantization.md")
    model_precision: dict[str, Literal["auto", "fp32", "int8"]] = Field(
        default_factory=dict, description='per model id, overriding precision; JSON, e.g. {"wikitext2-lstm": "int8"}')

    # Input limits: every size a request controls is capped.
    max_body_bytes: int = Field(1_000_000, description="largest JSON request body")
    max_prompt_chars: int = 20_000
    max_prompt_tokens: int = 4_096
    max_new_tokens: int = 1_024
    max_n: int = 16
    max_score_texts: int = 256
    max_score_tokens: int = 4_096
    max_stop_sequences: int = 8
    max_caption_tokens: int = Field(64, description="words per caption")
    max_beam_size: int = Field(16, description="beam width of /v1/caption")
    max_rescore_utterances: int = Field(64, description="utterances per /v1/rescore request")
    max_rescore_hypotheses: int = Field(1000, description="hypotheses per utterance")
    max_rescore_hypotheses_total: int = Field(4096, description="hypotheses per /v1/rescore request")
    max_lattices: int = Field(16, description="lattices per /v1/rescore/lattice request")
    max_lattice_nodes: int = Field(10_000, description="nodes per lattice (its N= line)")
    max_lattice_links: int = Field(50_000, description="links per lattice (its L= line)")
    max_lattice_states: int = Field(100_000, description="expanded (node, history) states per lattice while rescoring")
    max_image_bytes: int = Field(10_000_000, description="largest /v1/caption upload")
    max_image_pixels: int = Field(40_000_000, description="decoded pixels per image (decompression-bomb guard)")
    default_captioner: str | None = Field(None, description="captioner used when a request names none")

    request_timeout_s: float = Field(60.0, description="a request still running after this answers 504")

    # Engine: workers and batching.
    worker_mode: Literal["process", "thread"] = Field("process", description="workers as child processes (restartable) or threads")
    workers_per_device: int = Field(1, ge=1)
    worker_threads: int | None = Field(None, description="torch CPU threads per worker (default: torch's)")
    single_thread_rows: int | None = Field(None, ge=0, description="a CPU worker runs a generation step on one thread when it has at "
                                           "most this many live sequences and none waiting to join (0: always worker_threads; default: "
                                           "4 for a worker of at most 2 threads, where it was measured, else 0)")
    max_batch_size: int = Field(128, ge=1, description="live sequences per generation step")
    score_max_batch_size: int = Field(64, ge=1, description="sequences per scoring batch")
    score_max_wait_ms: float = Field(5.0, ge=0, description="how long a score request may wait for others to batch with")
    caption_max_batch_size: int = Field(64, ge=1, description="images per caption batch (one encoder pass)")
    caption_max_wait_ms: float = Field(5.0, ge=0, description="how long a caption request may wait for others to batch with")
    prompt_cache_mb: float = Field(32.0, ge=0, description="per model on each worker (in device memory): recurrent states after prompts "
                                   "and answers read, so a repeated or continued prompt reads only what is new (0: off)")
    max_in_flight_per_worker: int = Field(512, ge=1, description="requests a worker may hold; beyond that 429")
    startup_timeout_s: float = 120.0

    # Cache: Redis when redis_url is set, else in process.
    redis_url: str | None = Field(None, description="redis://host:port/db; shared cache and rate limits")
    redis_timeout_s: float = Field(0.05, description="Redis socket timeout: a slow Redis is skipped, not waited for")
    cache_ttl_s: int = Field(7 * 24 * 3600, description="lifetime of a cached result in Redis")
    cache_max_entries: int = Field(10_000, description="in-process result cache size (0 disables)")

    # Sessions (/v1/sessions): states kept between requests.
    session_memory_mb: float = Field(256.0, ge=0, description="session states kept in each replica's memory (least recently used "
                                     "out; with Redis they stay there until they expire)")
    session_ttl_s: int = Field(3600, ge=1, description="a session is forgotten this long after its last change")
    max_sessions_per_key: int = Field(4096, ge=1, description="live sessions per API key (or in all, without keys)")
    max_session_mb_per_key: float = Field(64.0, gt=0, description="state megabytes of an API key's live sessions")
    max_session_items: int = Field(1024, ge=1, description="sessions per /v1/sessions/batch request")
    max_session_candidates: int = Field(256, ge=1, description="candidates per next-token query")
    max_session_top_k: int = Field(100, ge=1, description="top_k of a next-token query")
    session_max_batch_size: int = Field(512, ge=1, description="session operations the workers run as one batch")
    session_max_wait_ms: float = Field(2.0, ge=0, description="how long a session operation may wait for others to batch with")

    # Access: optional bearer API keys, per-key rate limits.
    api_keys: str = Field("", description="comma-separated keys; empty means no authentication")
    rate_limit_per_second: float = Field(0.0, ge=0, description="requests per second per key (0: unlimited)")
    rate_limit_burst: int = Field(20, ge=1, description="token-bucket size")

    log_level: str = "INFO"
    log_json: bool = Field(True, description="one JSON object per log line")

    def model_directories(self) -> list[Path]:
        """Where models are looked for, in order: the user's directories, then the shipped ones."""
        listed = [Path(part) for part in str(self.models_dir).split(os.pathsep) if part] if self.models_dir else []
        return listed + ([SHIPPED_MODELS_DIR] if self.serve_shipped_models else [])

    def batching(self, tasks: dict) -> dict[str, BatchSettings]:
        """Each batch task's batch size and wait: the settings `<task>_max_batch_size` and
        `<task>_max_wait_ms` where they exist (score, caption), the task's own default otherwise."""
        batching = {}
        for name, task in tasks.items():
            size = getattr(self, f"{name}_max_batch_size", None)
            wait_ms = getattr(self, f"{name}_max_wait_ms", None)
            default = task.default_batching
            batching[name] = BatchSettings(default.max_items if size is None else size,
                                           default.max_wait_s if wait_ms is None else wait_ms / 1000)
        return batching

    def precision_of(self, model_id: str) -> str:
        """The precision setting that applies to a model: its own, else the service's."""
        return self.model_precision.get(model_id, self.precision)

    def api_key_set(self) -> frozenset[str]:
        return frozenset(key.strip() for key in self.api_keys.split(",") if key.strip())
