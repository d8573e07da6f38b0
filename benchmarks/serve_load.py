"""Load test of `tokenreward serve` on the loopback (run by hand; prints a JSON summary).

1. Load: `--clients` concurrent clients send single-sample OpenRLHF `/get_reward` requests
   for the first `--count` responses of a world split, each response once. Every answer must
   come back and equal in-process scoring of the same responses (max abs difference printed);
   p50 / p99 latency; served throughput as a ratio to ONE in-process `rewarder.score` call
   over the same responses (timed just before each load phase, so a busy machine slows both
   alike; `--repeats` pairs, the median ratio reported). Target: ratio >= 0.8. The CPU time per
   response of both (the server's read from `/proc`) shows the cost of serving apart from the
   machine's load. The micro-batch size histogram comes from the server's `/metrics`.
2. Abuse: `--malformed` bad requests of ten kinds (100 each by default) shuffled among
   `--good` good ones, sent by the same clients: every bad one must get a 4xx, every good one
   the in-process answer, and `/health` must answer ok afterwards.
3. SIGTERM: the server must exit 0.

    python benchmarks/serve_load.py --world WORLD_DIR          # small world: about a minute
    python benchmarks/serve_load.py --world WORLD_DIR --max-batch 128 --max-wait-ms 10
    python benchmarks/serve_load.py --world WORLD_DIR --reward-model BIGGER_RM_DIR   # same tokenizer

The server runs as `tokenreward serve` in a subprocess (same thread settings as this process).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter

import httpx

from tokenreward.rewards import build_rewarder, with_reward_model
from tokenreward.serve.metrics import parse_histogram
from tokenreward.world import open_world

GOOD = "good"


def malformed_kinds(prompt: str, response: str) -> dict[str, tuple[object, int]]:
    """Ten kinds of bad `/get_reward` bodies -> (body, expected status); bytes are sent raw."""
    query = prompt + response
    return {
        "invalid_json": (b'{"query": ["' + query.encode()[:20], 400),
        "not_an_object": ([query], 400),
        "missing_query": ({"prompts": [prompt]}, 400),
        "query_not_array": ({"query": query, "prompts": [prompt]}, 400),
        "query_item_not_string": ({"query": [7], "prompts": [prompt]}, 400),
        "length_mismatch": ({"query": [query], "prompts": [prompt, prompt]}, 400),
        "query_without_prompt": ({"query": ["?" + query], "prompts": [prompt]}, 400),
        "empty_response": ({"query": [prompt], "prompts": [prompt]}, 400),
        "over_long_response": ({"query": [query + " word" * 600], "prompts": [prompt]}, 422),
        "unknown_option": ({"query": [query], "prompts": [prompt], "options": {"no_such_option": 1}}, 400),
    }


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    flags = f"serve --rewarder {args.rewarder} --world {args.world} --port 0 --max-batch {args.max_batch} "
    flags += f"--max-wait-ms {args.max_wait_ms} --batch-size {args.batch_size}"
    if args.reward_model:
        flags += f" --reward-model {args.reward_model}"
    command = [
        sys.executable,
        "-m",
        "tokenreward.cli",
        *flags.split(),
        *sum((["--option", o] for o in args.option), []),
    ]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    line = proc.stderr.readline()
    if "ready on " not in line:
        proc.kill()
        raise SystemExit(f"the server did not start: {line}{proc.stderr.read()}")
    return proc, line.split("ready on ")[1].strip()


class Connection:
    """A minimal keep-alive HTTP/1.1 client connection (asyncio streams), so that the clients'
    own CPU cost stays small next to the server's on a shared machine."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
        head += f"Content-Length: {len(body)}\r\n\r\n"
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        length, closing = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
            closing |= name.lower() == "connection" and value.strip().lower() == "close"
        payload = await self.reader.readexactly(length)
        if closing:
            self.writer.close()
            self.writer = None
        return int(status_line.split()[1]), payload


async def send_all(url: str, jobs: list[tuple[str, object]], clients: int) -> list[tuple[int, dict, float]]:
    """Send every `(kind, body)` job to `url` through `clients` concurrent keep-alive clients;
    returns `(status, answer, seconds)` per job, in job order."""
    target = httpx.URL(url)
    results: list[tuple[int, dict, float] | None] = [None] * len(jobs)
    cursor = iter(range(len(jobs)))

    async def client() -> None:
        connection = Connection(target.host, target.port)
        for k in cursor:
            body = jobs[k][1]
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            start = time.perf_counter()
            status, payload = await connection.post(target.path, raw)
            results[k] = (status, json.loads(payload), time.perf_counter() - start)
        if connection.writer is not None:
            connection.writer.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return results


def good_body(prompt: str, response: str) -> dict:
    """OpenRLHF's payload for one sample (openrlhf/utils/agent.py, `_fetch_rewards_via_http`)."""
    return {"query": [prompt + response], "prompts": [prompt], "labels": [None]}


def max_difference(answer: dict, expected: dict) -> float:
    """Largest absolute difference between a `/get_reward` answer and an in-process record."""
    if answer["token_offsets"][0] != expected["offsets"]:
        return float("inf")
    diffs = [abs(a - b) for a, b in zip(answer["token_rewards"][0], expected["rewards"])]
    return max([abs(answer["rewards"][0] - expected["sequence_reward"]), *diffs])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (Linux `/proc`; NaN elsewhere)."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def batch_histogram(before: str, after: str) -> dict[str, int]:
    first, second = parse_histogram(before, "tokenreward_batch_size"), parse_histogram(after, "tokenreward_batch_size")
    return {f"<={le}": second[le] - first.get(le, 0) for le in second if second[le] - first.get(le, 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", default=None, help="world folder (default: $TOKENREWARD_WORLD or the cached world)")
    parser.add_argument("--reward-model", default=None, help="a reward model folder instead of the world's")
    parser.add_argument("--split", default="reward", help="world split whose responses are sent (default: reward)")
    parser.add_argument("--count", type=int, default=1024, help="responses sent in the load phase (default: 1024)")
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients (default: 64)")
    parser.add_argument("--rewarder", default="red")
    parser.add_argument(
        "--option", action="append", default=["keep_sum=true"], help="rewarder option (default: keep_sum=true)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=8, help="pairs per forward pass, server and in-process (default: 8)"
    )
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--malformed", type=int, default=1000, help="bad requests in the abuse phase (default: 1000)")
    parser.add_argument("--good", type=int, default=500, help="good requests mixed among them (default: 500)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="load phases, each after an in-process timing (default: 3)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    world = open_world(args.world)
    args.world = world.root
    rows = world.responses(args.split)[: args.count]
    if len(rows) < args.count:
        raise SystemExit(f"split {args.split!r} has {len(rows)} responses, fewer than --count {args.count}")
    prompts, responses = [r["prompt"] for r in rows], [r["response"] for r in rows]
    options = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.option)}
    resources = dict(world.resources())
    if args.reward_model:
        resources = with_reward_model(resources, args.reward_model)
    rewarder = build_rewarder(args.rewarder, **resources, **options, batch_size=args.batch_size)

    def in_process() -> tuple[float, list[dict]]:
        """One `score` call over all the responses: (seconds, records); its CPU seconds to `cpu`."""
        start, cpu_start = time.perf_counter(), time.process_time()
        records = rewarder.score(prompts, responses).records()
        cpu["in_process"].append(time.process_time() - cpu_start)
        return time.perf_counter() - start, records

    cpu: dict[str, list[float]] = {"in_process": [], "server": []}

    in_process()  # warm-up
    proc, url = start_server(args)
    summary: dict = {}
    try:
        jobs = [(GOOD, good_body(p, r)) for p, r in zip(prompts, responses)]
        asyncio.run(send_all(url + "/get_reward", jobs[: args.clients], args.clients))  # warm-up
        pairs, latencies, answered, worst = [], [], 0, 0.0
        metrics_before = httpx.get(url + "/metrics").text
        for _ in range(args.repeats):  # in-process and served alternately, so a busy machine slows both alike
            in_seconds, expected = in_process()
            start, server_start = time.perf_counter(), cpu_seconds(proc.pid)
            load = asyncio.run(send_all(url + "/get_reward", jobs, args.clients))
            pairs.append((in_seconds, time.perf_counter() - start))
            cpu["server"].append(cpu_seconds(proc.pid) - server_start)
            latencies += [seconds for _, _, seconds in load]
            answered += sum(status == 200 for status, _, _ in load)
            worst = max(
                [worst] + [max_difference(a, e) if s == 200 else float("inf") for (s, a, _), e in zip(load, expected)]
            )
        ratios = [a / b for a, b in pairs]
        summary.update(
            {
                "responses_per_repeat": len(jobs),
                "repeats": args.repeats,
                "answered_200": answered,
                "max_abs_difference": worst,
                "p50_ms": 1000 * statistics.median(latencies),
                "p99_ms": 1000 * percentile(latencies, 0.99),
                "in_process_and_served_seconds": pairs,
                "served_per_second": len(jobs) / statistics.median(b for _, b in pairs),
                "throughput_ratio_median": statistics.median(ratios),
                "throughput_ratios": ratios,
                "cpu_ms_per_response": {k: 1000 * statistics.median(v) / len(jobs) for k, v in cpu.items() if v},
                "batch_size_histogram": batch_histogram(metrics_before, httpx.get(url + "/metrics").text),
            }
        )
        summary["abuse"] = abuse(url, args, prompts, responses, expected)
        summary["health_after"] = httpx.get(url + "/health").json()
        summary["server"] = {
            k: httpx.get(url + "/info").json()[k] for k in ("max_batch", "max_wait_ms", "batch_size", "device")
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        summary["exit_code_after_sigterm"] = proc.wait(timeout=60)
    summary["settings"] = {k: str(v) for k, v in vars(args).items()}
    print(json.dumps(summary, indent=1))


def abuse(url: str, args: argparse.Namespace, prompts: list[str], responses: list[str], expected: list[dict]) -> dict:
    """Phase 2: bad requests of ten kinds shuffled among good ones (see the module docstring)."""
    rng = random.Random(args.seed)
    kinds = list(malformed_kinds(prompts[0], responses[0]))
    jobs, wanted = [], []
    for k in range(args.malformed):
        i = rng.randrange(len(prompts))
        body, status = malformed_kinds(prompts[i], responses[i])[kinds[k % len(kinds)]]
        jobs.append((kinds[k % len(kinds)], body))
        wanted.append((status, None))
    for _ in range(args.good):
        i = rng.randrange(len(prompts))
        jobs.append((GOOD, good_body(prompts[i], responses[i])))
        wanted.append((200, expected[i]))
    order = list(range(len(jobs)))
    rng.shuffle(order)
    jobs, wanted = [jobs[k] for k in order], [wanted[k] for k in order]
    answers = asyncio.run(send_all(url + "/get_reward", jobs, args.clients))
    wrong = Counter()
    worst = 0.0
    for (kind, _), (status, record), (got, answer, _) in zip(jobs, wanted, answers):
        if got != status or (kind != GOOD and "error" not in answer):
            wrong[kind] += 1
        elif record is not None:
            worst = max(worst, max_difference(answer, record))
    return {
        "bad_requests": args.malformed,
        "good_requests": args.good,
        "kinds": kinds,
        "wrong_answers_by_kind": dict(wrong),
        "good_max_abs_difference": worst,
    }


if __name__ == "__main__":
    main()
