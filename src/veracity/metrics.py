"""The service's own Prometheus metrics, registered in a registry owned by one app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Latencies of a CPU classifier range from a few ms (small input, GPU) to seconds (overload).
_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5)


class ServiceMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._declare_images()
        self._declare_videos()
        self._declare_load()
        self._declare_store()
        self._declare_jobs()
        self.seen_before = Counter(
            "veracity_seen_before_lookups",
            "'Seen before' lookups by result: match (an earlier near-duplicate the caller may "
            "see) or none.",
            ["result"],
            registry=registry,
        )
        self.provenance = Counter(
            "veracity_provenance_reads",
            "Uploads' content credentials (C2PA), by state: none, valid, valid_untrusted, "
            "invalid, remote_manifest_not_fetched, unreadable.",
            ["state"],
            registry=registry,
        )
        self._declare_models()

    def _declare_images(self) -> None:
        registry = self.registry
        self.inference_seconds = Histogram(
            "veracity_inference_seconds",
            "Model forward-pass time per batch.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.preprocess_seconds = Histogram(
            "veracity_preprocess_seconds",
            "Decode and preprocessing time per image.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.images = Counter(
            "veracity_images_processed",
            "Images classified, by predicted label.",
            ["label"],
            registry=registry,
        )
        self.verdicts = Counter(
            "veracity_verdicts",
            "Verdicts answered, by verdict (real, fake, inconclusive).",
            ["verdict"],
            registry=registry,
        )
        self.reasons = Counter(
            "veracity_verdict_reasons",
            "Reasons given with verdicts, by code (out_of_distribution, near_threshold, "
            "low_resolution, heavy_compression, no_content, unstable).",
            ["reason"],
            registry=registry,
        )

    def _declare_videos(self) -> None:
        registry = self.registry
        self.videos = Counter(
            "veracity_videos",
            "Videos judged, by verdict (real, fake, inconclusive).",
            ["verdict"],
            registry=registry,
        )
        self.video_frames = Histogram(
            "veracity_video_frames",
            "Frames analysed per video.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=registry,
        )
        self.video_decode_seconds = Histogram(
            "veracity_video_decode_seconds",
            "Time spent seeking, decoding and preprocessing a video's sampled frames.",
            registry=registry,
        )

    def _declare_load(self) -> None:
        registry = self.registry
        self.rejected = Counter(
            "veracity_rejected_requests",
            "Requests rejected with a 4xx, by reason (error code).",
            ["reason"],
            registry=registry,
        )
        self.model_info = Gauge(
            "veracity_model_info",
            "The loaded model (value 1), labelled by name, version and architecture.",
            ["name", "version", "architecture", "weights_sha256"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "veracity_batch_size",
            "Requests served by each forward pass (micro-batching).",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64),
            registry=registry,
        )
        self.in_flight = Gauge(
            "veracity_inference_in_flight",
            "Requests admitted to the model service (decoding, queued or in a forward pass).",
            registry=registry,
        )
        self.queue_depth = Gauge(
            "veracity_queue_depth",
            "Admitted requests waiting to be decoded or for a forward pass.",
            registry=registry,
        )
        self.shed = Counter(
            "veracity_shed_requests",
            "Requests dropped without an answer from the model, by reason: overloaded "
            "(queue full), video_capacity, deadline_exceeded, client_disconnected, "
            "model_loading (the version asked for was still loading at the deadline).",
            ["reason"],
            registry=registry,
        )
        self.throttled = Counter(
            "veracity_throttled_requests",
            "Requests refused by a per-key limit, by key id and limit (rate or quota).",
            ["key_id", "limit"],
            registry=registry,
        )

    def _declare_store(self) -> None:
        registry = self.registry
        self.store_seconds = Histogram(
            "veracity_store_seconds",
            "Time of results-store operations, by operation (record, cache_lookup, get, "
            "list, feedback, delete), failed ones included.",
            ["operation"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )
        self.store_failures = Counter(
            "veracity_store_failures",
            "Results-store operations that failed or timed out, by operation. A failed "
            "record is a verdict answered with stored=false.",
            ["operation"],
            registry=registry,
        )
        self.cache_lookups = Counter(
            "veracity_cache_lookups",
            "Exact-cache lookups by result: hit (answered from the store, no inference) or miss.",
            ["result"],
            registry=registry,
        )

    def _declare_jobs(self) -> None:
        registry = self.registry
        self.jobs = Counter(
            "veracity_jobs",
            "Asynchronous jobs finished by this replica, by status (done, failed).",
            ["status"],
            registry=registry,
        )
        self.job_queue_depth = Gauge(
            "veracity_job_queue_depth",
            "Jobs in the shared queue by status (queued, running), as this replica last saw.",
            ["status"],
            registry=registry,
        )
        self.job_queue_age = Gauge(
            "veracity_job_queue_oldest_seconds",
            "Age of the oldest queued job (0: none waiting), as this replica last saw.",
            registry=registry,
        )
        self.webhooks = Counter(
            "veracity_webhooks",
            "Webhook delivery attempts by outcome: delivered, retry (failed, will retry), "
            "failed (given up).",
            ["outcome"],
            registry=registry,
        )

    def _declare_models(self) -> None:
        registry = self.registry
        self.version_inference_seconds = Histogram(
            "veracity_model_inference_seconds",
            "Forward-pass time by model and version (compare a canary with the serving one).",
            ["model", "version"],
            registry=registry,
        )
        self.version_requests = Counter(
            "veracity_model_requests",
            "Requests by the model and version that answered and its role: primary (the "
            "serving version), canary, pinned (the request named the version), or shadow "
            "(scored, not returned).",
            ["model", "version", "role"],
            registry=registry,
        )
        self.version_verdicts = Counter(
            "veracity_model_verdicts",
            "Image verdicts by model, version and verdict (the verdict mix per version).",
            ["model", "version", "verdict"],
            registry=registry,
        )
        self.shadow_agreement = Counter(
            "veracity_shadow_comparisons",
            "Shadow scores compared with the serving version's answer, by shadow model, "
            "version and outcome: agree or disagree (on the verdict), or dropped (not "
            "scored: the service was busy or the shadow failed).",
            ["model", "version", "outcome"],
            registry=registry,
        )
        self.model_memory = Gauge(
            "veracity_model_memory_bytes",
            "Memory held by each loaded model version (measured after loading).",
            ["model", "version"],
            registry=registry,
        )
        self.model_memory_budget = Gauge(
            "veracity_model_memory_budget_bytes",
            "The model memory budget (VERACITY_MODEL_MEMORY_MB).",
            registry=registry,
        )
        self.drift_score = Gauge(
            "veracity_drift_score",
            "Each signal's drift over the last window against the version's reference "
            "profile: the population stability index, or for reviewer_agreement the share "
            "of committed verdicts reviewers confirmed. NaN when the window is empty or too "
            "small to score (GET /admin/drift says which).",
            ["model", "version", "signal"],
            registry=registry,
        )
        self.drift_alert = Gauge(
            "veracity_drift_alert",
            "1 when any drift signal of the version is past its threshold, else 0.",
            ["model", "version"],
            registry=registry,
        )
        self.drift_refreshed = Gauge(
            "veracity_drift_refreshed_timestamp_seconds",
            "When this replica last recomputed the drift gauges (they are left as they were "
            "while the store or the model repository fails).",
            registry=registry,
        )
        self.drift_window_answers = Gauge(
            "veracity_drift_window_answers",
            "Image answers of the version the last drift window scored (all replicas; at "
            "most VERACITY_DRIFT_MAX_ANSWERS, the newest).",
            ["model", "version"],
            registry=registry,
        )
        self.model_lifecycle = Counter(
            "veracity_model_lifecycle",
            "Model lifecycle actions by action (load, unload, evict, promote, rollback, "
            "traffic, fallback: start-up served an older version because newer ones failed "
            "to load) and outcome (ok, failed).",
            ["action", "outcome"],
            registry=registry,
        )
