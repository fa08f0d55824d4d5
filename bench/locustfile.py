"""Locust user for bench/overload.py: POST /infer at a fixed rate per user (open-loop load).

Configured by the orchestrator through environment variables; every request's outcome is
written to OVERLOAD_RECORD as JSON lines (one file per locust run) so the orchestrator can
compute accepted/shed counts and percentiles and match requests with the server's log by
X-Request-ID.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

from locust import FastHttpUser, constant_throughput, events, task

BODY = Path(os.environ["OVERLOAD_BODY"]).read_bytes()
# Trailing bytes after the JPEG's end marker, replaced per request so that no two uploads
# are the same (the exact cache would otherwise answer all but the first).
_MARKER = os.environ["OVERLOAD_UNIQUE_MARKER"].encode()
_AT = BODY.index(_MARKER)
HEADERS = {
    "X-API-Key": os.environ["OVERLOAD_API_KEY"],
    "Content-Type": f"multipart/form-data; boundary={os.environ['OVERLOAD_BOUNDARY']}",
}
RECORD = Path(os.environ["OVERLOAD_RECORD"])
_records: list[dict] = []


@events.request.add_listener
def _record(response_time, response, context, exception, start_time, **_) -> None:
    status = getattr(response, "status_code", 0) or 0
    _records.append(
        {
            "start": start_time,
            "ms": response_time,
            "status": status,
            "request_id": context.get("request_id"),
            "error": None if exception is None else type(exception).__name__,
        }
    )


@events.quitting.add_listener
def _write(**_) -> None:
    RECORD.write_text("\n".join(json.dumps(r) for r in _records) + "\n")


class Client(FastHttpUser):
    wait_time = constant_throughput(float(os.environ["OVERLOAD_USER_RPS"]))
    connection_timeout = 5.0
    network_timeout = 60.0

    @task
    def infer(self) -> None:
        request_id = uuid.uuid4().hex
        body = BODY[:_AT] + b"unique:" + request_id.encode() + BODY[_AT + len(_MARKER) :]
        with self.client.post(
            "/infer",
            data=body,
            headers=HEADERS | {"X-Request-ID": request_id},
            context={"request_id": request_id, "sent": time.time()},
            catch_response=True,
        ) as response:
            # Shedding (503) is a correct answer under overload; locust's own failure count
            # is not used, the orchestrator classifies every status itself.
            response.success()
