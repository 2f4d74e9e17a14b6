"""``mlx serve`` as its users meet it: a real server process on loopback ports, spoken to by the
real clients (tritonclient's HTTP client in JSON and binary mode, its gRPC client, KServe's REST
client), fuzzed by schemathesis, and fed bad requests that must all get a 4xx."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import MLX
from tests.deploy.conftest import Exported

ROOT = Path(__file__).resolve().parents[2]
KSERVE_PYTHON = ROOT / ".venv-kserve" / "bin" / "python"
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    http: str  # host:port
    grpc: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.http}"

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30)

    def post(self, path: str, **kwargs) -> httpx.Response:
        return httpx.post(self.url + path, timeout=30, **kwargs)

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample of the Prometheus text at /metrics (0 when absent)."""
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in self.get("/metrics").text.splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            head, _, rest = key.partition("{")
            found = ",".join(sorted(p for p in rest.rstrip("}").split(",") if p))
            if head == name and found == wanted:
                return float(value)
        return 0.0


@contextmanager
def serve(repo: Path, *args: str, log_dir: Path, ready: bool = True) -> Iterator[Served]:
    """Run ``mlx serve repo *args`` until the block ends; waits for readiness."""
    http, grpc = free_port(), free_port()
    log = log_dir / f"serve-{http}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [MLX, "serve", str(repo), "--http-port", str(http), "--grpc-port", str(grpc), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    served = Served(f"127.0.0.1:{http}", f"127.0.0.1:{grpc}", proc, log)
    try:
        deadline = time.time() + 60
        while ready:
            if proc.poll() is not None:
                raise AssertionError(f"mlx serve exited {proc.returncode}: {log.read_text()}")
            try:
                if served.get("/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.time() > deadline:
                raise AssertionError(f"mlx serve never got ready: {log.read_text()}")
            time.sleep(0.1)
        yield served
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Reference:
    """A model's test rows as a client sends them, and the run network's outputs on them."""

    raw: dict[str, np.ndarray]
    probabilities: np.ndarray
    labels: list[str]


def reference(exported: Exported, name: str, rows: int = 64) -> Reference:
    """The run's own predictions: its best checkpoint's network on its test split."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from mlx.compression.pipeline import load_net
    from mlx.deploy.export import held_out
    from mlx.deploy.signature import preprocessing_of

    run = exported.runs[name]
    cfg = OmegaConf.load(run / "config.yaml")
    dm = instantiate(cfg.data)
    dm.setup("fit")
    raw, encoded = held_out(dm, preprocessing_of(dm), rows)
    net = load_net(run / "checkpoints" / "best.ckpt").eval()
    with torch.no_grad():
        probabilities = torch.softmax(net(torch.from_numpy(encoded)), dim=1).numpy()
    classes = dm.class_names or [str(i) for i in range(probabilities.shape[1])]
    return Reference(raw, probabilities, [classes[i] for i in probabilities.argmax(1)])


@pytest.fixture(scope="module")
def server(exported: Exported, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    logs = tmp_path_factory.mktemp("serve-logs")
    with serve(exported.repo, "--max-queue-delay-ms", "5", log_dir=logs) as served:
        yield served


@pytest.fixture(scope="module")
def digits(exported: Exported) -> Reference:
    return reference(exported, "digits_cnn")


def _texts(values: np.ndarray) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values.reshape(-1)]


# -- the real clients ---------------------------------------------------------------------------


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_http_gets_the_runs_predictions(
    server: Served, digits: Reference, binary: bool
) -> None:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(server.http)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("digits_cnn")
    meta = client.get_model_metadata("digits_cnn")
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    x = digits.raw["x"]
    tensor = triton.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    outputs = [
        triton.InferRequestedOutput(n, binary_data=binary) for n in ("probabilities", "label")
    ]
    result = client.infer("digits_cnn", [tensor], outputs=outputs, request_id="req-7")
    assert result.get_response()["id"] == "req-7"
    np.testing.assert_allclose(result.as_numpy("probabilities"), digits.probabilities, atol=1e-5)
    assert _texts(result.as_numpy("label")) == digits.labels
    assert {o["name"] for o in result.get_response()["outputs"]} == {"probabilities", "label"}


def test_tritonclient_grpc_gets_the_runs_predictions(
    server: Served, exported: Exported, digits: Reference
) -> None:
    import tritonclient.grpc as triton

    client = triton.InferenceServerClient(server.grpc)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("digits_cnn")
    assert client.get_server_metadata().name == "mlx"
    x = digits.raw["x"]
    tensor = triton.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer("digits_cnn", [tensor], request_id="g-1")
    assert result.get_response().id == "g-1"
    np.testing.assert_allclose(result.as_numpy("probabilities"), digits.probabilities, atol=1e-5)
    assert _texts(result.as_numpy("label")) == digits.labels
    # a table with categorical columns: one tensor per raw column, BYTES for the categories
    credit = reference(exported, "german_credit_mlp", rows=32)
    tensors = []
    for name, values in credit.raw.items():
        if values.dtype == object:
            t = triton.InferInput(name, [len(values)], "BYTES")
            t.set_data_from_numpy(np.array([v.encode() for v in values], dtype=object))
        else:
            t = triton.InferInput(name, [len(values)], "FP64")
            t.set_data_from_numpy(values.astype(np.float64))
        tensors.append(t)
    result = client.infer("german_credit_mlp", tensors)
    np.testing.assert_allclose(result.as_numpy("probabilities"), credit.probabilities, atol=1e-5)
    assert _texts(result.as_numpy("label")) == credit.labels
    with pytest.raises(triton.InferenceServerException, match="takes \\[-1, 1, 8, 8\\]"):
        bad = triton.InferInput("x", [2, 1, 8, 7], "FP32")
        bad.set_data_from_numpy(np.zeros((2, 1, 8, 7), np.float32))
        client.infer("digits_cnn", [bad])
    assert client.is_server_ready()


KSERVE_SCRIPT = """
import asyncio, json, sys
from kserve import InferenceRESTClient, RESTConfig

async def main(url, body):
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
    live = await client.is_server_live(url)
    ready = await client.is_server_ready(url)
    model = await client.is_model_ready(url, "digits_cnn")
    response = await client.infer(url, json.loads(body), model_name="digits_cnn")
    out = {o.name: o.data for o in response.outputs}
    print(json.dumps({"live": live, "ready": ready, "model": model, "id": response.id, "out": out}))
    await client.close()

asyncio.run(main(sys.argv[1], sys.stdin.read()))
"""


@pytest.mark.skipif(
    not KSERVE_PYTHON.is_file() and not os.environ.get("CI"),
    reason="KServe's client lives in .venv-kserve (make setup builds it)",
)
def test_kserve_rest_client_gets_the_runs_predictions(server: Served, digits: Reference) -> None:
    x = digits.raw["x"][:16]
    body = {
        "id": "k-1",
        "inputs": [
            {"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
        ],
        "outputs": [{"name": "probabilities"}, {"name": "label"}],
    }
    proc = subprocess.run(
        [str(KSERVE_PYTHON), "-c", KSERVE_SCRIPT, server.url],
        input=json.dumps(body),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["live"] and got["ready"] and got["model"] and got["id"] == "k-1"
    np.testing.assert_allclose(
        np.array(got["out"]["probabilities"]).reshape(16, -1), digits.probabilities[:16], atol=1e-5
    )
    assert got["out"]["label"] == digits.labels[:16]


def test_numeric_table_over_rest_json(server: Served, exported: Exported) -> None:
    cancer = reference(exported, "breast_cancer_mlp", rows=40)
    x = cancer.raw["x"]
    body = {
        "inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP64", "data": x.tolist()}]
    }
    response = server.post("/v2/models/breast_cancer_mlp/infer", json=body)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert set(outputs) == {"y", "probabilities", "label"}
    probabilities = np.array(outputs["probabilities"]["data"]).reshape(
        outputs["probabilities"]["shape"]
    )
    np.testing.assert_allclose(probabilities, cancer.probabilities, atol=1e-5)
    assert outputs["label"]["data"] == cancer.labels


# -- batching -------------------------------------------------------------------------------------


def test_a_concurrent_burst_is_batched_and_each_answer_is_its_own(
    server: Served, digits: Reference
) -> None:
    x = digits.raw["x"]
    calls_before = server.metric("mlx_batch_requests_count", model="digits_cnn")
    requests_before = server.metric("mlx_batch_requests_sum", model="digits_cnn")
    n = len(x)
    barrier = threading.Barrier(n)
    answers: dict[int, list[float]] = {}

    def send(i: int) -> None:
        body = {
            "id": str(i),
            "inputs": [
                {
                    "name": "x",
                    "shape": [1, 1, 8, 8],
                    "datatype": "FP32",
                    "data": x[i].ravel().tolist(),
                }
            ],
            "outputs": [{"name": "probabilities"}],
        }
        with httpx.Client(timeout=60) as client:
            barrier.wait()
            response = client.post(f"{server.url}/v2/models/digits_cnn/infer", json=body)
        assert response.status_code == 200, response.text
        doc = response.json()
        answers[int(doc["id"])] = doc["outputs"][0]["data"]

    threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == list(range(n))
    got = np.array([answers[i] for i in range(n)])
    np.testing.assert_allclose(got, digits.probabilities, atol=1e-5)
    calls = server.metric("mlx_batch_requests_count", model="digits_cnn") - calls_before
    requests = server.metric("mlx_batch_requests_sum", model="digits_cnn") - requests_before
    assert requests == n
    assert calls < n  # some model calls served several requests
    assert (
        server.metric("mlx_requests_total", model="digits_cnn", protocol="rest", status="200") >= n
    )


def _batcher(forward, **kwargs):
    from concurrent.futures import ThreadPoolExecutor

    from mlx.deploy.batching import Batcher

    calls: list[int] = []

    def observe(rows: int, requests: int, seconds: float) -> None:
        calls.append(rows)

    settings = {"max_batch_size": 8, "max_queue_delay": 1.0, **kwargs}
    return Batcher(forward, executor=ThreadPoolExecutor(2), observe=observe, **settings), calls


def test_a_lone_request_never_waits_for_the_queue_delay() -> None:
    batcher, calls = _batcher(lambda x: x * 2, max_queue_delay=2.0)

    async def once() -> float:
        start = time.perf_counter()
        y = await batcher.submit(np.ones((1, 3), np.float32))
        assert (y == 2).all()
        return time.perf_counter() - start

    seconds = asyncio.run(once())
    assert seconds < 0.5  # the delay is 2 s: it only applies once others are queued
    assert calls == [1]


@pytest.mark.parametrize(("in_flight", "waits"), [(2, False), (3, True)])
def test_a_forming_batch_waits_only_for_requests_being_read(in_flight: int, waits: bool) -> None:
    """Two requests queued together: with only those two in flight nothing more can come, so the
    batch runs at once; with a third being read, it waits (up to the delay) for it."""
    batcher, calls = _batcher(lambda x: x, max_queue_delay=0.5, in_flight=lambda: in_flight)

    async def pair() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(batcher.submit(np.ones((1, 2), np.float32)) for _ in range(2)))
        return time.perf_counter() - start

    seconds = asyncio.run(pair())
    assert calls == [2]
    assert (seconds >= 0.5) if waits else (seconds < 0.25)

    def forward(x: np.ndarray) -> np.ndarray:
        time.sleep(0.01)
        if np.isnan(x).any():
            raise ValueError("bad rows")
        return x + 1

    batcher, calls = _batcher(forward, max_batch_size=8, max_queue_delay=0.05)

    async def burst() -> list[object]:
        xs = [np.full((3, 2), i, np.float32) for i in range(6)]
        xs[4][0, 0] = np.nan
        return await asyncio.gather(*(batcher.submit(x) for x in xs), return_exceptions=True)

    results = asyncio.run(burst())
    assert isinstance(results[4], ValueError)
    for i, r in enumerate(results):
        if i != 4:
            np.testing.assert_array_equal(r, np.full((3, 2), i + 1, np.float32))
    assert max(calls) <= 8  # 3-row requests: at most two per call under max_batch_size=8
    assert any(rows == 6 for rows in calls)


# -- bad requests ---------------------------------------------------------------------------------

X1 = [0.0] * 64


def _infer(inputs: list[dict], **extra) -> dict:
    return {"inputs": inputs, **extra}


def _binary(claimed: int, sent: int) -> dict:
    """A binary-extension request whose input claims ``claimed`` bytes and carries ``sent``."""
    head = json.dumps(
        _infer(
            [
                {
                    "name": "x",
                    "shape": [1, 1, 8, 8],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": claimed},
                }
            ]
        )
    ).encode()
    return {
        "content": head + b"\0" * sent,
        "headers": {"Inference-Header-Content-Length": str(len(head))},
    }


BAD = [
    (
        "malformed JSON",
        "/v2/models/digits_cnn/infer",
        {"content": b"{not json"},
        400,
        "not valid JSON",
    ),
    ("no inputs", "/v2/models/digits_cnn/infer", {"json": {"inputs": []}}, 400, "non-empty"),
    (
        "wrong datatype",
        "/v2/models/digits_cnn/infer",
        {
            "json": _infer(
                [{"name": "x", "shape": [1, 1, 8, 8], "datatype": "BYTES", "data": ["a"] * 64}]
            )
        },
        400,
        "takes numbers",
    ),
    (
        "unknown datatype",
        "/v2/models/digits_cnn/infer",
        {"json": _infer([{"name": "x", "shape": [1, 1, 8, 8], "datatype": "FP99", "data": X1}])},
        400,
        "not an Open Inference Protocol datatype",
    ),
    (
        "shape against the signature",
        "/v2/models/digits_cnn/infer",
        {"json": _infer([{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": X1}])},
        400,
        "takes [-1, 1, 8, 8]",
    ),
    (
        "data that does not fill its shape",
        "/v2/models/digits_cnn/infer",
        {"json": _infer([{"name": "x", "shape": [2, 1, 8, 8], "datatype": "FP32", "data": X1}])},
        400,
        "64 values for shape [2, 1, 8, 8]",
    ),
    (
        "unknown input",
        "/v2/models/digits_cnn/infer",
        {
            "json": _infer(
                [{"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": X1}]
            )
        },
        400,
        "missing input(s) x",
    ),
    (
        "unknown output",
        "/v2/models/digits_cnn/infer",
        {
            "json": _infer(
                [{"name": "x", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": X1}],
                outputs=[{"name": "logits"}],
            )
        },
        400,
        "has no output logits",
    ),
    (
        "NaN",
        "/v2/models/digits_cnn/infer",
        {
            "content": b'{"inputs":[{"name":"x","shape":[1,1,8,8],"datatype":"FP32","data":[NaN'
            + b",0" * 63
            + b"]}]}"
        },
        400,
        "NaN",
    ),
    (
        "a batch over the limit",
        "/v2/models/digits_cnn/infer",
        {
            "json": _infer(
                [{"name": "x", "shape": [65, 1, 8, 8], "datatype": "FP32", "data": X1 * 65}]
            )
        },
        413,
        "at most 64",
    ),
    ("unknown model", "/v2/models/nope/infer", {"json": _infer([])}, 404, "unknown model 'nope'"),
    (
        "unknown version",
        "/v2/models/digits_cnn/versions/9/infer",
        {"json": _infer([{"name": "x", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": X1}])},
        404,
        "no version '9'",
    ),
    (
        "a binary header longer than the body",
        "/v2/models/digits_cnn/infer",
        {"content": b'{"inputs":[]}', "headers": {"Inference-Header-Content-Length": "9999"}},
        400,
        "Inference-Header-Content-Length is 9999",
    ),
    (
        "binary data shorter than it claims",
        "/v2/models/digits_cnn/infer",
        _binary(claimed=256, sent=100),
        400,
        "binary_data_size 256 runs past",
    ),
    (
        "binary data of the wrong size",
        "/v2/models/digits_cnn/infer",
        _binary(claimed=100, sent=100),
        400,
        "100 bytes of FP32 data",
    ),
    ("an unknown route", "/v2/nothing", {"json": {}}, 404, "Not Found"),
]


@pytest.mark.parametrize(
    ("what", "path", "kwargs", "status", "needle"), BAD, ids=[b[0] for b in BAD]
)
def test_bad_requests_get_a_4xx_with_the_reason(
    server: Served, what: str, path: str, kwargs: dict, status: int, needle: str
) -> None:
    response = server.post(path, **kwargs)
    assert response.status_code == status, response.text
    assert needle in response.json()["error"]
    assert server.get("/v2/health/ready").status_code == 200  # and the server goes on


def test_a_body_over_the_size_limit_gets_413(exported: Exported, tmp_path: Path) -> None:
    with serve(
        exported.repo, "--model", "digits_cnn", "--max-request-mb", "0.01", log_dir=tmp_path
    ) as s:
        x = [0.0] * 64 * 60  # about 16 KB of JSON
        body = _infer([{"name": "x", "shape": [60, 1, 8, 8], "datatype": "FP32", "data": x}])
        response = s.post("/v2/models/digits_cnn/infer", json=body)
        assert response.status_code == 413
        assert "at most 10485" in response.json()["error"]
        assert s.get("/v2/health/live").status_code == 200


# -- repository, versions, readiness ------------------------------------------------------------


def test_versions_latest_pinned_and_all(
    exported: Exported, tmp_path: Path, digits: Reference
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(exported.repo / "digits_cnn", repo / "digits_cnn")
    second = repo / "digits_cnn" / "2"
    shutil.copytree(repo / "digits_cnn" / "1", second)
    doc = json.loads((second / "signature.json").read_text())
    doc["version"] = 2
    (second / "signature.json").write_text(json.dumps(doc))
    x = digits.raw["x"][:2]
    body = _infer(
        [{"name": "x", "shape": [2, 1, 8, 8], "datatype": "FP32", "data": x.ravel().tolist()}]
    )
    with serve(repo, "--all-versions", log_dir=tmp_path) as s:
        assert s.get("/v2/models/digits_cnn").json()["versions"] == ["1", "2"]
        assert s.post("/v2/models/digits_cnn/infer", json=body).json()["model_version"] == "2"
        assert (
            s.post("/v2/models/digits_cnn/versions/1/infer", json=body).json()["model_version"]
            == "1"
        )
        assert s.get("/v2/models/digits_cnn/versions/1/ready").json()["ready"] is True
        index = s.post("/v2/repository/index").json()
        assert [(m["name"], m["version"], m["state"]) for m in index] == [
            ("digits_cnn", "1", "READY"),
            ("digits_cnn", "2", "READY"),
        ]
    with serve(repo, "--model", "digits_cnn:1", log_dir=tmp_path) as s:
        assert s.get("/v2/models/digits_cnn").json()["versions"] == ["1"]
        assert s.post("/v2/models/digits_cnn/versions/2/infer", json=body).status_code == 404


def test_unload_and_load_over_rest_and_grpc(server: Served) -> None:
    import tritonclient.grpc as triton

    assert server.post("/v2/repository/models/breast_cancer_mlp/unload").status_code == 200
    response = server.get("/v2/models/breast_cancer_mlp/ready")
    assert response.status_code == 503 and response.json()["ready"] is False
    infer = server.post("/v2/models/breast_cancer_mlp/infer", json=_infer([]))
    assert infer.status_code == 503 and "not loaded" in infer.json()["error"]
    assert server.get("/v2/health/ready").status_code == 200  # the other models serve
    client = triton.InferenceServerClient(server.grpc)
    client.load_model("breast_cancer_mlp")
    assert client.is_model_ready("breast_cancer_mlp")
    states = {m.name: m.state for m in client.get_model_repository_index().models}
    assert states["breast_cancer_mlp"] == "READY"
    assert server.post("/v2/repository/models/nope/load").status_code == 404


def test_readiness_is_false_while_a_model_loads(exported: Exported) -> None:
    from mlx.deploy.server import Entry, Settings, create_app

    app = create_app(Settings(repository=str(exported.repo), models=["digits_cnn"], grpc_port=None))
    server = app.state.server

    async def check() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mlx") as client:
            server.registry.entries["digits_cnn"] = {1: Entry("digits_cnn", 1)}  # LOADING
            assert (await client.get("/v2/health/ready")).status_code == 503
            model = await client.get("/v2/models/digits_cnn/ready")
            assert model.status_code == 503 and "loading" in model.json()["error"]
            await server.registry.load("digits_cnn", 1)
            assert (await client.get("/v2/health/ready")).status_code == 200

    asyncio.run(check())


# -- refusals before serving ----------------------------------------------------------------------


def _refused(*args: str) -> str:
    proc = subprocess.run([MLX, "serve", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("mlx: error:") and "Traceback" not in proc.stderr
    return " ".join(proc.stderr.split())


def test_serve_refuses_a_bad_repository_by_name(exported: Exported, tmp_path: Path) -> None:
    assert "is not a folder" in _refused(str(tmp_path / "nothing"))
    repo = tmp_path / "repo"
    shutil.copytree(exported.repo / "digits_cnn", repo / "digits_cnn")
    assert "has no model 'other'" in _refused(str(repo), "--model", "other")
    assert "has no version '3'" in _refused(str(repo), "--model", "digits_cnn:3")
    model = repo / "digits_cnn" / "1" / "model.onnx"
    model.write_bytes(model.read_bytes()[:1000])
    assert f"{model} does not match the digest" in _refused(str(repo))
    (repo / "digits_cnn" / "1" / "signature.json").unlink()
    assert "digits_cnn/1 holds no signature.json" in _refused(str(repo))
    assert "--max-batch-size must be >= 1" in _refused(str(exported.repo), "--max-batch-size", "0")


def test_serve_refuses_a_port_in_use(exported: Exported) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert f"cannot listen on 127.0.0.1:{port}" in _refused(
            str(exported.repo), "--http-port", str(port), "--grpc-port", str(free_port())
        )


# -- observability --------------------------------------------------------------------------------


def test_access_log_and_metrics(server: Served) -> None:
    server.post("/v2/models/nope/infer", json=_infer([]))
    lines = [
        json.loads(line) for line in server.log.read_text().splitlines() if line.startswith("{")
    ]
    assert any(e["path"] == "/v2/models/nope/infer" and e["status"] == 404 for e in lines)
    assert all({"time", "method", "path", "status", "ms"} <= set(e) for e in lines)
    text = server.get("/metrics").text
    for name in (
        "mlx_requests_total",
        "mlx_request_seconds_bucket",
        "mlx_batch_rows_bucket",
        "mlx_queue_depth",
        "mlx_model_ready",
    ):
        assert name in text
    assert server.metric("mlx_model_ready", model="digits_cnn", version="1") == 1
    # a made-up model name does not become a metrics label
    assert 'model="nope"' not in text


@pytest.mark.slow
def test_several_workers_share_the_ports_and_the_metrics(
    exported: Exported, tmp_path: Path
) -> None:
    import tritonclient.grpc as triton

    with serve(exported.repo, "--model", "digits_cnn", "--workers", "2", log_dir=tmp_path) as s:
        body = _infer([{"name": "x", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": X1}])
        for _ in range(20):
            with httpx.Client() as client:  # a new connection each time: either worker answers
                assert (
                    client.post(f"{s.url}/v2/models/digits_cnn/infer", json=body).status_code == 200
                )
        assert triton.InferenceServerClient(s.grpc).is_model_ready("digits_cnn")
        assert (
            s.metric("mlx_requests_total", model="digits_cnn", protocol="rest", status="200") == 20
        )


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_or_schema_violation(
    server: Served, tmp_path: Path
) -> None:
    """Fuzz the REST API from the server's own OpenAPI document (unload is left out: it would
    take the models away from the rest of the run)."""
    proc = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "all",
            # the document cannot say which shapes a model takes: a schema-valid body may still
            # be refused with 400, which is right
            "--exclude-checks",
            "positive_data_acceptance",
            "--exclude-path-regex",
            "/unload$",
            "--max-examples",
            "60",
            "--generation-deterministic",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "No issues found" in proc.stdout
    assert server.get("/v2/health/ready").status_code == 200
