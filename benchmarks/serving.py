"""Serving under load: `mlx serve` against a bare FastAPI handler and Seldon MLServer.

Each model is exported the way a user would (``mlx run deployment=datacenter``, three epochs),
then served in turn by each server, one at a time, each a subprocess on 127.0.0.1 with one model
thread:

- ``mlx serve`` with dynamic batching (its default: up to 64 rows, 2 ms queue delay) and with
  ``--no-batching``, both with ``--no-access-log``;
- a bare FastAPI handler (below): orjson in, the same model.onnx on one ONNX Runtime thread, the
  same three outputs back, on uvicorn with mlx serve's settings. The floor for any server;
- MLServer 1.7.1 (its own environment) with a small custom runtime: the same model.onnx on one
  thread, NumpyCodec in, the same outputs back; one process (``parallel_workers=0``), no metrics
  server, no access log; without and with its adaptive batching (64 rows, 2 ms);
- at concurrency 1 only, mlx serve with gRPC off (``--grpc-port 0``): what gRPC costs REST.

The models: the default CNN and the MLP on digits, each float and int8; the CNN on MNIST 5k; and
an MLP with two hidden layers of 4,096, whose call is dominated by a fixed cost (reading its
weights), for the target that batching doubles throughput "for a model whose call has a fixed
cost": the digits and MNIST models' calls cost a few hundredths of a millisecond a row and have
almost no fixed part.

A load generator in its own process (asyncio, aiohttp, uvloop) runs a closed loop at each
concurrency: one keep-alive connection per worker, pre-encoded one-row bodies of real images,
a warm-up, then a fixed number of requests. Every response must be 200 and its ``y`` argmax and
``label`` must match ONNX Runtime run here on that request's image. After each mlx cell it reads
``/metrics`` for the mean batch size.

    python benchmarks/serving.py [--quick] [--out reports/benchmarks/serving.md]

Writes reports/benchmarks/serving.md (``--quick``: one model, concurrency 1 and 8, few requests,
to a temporary folder's serving_quick.md; a trial of the script, not a result).
"""

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BIN = Path(sys.executable).parent
MLSERVER_VENV = Path(os.environ.get("MLSERVER_VENV", ROOT / ".venv-mlserver"))

EXPORT = [
    "deployment=datacenter",
    "deployment.cluster=null",
    "trainer.max_epochs=3",
    "tracking=none",
    "callbacks.progress_bar=null",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]
# name -> (the run's overrides, what it is)
MODELS: dict[str, tuple[list[str], str]] = {
    "cnn": ([], "the default CNN on digits (8x8)"),
    "cnn_int8": (["compression=[quantize]"], "the default CNN on digits, int8 (static)"),
    "mlp": (["model=mlp"], "the MLP on digits"),
    "mlp_int8": (["model=mlp", "compression=[quantize]"], "the MLP on digits, int8 (static)"),
    "mnist_cnn": (["data=mnist5k"], "the default CNN on MNIST 5k (28x28)"),
    # for the batching target: a call dominated by a fixed cost (streaming 70 MB of weights from
    # memory once a call, whatever its rows), which none of the models above has
    "mlp_wide": (
        ["model=mlp", "model.net.hidden=[4096,4096]"],
        "an MLP on digits with two hidden layers of 4,096 (17M weights)",
    ),
}
SERVERS = {
    "mlx": "mlx serve (batching)",
    "mlx_nobatch": "mlx serve --no-batching",
    "bare": "bare FastAPI handler",
    "mlserver": "MLServer",
    "mlserver_batch": "MLServer (adaptive batching)",
    # at concurrency 1 only: what serving gRPC beside REST costs a REST request
    "mlx_nogrpc": "mlx serve (batching), gRPC off",
}
MAX_BATCH = 64
DELAY_MS = 2.0
IMAGES = 512  # distinct inputs per model, sent in turn


# -- the bare handler (run in its own process: `serving.py --bare-server FOLDER PORT`) -----------


def bare_server(folder: Path, port: int) -> None:
    """The floor: parse, run, answer, nothing else (no checks, no metrics, no batching)."""
    import numpy as np
    import onnxruntime as ort
    import orjson
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import Response

    sig = json.loads((folder / "signature.json").read_text())
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
    )
    input_name = session.get_inputs()[0].name
    mean, std = _standardisation(sig)
    classes = sig["class_names"]
    version = str(sig["version"])
    app = FastAPI()

    @app.get("/v2/models/{name}/ready")
    async def ready(name: str) -> dict[str, Any]:
        return {"name": name, "ready": True}

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> Response:
        tensor = orjson.loads(await request.body())["inputs"][0]
        x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])  # (B, C, H, W)
        if mean is not None:
            x = (x - mean) / std
        y = session.run(None, {input_name: x})[0]  # (B, K)
        e = np.exp(y - y.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        labels = [classes[k] for k in y.argmax(axis=1)]
        doc = {
            "model_name": name,
            "model_version": version,
            "outputs": [
                {"name": "y", "datatype": "FP32", "shape": list(y.shape), "data": y.ravel().tolist()},
                {"name": "probabilities", "datatype": "FP32", "shape": list(p.shape), "data": p.ravel().tolist()},
                {"name": "label", "datatype": "BYTES", "shape": [len(labels)], "data": labels},
            ],
        }  # fmt: skip
        return Response(orjson.dumps(doc), media_type="application/json")

    # the settings mlx serve gives uvicorn
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )


def _standardisation(sig: dict[str, Any]) -> tuple[Any, Any]:
    """The per-channel mean and std a signature's image preprocessing applies (None: none)."""
    import numpy as np

    pre = sig["preprocessing"]
    if pre.get("mean") is None:
        return None, None
    shape = (1, -1, 1, 1)
    return (
        np.asarray(pre["mean"], dtype=np.float32).reshape(shape),
        np.asarray(pre["std"], dtype=np.float32).reshape(shape),
    )


# -- MLServer's runtime (written into its model folder; runs in MLServer's environment) ---------

MLSERVER_RUNTIME = '''\
"""An MLServer runtime for an mlx model version: model.onnx on ONNX Runtime, one thread."""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec, StringCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxModel(MLModel):
    async def load(self) -> bool:
        folder = Path(self.settings.parameters.uri)
        sig = json.loads((folder / "signature.json").read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        pre = sig["preprocessing"]
        self.mean = self.std = None
        if pre.get("mean") is not None:
            self.mean = np.asarray(pre["mean"], dtype=np.float32).reshape(1, -1, 1, 1)
            self.std = np.asarray(pre["std"], dtype=np.float32).reshape(1, -1, 1, 1)
        self.classes = sig["class_names"]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        y = self.session.run(None, {self.input_name: x})[0]
        e = np.exp(y - y.max(axis=1, keepdims=True))
        p = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
        labels = [self.classes[k] for k in y.argmax(axis=1)]
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[
                NumpyCodec.encode_output("y", y),
                NumpyCodec.encode_output("probabilities", p),
                StringCodec.encode_output("label", labels),
            ],
        )
'''


def mlserver_folder(tmp: Path, name: str, version_dir: Path, batching: bool) -> Path:
    """MLServer's settings, model settings and runtime for one model."""
    folder = tmp / f"mlserver_{name}_{'batch' if batching else 'plain'}"
    (folder / name).mkdir(parents=True, exist_ok=True)
    (folder / "mlx_onnx_runtime.py").write_text(MLSERVER_RUNTIME)
    model: dict[str, Any] = {
        "name": name,
        "implementation": "mlx_onnx_runtime.OnnxModel",
        "parameters": {"uri": str(version_dir)},
    }
    if batching:
        model |= {"max_batch_size": MAX_BATCH, "max_batch_time": DELAY_MS / 1000}
    (folder / name / "model-settings.json").write_text(json.dumps(model, indent=2))
    return folder


def mlserver_settings(folder: Path, http: int, grpc: int) -> None:
    settings = {
        "debug": False,  # no access log
        "parallel_workers": 0,  # inference in the server's own process, as the others do
        "metrics_endpoint": None,  # no metrics server, no Prometheus middleware
        "host": "127.0.0.1",
        "http_port": http,
        "grpc_port": grpc,
    }
    (folder / "settings.json").write_text(json.dumps(settings, indent=2))


def httptools_shim(tmp: Path) -> Path:
    """A folder holding only this environment's httptools (the same CPython 3.11 ABI), put on
    MLServer's PYTHONPATH so that its uvicorn parses HTTP with httptools as mlx serve's does:
    MLServer's own install does not pull it in and would fall back to the slower h11."""
    import httptools

    shim = tmp / "httptools_shim"
    shim.mkdir(exist_ok=True)
    link = shim / "httptools"
    if not link.exists():
        link.symlink_to(Path(httptools.__file__).parent, target_is_directory=True)
    return shim


# -- the load generator (its own process: `serving.py --load SPEC OUT`) --------------------------


def load_generator(spec_path: Path, out: Path) -> None:
    """Runs every cell of a spec against one running server and writes the results (JSON)."""
    import uvloop

    spec = json.loads(spec_path.read_text())
    bodies = json.loads(Path(spec["bodies"]).read_text())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        results = runner.run(_load(spec, [b.encode() for b in bodies["bodies"]]))
    for r in results:
        r["mismatches"], r["errors"] = _verify(r.pop("responses"), bodies, r["first"])
    out.write_text(json.dumps(results))


async def _load(spec: dict[str, Any], bodies: list[bytes]) -> list[dict[str, Any]]:
    import aiohttp

    results = []
    url, metrics = spec["url"], spec.get("metrics")
    start = 0
    for c, warm, n in spec["cells"]:
        connector = aiohttp.TCPConnector(limit=c)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await _drive(session, url, bodies, c, warm, start)
            start += warm
            before = await _batch_stats(session, metrics, spec["model"]) if metrics else None
            server_cpu, client_cpu = _cpu(spec["pid"]), time.process_time()
            lat, statuses, responses, wall = await _drive(session, url, bodies, c, n, start)
            server_cpu, client_cpu = (
                _cpu(spec["pid"]) - server_cpu,
                time.process_time() - client_cpu,
            )
            after = await _batch_stats(session, metrics, spec["model"]) if metrics else None
        ms = sorted(x * 1000 for x in lat)
        batch = None
        if before and after and after[1] > before[1]:
            batch = (after[0] - before[0]) / (after[1] - before[1])
        results.append(
            {
                "c": c,
                "n": n,
                "p50": _percentile(ms, 50),
                "p99": _percentile(ms, 99),
                "rps": n / wall,
                "batch": batch,
                "server_cpu_us": server_cpu / n * 1e6,
                "client_cpu_us": client_cpu / n * 1e6,
                "first": start,
                "responses": list(zip(statuses, [r.decode() for r in responses], strict=True)),
            }
        )
        start += n
    return results


async def _drive(
    session: Any, url: str, bodies: list[bytes], c: int, n: int, first: int
) -> tuple[list[float], list[int], list[bytes], float]:
    """n requests from c workers in a closed loop; request i sends image (first + i)."""
    lat = [0.0] * n
    statuses = [0] * n
    responses = [b""] * n
    todo = iter(range(n))
    headers = {"content-type": "application/json"}

    async def worker() -> None:
        for i in todo:  # shared: each worker takes the next request when its last one is answered
            body = bodies[(first + i) % len(bodies)]
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as r:
                    responses[i] = await r.read()
                    statuses[i] = r.status
            except Exception as e:  # counted as an error, the run goes on
                responses[i], statuses[i] = repr(e).encode(), -1
            lat[i] = time.perf_counter() - t0

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(c)))
    return lat, statuses, responses, time.perf_counter() - t0


async def _batch_stats(session: Any, url: str, model: str) -> tuple[float, float] | None:
    """(sum, count) of the mlx_batch_rows histogram for one model."""
    async with session.get(url) as r:
        text = await r.text()
    found = {}
    for part in ("sum", "count"):
        m = re.search(rf'^mlx_batch_rows_{part}\{{model="{re.escape(model)}"\}} (\S+)$', text, re.M)
        if m is None:
            return None
        found[part] = float(m.group(1))
    return found["sum"], found["count"]


def _cpu(pid: int) -> float:
    """CPU seconds (user + system, every thread) a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(sorted_values: list[float], q: float) -> float:
    k = (len(sorted_values) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def _verify(
    responses: list[tuple[int, str]], bodies: dict[str, Any], first: int
) -> tuple[int, int]:
    """(mismatches, errors): a 200 whose y argmax or label is not the expected class; a non-200."""
    expected, classes = bodies["expected"], bodies["classes"]
    mismatches = errors = 0
    for i, (status, text) in enumerate(responses):
        if status != 200:
            errors += 1
            continue
        want = expected[(first + i) % len(expected)]
        outputs = {o["name"]: o for o in json.loads(text)["outputs"]}
        y = outputs["y"]["data"]
        label = outputs["label"]["data"]
        label = label[0] if isinstance(label, list) else label
        label = label[0] if isinstance(label, list) else label
        if y.index(max(y)) != want or str(label) != classes[want]:
            mismatches += 1
    return mismatches, errors


# -- the benchmark --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def export(tmp: Path, name: str) -> tuple[Path, float]:
    """Trains and exports one model with `mlx run`; its version folder and the run's seconds."""
    overrides, _ = MODELS[name]
    repo = tmp / f"repo_{name}"
    argv = [
        str(BIN / "mlx"),
        "run",
        *EXPORT,
        f"deployment.repository={repo}",
        f"deployment.name={name}",
        f"hydra.run.dir={tmp / f'run_{name}'}",
        *overrides,
    ]
    t0 = time.perf_counter()
    done = subprocess.run(argv, cwd=tmp, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(
            f"export of {name} failed:\n{' '.join(argv)}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return repo / name / "1", time.perf_counter() - t0


def inputs_of(name: str) -> Any:
    """Real images, (IMAGES, 1, H, W) in [0, 1], from the model's data set."""
    from mlx.data import Digits, MNIST5k

    source = MNIST5k() if "data=mnist5k" in MODELS[name][0] else Digits()
    return source().features[-IMAGES:]


def session_of(folder: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(
        str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
    )


def expected_classes(folder: Path, images: Any) -> list[int]:
    """The class ONNX Runtime gives each image alone, after the signature's preprocessing."""
    sig = json.loads((folder / "signature.json").read_text())
    mean, std = _standardisation(sig)
    session = session_of(folder)
    name = session.get_inputs()[0].name
    out = []
    for image in images:
        x = image[None]
        if mean is not None:
            x = (x - mean) / std
        out.append(int(session.run(None, {name: x})[0].argmax()))
    return out


def call_cost(folder: Path, images: Any) -> dict[str, float]:
    """Median ms of one model call at batch 1 and at batch 32 (one thread), and the fixed part
    of a call, t(1) - (t(32) - t(1)) / 31, from a straight line through the two."""
    session = session_of(folder)
    name = session.get_inputs()[0].name
    times = {}
    for b, repeats in ((1, 300), (32, 60)):
        x = images[:b]
        for _ in range(20):
            session.run(None, {name: x})
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            session.run(None, {name: x})
            runs.append(time.perf_counter() - t0)
        times[b] = statistics.median(runs) * 1000
    return {
        "b1": times[1],
        "b32": times[32],
        "fixed": max(0.0, times[1] - (times[32] - times[1]) / 31),
    }


def body_of(image: Any) -> str:
    return json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [1, *image.shape],
                    "datatype": "FP32",
                    "data": image.ravel().tolist(),
                }
            ]
        },
        separators=(",", ":"),
    )


@contextlib.contextmanager
def running(argv: list[str], ready: str, log: Path, **kwargs: Any) -> Iterator[int]:
    """A server subprocess, waited for until ``ready`` answers 200; its pid. Stopped (its whole
    process group, SIGTERM then SIGKILL) however the block ends."""
    with log.open("w") as f:
        proc = subprocess.Popen(
            argv, stdout=f, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{argv[0]} exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(ready, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{argv[0]} not ready in 90 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield proc.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def serve(
    server: str, name: str, folder: Path, tmp: Path, bodies: Path, cells: list[list[int]]
) -> list[dict[str, Any]]:
    """Starts one server for one model, runs the load generator against it, stops it."""
    http, grpc = free_port(), free_port()
    while grpc == http:
        grpc = free_port()
    env = None
    cwd = None
    if server in ("mlx", "mlx_nobatch", "mlx_nogrpc"):
        argv = [
            str(BIN / "mlx"), "serve", str(folder.parents[1]), "--model", name,
            "--http-port", str(http), "--grpc-port", str(grpc if server != "mlx_nogrpc" else 0),
            "--max-batch-size", str(MAX_BATCH), "--max-queue-delay-ms", str(DELAY_MS),
            "--threads", "1", "--no-access-log",
        ]  # fmt: skip
        if server == "mlx_nobatch":
            argv.append("--no-batching")
    elif server == "bare":
        argv = [sys.executable, __file__, "--bare-server", str(folder), str(http)]
    else:
        cwd = mlserver_folder(tmp, name, folder, batching=server == "mlserver_batch")
        mlserver_settings(cwd, http, grpc)
        env = {**os.environ, "PYTHONPATH": str(httptools_shim(tmp))}
        argv = [str(MLSERVER_VENV / "bin" / "mlserver"), "start", "."]
    base = f"http://127.0.0.1:{http}"
    log = tmp / f"log_{server}_{name}.txt"
    with running(argv, f"{base}/v2/models/{name}/ready", log, env=env, cwd=cwd) as pid:
        spec = {
            "url": f"{base}/v2/models/{name}/infer",
            "metrics": f"{base}/metrics" if server.startswith("mlx") else None,
            "model": name,
            "pid": pid,
            "bodies": str(bodies),
            "cells": cells,
        }
        spec_path, out = tmp / "spec.json", tmp / "result.json"
        spec_path.write_text(json.dumps(spec))
        done = subprocess.run(
            [sys.executable, __file__, "--load", str(spec_path), str(out)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the load generator failed:\n{done.stderr[-3000:]}")
        return json.loads(out.read_text())


def versions() -> str:
    def v(package: str) -> str:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return "absent"

    theirs = subprocess.run(
        [
            str(MLSERVER_VENV / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; print(' '.join(m.version(p) for p in "
            "('mlserver', 'onnxruntime', 'fastapi', 'uvicorn')))",
        ],
        capture_output=True,
        text=True,
    ).stdout.split()
    mlserver = (
        f"MLServer {theirs[0]} (its environment: onnxruntime {theirs[1]}, fastapi {theirs[2]}, "
        f"uvicorn {theirs[3]})"
        if len(theirs) == 4
        else "MLServer: not found"
    )
    return (
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), shared; "
        f"Python {platform.python_version()}; onnxruntime {v('onnxruntime')}, fastapi "
        f"{v('fastapi')}, uvicorn {v('uvicorn')} (httptools {v('httptools')}, uvloop "
        f"{v('uvloop')}), aiohttp {v('aiohttp')} (load generator); {mlserver}"
    )


def commit() -> str:
    from mlx.record import git_state

    return (git_state(ROOT)["sha"] or "unknown")[:7]


def deploy_code() -> str:
    """A digest of mlx/deploy's sources: the servers import them afresh for every model, so a
    change during the run would mix versions of mlx serve in one report."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((ROOT / "mlx" / "deploy").rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _cell(results: dict[str, list[dict[str, Any]]], server: str, c: int) -> dict[str, Any] | None:
    return next((r for r in results.get(server, []) if r["c"] == c), None)


def table(name: str, results: dict[str, list[dict[str, Any]]], cost: dict[str, float]) -> list[str]:
    lines = [
        f"### {name}: {MODELS[name][1]}",
        "",
        f"One model call (one thread, here): {cost['b1']:.3f} ms at batch 1, {cost['b32']:.3f} ms "
        f"at batch 32 ({cost['b32'] / 32:.3f} ms a row); fixed part of a call about "
        f"{cost['fixed']:.3f} ms.",
        "",
        "| server | concurrency | p50 (ms) | p99 (ms) | req/s | mean batch | server CPU (us/req) | client CPU (us/req) | errors | mismatches |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for server, label in SERVERS.items():
        for r in results.get(server, []):
            batch = f"{r['batch']:.1f}" if r["batch"] is not None else "-"
            lines.append(
                f"| {label} | {r['c']} | {r['p50']:.2f} | {r['p99']:.2f} | {r['rps']:,.0f} | "
                f"{batch} | {r['server_cpu_us']:.0f} | {r['client_cpu_us']:.0f} | {r['errors']} | "
                f"{r['mismatches']} |"
            )
    return lines


def targets(
    all_results: dict[str, dict[str, list[dict[str, Any]]]],
    costs: dict[str, float | dict[str, float]],
    concurrencies: list[int],
) -> list[str]:
    lines = ["## Targets", ""]
    # 1. latency at concurrency 1 against the bare handler
    rows, ok1 = [], True
    for name, results in all_results.items():
        mlx, bare = _cell(results, "mlx", 1), _cell(results, "bare", 1)
        if mlx and bare:
            gap = mlx["p50"] - bare["p50"]
            ok1 &= gap <= 0.5
            rows.append(f"{name} {mlx['p50']:.2f} vs {bare['p50']:.2f} ms ({gap:+.2f})")
    lines += [
        f"1. **{'PASS' if ok1 else 'FAIL'}**: at concurrency 1, mlx serve's p50 within 0.5 ms "
        f"of the bare handler's: {'; '.join(rows)}.",
    ]
    # 2. batching at concurrency 32, judged on the model whose call has the largest fixed cost
    c2 = 32 if 32 in concurrencies else max(concurrencies)
    ratios = {}
    for name, results in all_results.items():
        b, nb = _cell(results, "mlx", c2), _cell(results, "mlx_nobatch", c2)
        if b and nb:
            ratios[name] = (b["rps"] / nb["rps"], b["rps"], nb["rps"], b["batch"])
    if ratios:
        judged = max(ratios, key=lambda n: costs[n]["fixed"])  # type: ignore[index]
        ratio, b_rps, nb_rps, batch = ratios[judged]
        fixed = costs[judged]["fixed"]  # type: ignore[index]
        others = "; ".join(f"{n} {r[0]:.2f}x" for n, r in ratios.items() if n != judged)
        lines.append(
            f"2. **{'PASS' if ratio >= 2 else 'FAIL'}**: batching >= 2x the throughput of no "
            f"batching at concurrency {c2}, for the model whose call has the largest fixed cost "
            f"({judged}, about {fixed:.2f} ms of its {costs[judged]['b1']:.2f} ms batch-1 call): "
            f"{b_rps:,.0f} vs {nb_rps:,.0f} req/s = "
            f"{ratio:.2f}x (mean batch {batch if batch is None else f'{batch:.1f}'}). "
            f"The other models: {others or 'none'}."
        )
    # 3. ahead of MLServer: p50 at concurrency 1 and throughput at concurrency 32
    rows, ok3 = [], True
    for name, results in all_results.items():
        mlx1, mlx32 = _cell(results, "mlx", 1), _cell(results, "mlx", c2)
        theirs1 = [r for s in ("mlserver", "mlserver_batch") if (r := _cell(results, s, 1))]
        theirs32 = [r for s in ("mlserver", "mlserver_batch") if (r := _cell(results, s, c2))]
        if not (mlx1 and mlx32 and theirs1 and theirs32):
            continue
        best1 = min(r["p50"] for r in theirs1)
        best32 = max(r["rps"] for r in theirs32)
        ok = mlx1["p50"] < best1 and mlx32["rps"] > best32
        ok3 &= ok
        rows.append(
            f"{name}: p50 {mlx1['p50']:.2f} vs {best1:.2f} ms, {mlx32['rps']:,.0f} vs "
            f"{best32:,.0f} req/s{'' if ok else ' (behind)'}"
        )
    lines.append(
        f"3. **{'PASS' if ok3 else 'FAIL'}**: mlx serve ahead of MLServer (its better setting "
        f"of the two each time) on p50 at concurrency 1 and on throughput at concurrency {c2}: "
        + "; ".join(rows)
        + "."
    )
    return lines


def why(
    all_results: dict[str, dict[str, list[dict[str, Any]]]],
    costs: dict[str, Any],
    concurrencies: list[int],
) -> list[str]:
    """What the measurements say about the targets: CPU per request, by server."""
    c2 = 32 if 32 in concurrencies else max(concurrencies)
    lines = ["## What the numbers say", ""]
    for c in (1, c2):
        parts = []
        for name, results in all_results.items():
            cpu = {s: r["server_cpu_us"] for s in SERVERS if (r := _cell(results, s, c))}
            if {"mlx", "bare"} <= cpu.keys():
                parts.append(
                    f"{name}: mlx serve {cpu['mlx']:.0f}, bare {cpu['bare']:.0f}, MLServer "
                    f"{cpu.get('mlserver', float('nan')):.0f}"
                )
        lines.append(f"- Server CPU per request (us) at concurrency {c}: " + "; ".join(parts) + ".")
    grpc = []
    for name, results in all_results.items():
        on, off, bare = (_cell(results, s, 1) for s in ("mlx", "mlx_nogrpc", "bare"))
        if on and off and bare:
            grpc.append(
                f"{name} {on['p50']:.2f} -> {off['p50']:.2f} (bare {bare['p50']:.2f}, one call "
                f"{costs[name]['b1']:.2f})"
            )
    if grpc:
        from mlx.deploy import batching

        inline = getattr(batching, "INLINE_SECONDS", None)
        under = f" and predicted under {inline * 1000:g} ms" if inline else ""
        lines.append(
            "- mlx serve answers gRPC (grpc.aio) on the event loop that serves REST, and runs a "
            "request's model call on that loop when no other request for the model is in flight"
            f"{under}, in a worker thread otherwise; the bare handler has no gRPC "
            "and runs every call on its event loop. p50 at concurrency 1 (ms), mlx serve with "
            "gRPC on -> off (`--grpc-port 0`), beside the bare handler and one model call: "
            + "; ".join(grpc)
            + "."
        )
    saved = []
    for name, results in all_results.items():
        b, nb = _cell(results, "mlx", c2), _cell(results, "mlx_nobatch", c2)
        if b and nb:
            saved.append(
                f"{name} {nb['server_cpu_us']:.0f} -> {b['server_cpu_us']:.0f} "
                f"(the fixed part of its call {costs[name]['fixed'] * 1000:.0f})"
            )
    if saved:
        lines.append(
            "- Batching merges model calls (and each call's hand-off to the model thread and its "
            "metrics); the work of each request (HTTP, JSON, checks, metrics) stays. Server CPU "
            f"per request (us) at concurrency {c2}, no batching -> batching, beside the fixed "
            "part of one model call (a straight line through the batch-1 and batch-32 times): "
            + "; ".join(saved)
            + ". Only a model whose fixed part is large against the per-request work can gain "
            "2x from batching."
        )
    return lines


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--bare-server":
        bare_server(Path(sys.argv[2]), int(sys.argv[3]))
        return
    if len(sys.argv) == 4 and sys.argv[1] == "--load":
        load_generator(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="one model, concurrency 1 and 8, few requests"
    )
    parser.add_argument("--out", type=Path, default=None, help="the report's path")
    args = parser.parse_args()
    if args.quick:
        names, concurrencies = ["cnn"], [1, 8]
        counts = {1: (50, 300), 8: (100, 600)}  # concurrency -> (warm-up, measured requests)
    else:
        names, concurrencies = list(MODELS), [1, 8, 32, 64]
        counts = {1: (200, 2000), 8: (400, 4000), 32: (400, 4000), 64: (400, 4000)}
    cells = [[c, *counts[c]] for c in concurrencies]

    t0 = time.perf_counter()
    code = deploy_code()
    all_results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    costs: dict[str, Any] = {}
    exported: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="mlx-serving-bench-") as tmp_name:
        tmp = Path(tmp_name)
        folders = {}
        for name in names:
            folders[name], exported[name] = export(tmp, name)
            print(f"exported {name} in {exported[name]:.0f} s", flush=True)
        for name in names:
            folder = folders[name]
            images = inputs_of(name)
            sig = json.loads((folder / "signature.json").read_text())
            bodies = tmp / f"bodies_{name}.json"
            bodies.write_text(
                json.dumps(
                    {
                        "bodies": [body_of(image) for image in images],
                        "expected": expected_classes(folder, images),
                        "classes": sig["class_names"],
                    }
                )
            )
            costs[name] = call_cost(folder, images)
            all_results[name] = {}
            for server in SERVERS:
                chosen = cells if server != "mlx_nogrpc" else [c for c in cells if c[0] == 1]
                results = serve(server, name, folder, tmp, bodies, chosen)
                all_results[name][server] = results
                print(
                    f"{name} {server}: "
                    + ", ".join(
                        f"c={r['c']} p50 {r['p50']:.2f} p99 {r['p99']:.2f} ms {r['rps']:,.0f}/s"
                        + (f" batch {r['batch']:.1f}" if r["batch"] is not None else "")
                        + (f" ERRORS {r['errors']}" if r["errors"] else "")
                        + (f" MISMATCHES {r['mismatches']}" if r["mismatches"] else "")
                        for r in results
                    ),
                    flush=True,
                )
    minutes = (time.perf_counter() - t0) / 60
    changed = deploy_code() != code

    command = "python benchmarks/serving.py" + (" --quick" if args.quick else "")
    lines = [
        "# Serving under load: `mlx serve`, a bare handler and MLServer",
        "",
        f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from commit {commit()} by "
        f"`{command}` ({minutes:.1f} minutes, of which exporting the models "
        f"{sum(exported.values()) / 60:.1f}).",
        "",
        f"Machine: {versions()}.",
        "",
        *(
            [
                "**mlx/deploy's sources changed during this run: its rows mix versions of mlx "
                "serve; run it again.**",
                "",
            ]
            if changed
            else []
        ),
        "Each model is trained for 3 epochs and exported by `mlx run "
        + " ".join(EXPORT)
        + " deployment.repository=DIR deployment.name=NAME [overrides]`, then served by each "
        "server in turn on 127.0.0.1, one model thread each:",
        "",
        f"- **mlx serve (batching)**: `mlx serve DIR --model NAME --max-batch-size {MAX_BATCH} "
        f"--max-queue-delay-ms {DELAY_MS:g} --threads 1 --no-access-log` (its defaults, without "
        "the access log); **--no-batching** adds that flag. Mean batch: the change of the "
        "`mlx_batch_rows` histogram's sum over its count during the cell.",
        "- **bare FastAPI handler**: one `async def` route that parses the body with orjson, runs "
        "the same model.onnx on an ONNX Runtime session (1 intra-op thread) in the event loop, "
        "and answers the same three outputs (y, probabilities, label) with orjson; uvicorn with "
        "mlx serve's settings (no access log). No checks, metrics or batching: a floor.",
        "- **MLServer**: `mlserver start` with a custom `MLModel` runtime (the same model.onnx, "
        "1 thread, NumpyCodec in, the same three outputs), `parallel_workers: 0` (one process), "
        "`metrics_endpoint: null`, `debug: false` (no access log); **adaptive batching** adds "
        f"`max_batch_size: {MAX_BATCH}`, `max_batch_time: {DELAY_MS / 1000:g}`. MLServer's own "
        "install lacks httptools, so its uvicorn would parse HTTP with the slower h11; this "
        "benchmark puts this environment's httptools on its path so both parse alike.",
        "",
        "Load: a separate process (asyncio on uvloop, aiohttp), a closed loop with one "
        "keep-alive connection per worker, pre-encoded one-row JSON bodies of "
        f"{IMAGES} real images sent in turn; per concurrency a warm-up then "
        + ", ".join(f"{n:,} requests at {c}" for c, _, n in cells)
        + ". Latency is the client's, request sent to response read. Every response is "
        "checked: status 200, and the argmax of `y` and the `label` equal to ONNX Runtime's "
        "class for that image run here alone (errors and mismatches must be 0). Server and "
        "client CPU: user + system seconds of each process per request. Client, server and "
        "model share the machine's cores.",
        "",
    ]
    if args.quick:
        lines[0] += " (--quick: a trial of the script, not a result)"
    for name in names:
        lines += table(name, all_results[name], costs[name]) + [""]
    lines += targets(all_results, costs, concurrencies) + [""]
    lines += why(all_results, costs, concurrencies) + [""]
    bad = sum(
        r["errors"] + r["mismatches"] for rs in all_results.values() for s in rs.values() for r in s
    )
    lines.append(f"Errors and mismatches over all cells: {bad}.")
    lines.append("")
    text = "\n".join(lines)
    out = args.out or (
        Path(tempfile.gettempdir()) / "serving_quick.md"
        if args.quick
        else ROOT / "reports" / "benchmarks" / "serving.md"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".tmp")
    partial.write_text(text)
    os.replace(partial, out)
    print(text)
    if bad:
        sys.exit(f"{bad} requests failed or answered wrongly")
    if changed:
        sys.exit("mlx/deploy's sources changed during the run: run it again")


if __name__ == "__main__":
    main()
