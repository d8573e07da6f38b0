"""Counters and histograms of the server, written in Prometheus' text exposition format."""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def label_text(labels: tuple[tuple[str, str], ...]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}" if labels else ""


class Histogram:
    """Cumulative bucket counts: `bucket[le]` counts observations `<= le`, plus sum and count."""

    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value

    def lines(self, name: str, labels: tuple[tuple[str, str], ...]) -> list[str]:
        out, running = [], 0
        for bound, count in zip((*self.buckets, "+Inf"), self.counts):
            running += count
            out.append(f"{name}_bucket{label_text((*labels, ('le', str(bound))))} {running}")
        out.append(f"{name}_sum{label_text(labels)} {self.total}")
        out.append(f"{name}_count{label_text(labels)} {running}")
        return out


class Metrics:
    """What `/metrics` shows: requests and errors by endpoint and status, samples scored and
    failed, micro-batch sizes, request latency, and the current queue depth."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.samples: dict[str, int] = defaultdict(int)
        self.batch_sizes = Histogram(BATCH_SIZE_BUCKETS)
        self.latency: dict[str, Histogram] = {}
        self.queue_depth = 0

    def request(self, endpoint: str, status: int, seconds: float | None = None) -> None:
        """Count a request; `seconds` (None for requests no endpoint handled) goes to the latency histogram."""
        with self.lock:
            self.requests[(endpoint, status)] += 1
            if seconds is not None:
                self.latency.setdefault(endpoint, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def batch(self, size: int, failed: int) -> None:
        with self.lock:
            self.batch_sizes.observe(size)
            self.samples["ok"] += size - failed
            self.samples["error"] += failed

    def text(self) -> str:
        with self.lock:
            lines = [
                "# HELP tokenreward_requests_total HTTP requests answered, by endpoint and status.",
                "# TYPE tokenreward_requests_total counter",
            ]
            for (endpoint, status), n in sorted(self.requests.items()):
                lines.append(f'tokenreward_requests_total{{endpoint="{endpoint}",status="{status}"}} {n}')
            lines += [
                "# HELP tokenreward_request_errors_total Requests answered with a 4xx or 5xx status.",
                "# TYPE tokenreward_request_errors_total counter",
            ]
            for kind in ("4xx", "5xx"):
                n = sum(c for (_, status), c in self.requests.items() if str(status)[0] == kind[0])
                lines.append(f'tokenreward_request_errors_total{{class="{kind}"}} {n}')
            lines += [
                "# HELP tokenreward_samples_total Samples scored, by outcome.",
                "# TYPE tokenreward_samples_total counter",
            ]
            for outcome in ("ok", "error"):
                lines.append(f'tokenreward_samples_total{{outcome="{outcome}"}} {self.samples[outcome]}')
            lines += [
                "# HELP tokenreward_batch_size Samples per micro-batch handed to the rewarder.",
                "# TYPE tokenreward_batch_size histogram",
                *self.batch_sizes.lines("tokenreward_batch_size", ()),
            ]
            lines += [
                "# HELP tokenreward_request_seconds Request latency, by endpoint.",
                "# TYPE tokenreward_request_seconds histogram",
            ]
            for endpoint, histogram in sorted(self.latency.items()):
                lines += histogram.lines("tokenreward_request_seconds", (("endpoint", endpoint),))
            lines += [
                "# HELP tokenreward_queue_depth Samples waiting for a micro-batch.",
                "# TYPE tokenreward_queue_depth gauge",
                f"tokenreward_queue_depth {self.queue_depth}",
            ]
        return "\n".join(lines) + "\n"


def parse_histogram(text: str, name: str) -> dict[str, int]:
    """Per-bucket (not cumulative) counts of histogram `name` in exposition text, keyed by `le`."""
    cumulative = []
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            cumulative.append((bound, int(float(line.rsplit(" ", 1)[1]))))
    return {bound: count - (cumulative[k - 1][1] if k else 0) for k, (bound, count) in enumerate(cumulative)}
