"""``mlx serve``'s server: the Open Inference Protocol v2 over REST (FastAPI on uvicorn) and gRPC
(grpc.aio, on the same event loop), for every model version loaded from a model repository.

Each loaded version has a :class:`~mlx.deploy.batching.Batcher`; requests are decoded and
checked against the version's signature before they join a batch, so a client's mistake is
answered with a 4xx and ``{"error": "..."}`` and never reaches the model. Prometheus metrics are
served at ``/metrics``; one JSON line per request goes to the ``mlx.serve.access`` logger.

This module imports NumPy, ONNX Runtime, FastAPI, uvicorn, grpcio and prometheus_client; never
torch unless a TorchScript model is served.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from mlx import __version__
from mlx.deploy.batching import Batcher
from mlx.deploy.protocol import (
    EXTENSIONS,
    HEADER_LENGTH,
    InferRequest,
    decode_rest,
    decompress,
    encode_rest,
)
from mlx.deploy.repository import models as repository_models
from mlx.deploy.repository import versions as repository_versions
from mlx.deploy.runtime import ModelVersion, RequestError
from mlx.deploy.signature import ModelLoadError, read_signature

log = logging.getLogger("mlx.serve")
access = logging.getLogger("mlx.serve.access")

SETTINGS_ENV = "MLX_SERVE_SETTINGS"
LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass
class Settings:
    """What ``mlx serve`` was asked for (see ``mlx serve --help``)."""

    repository: str
    models: list[str] = field(default_factory=list)  # NAME or NAME:VERSION; empty: all models
    all_versions: bool = False
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int | None = 8001
    max_batch_size: int = 64
    max_queue_delay_ms: float = 2.0
    batching: bool = True
    threads: int = 1
    workers: int = 1
    max_request_mb: float = 64.0
    nan: str = "reject"
    runtime: str | None = None
    access_log: bool = True

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_mb * 2**20)


def wanted_versions(settings: Settings) -> list[tuple[str, int]]:
    """(name, version) of every version to load; raises ModelLoadError for a model or version
    the repository does not hold, and checks each version's signature and files."""
    repo = Path(settings.repository)
    found = repository_models(repo)
    if not found:
        raise ModelLoadError(
            f"{repo} holds no model versions (<name>/<version>/signature.json): export one with "
            "mlx run deployment=datacenter repository=... or mlx deploy ckpt_path=..."
        )
    chosen: list[tuple[str, int]] = []
    specs = settings.models or list(found)
    for spec in specs:
        name, _, pinned = spec.partition(":")
        if name not in found:
            raise ModelLoadError(f"{repo} has no model {name!r} (models: {', '.join(found)}).")
        if pinned:
            if not pinned.isdigit() or int(pinned) not in found[name]:
                raise ModelLoadError(
                    f"model {name} has no version {pinned!r} in {repo} (versions: "
                    f"{', '.join(map(str, found[name]))})."
                )
            chosen.append((name, int(pinned)))
        elif settings.all_versions:
            chosen += [(name, v) for v in found[name]]
        else:
            chosen.append((name, found[name][-1]))
    for name, version in chosen:
        read_signature(repo / name / str(version))  # names a missing or corrupt file
    return chosen


class Metrics:
    """The server's Prometheus metrics (one registry per app, or the multiprocess collector
    when several workers share them)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "mlx_requests", "Inference requests by model, protocol and status.",
            ["model", "protocol", "status"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "mlx_request_seconds", "Inference request latency, decode to encode.",
            ["model", "protocol"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_rows = Histogram(
            "mlx_batch_rows", "Rows per model call (dynamic batching joins requests).",
            ["model"], buckets=BATCH_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_requests = Histogram(
            "mlx_batch_requests", "Requests per model call.",
            ["model"], buckets=BATCH_BUCKETS, registry=r,
        )  # fmt: skip
        self.model_seconds = Histogram(
            "mlx_model_seconds", "Time of one model call.",
            ["model"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.queue = Gauge(
            "mlx_queue_depth", "Requests waiting for a model call.",
            ["model"], registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.ready = Gauge(
            "mlx_model_ready", "1 when the model version is loaded and serving.",
            ["model", "version"], registry=r, multiprocess_mode="livemax",
        )  # fmt: skip

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


@dataclass
class Entry:
    """One model version known to the server."""

    name: str
    version: int
    state: str = "LOADING"  # LOADING, READY, UNAVAILABLE (load failed or unloaded)
    reason: str = ""
    model: ModelVersion | None = None
    batcher: Batcher | None = None
    in_flight: int = 0  # its inference requests being read, checked or run (the batcher reads it)


class Registry:
    """The loaded model versions; loading happens in a worker thread, while the server answers
    (not ready) for the loading version."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        executor: ThreadPoolExecutor,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.executor = executor
        self.entries: dict[str, dict[int, Entry]] = {}

    def ready(self) -> bool:
        """Ready: nothing is loading and some version serves."""
        states = [e.state for vs in self.entries.values() for e in vs.values()]
        return "LOADING" not in states and "READY" in states

    async def load(self, name: str, version: int) -> Entry:
        entry = Entry(name, version)
        old = self.entries.get(name, {}).get(version)
        self.entries.setdefault(name, {})[version] = entry
        self.metrics.ready.labels(name, str(version)).set(0)
        folder = Path(self.settings.repository) / name / str(version)
        loop = asyncio.get_running_loop()
        try:
            model = await loop.run_in_executor(
                None,
                lambda: ModelVersion(
                    folder, runtime=self.settings.runtime, threads=self.settings.threads
                ),
            )
        except ModelLoadError as e:
            entry.state, entry.reason = "UNAVAILABLE", str(e)
            log.error("model %s version %d failed to load: %s", name, version, e)
            raise
        if old is not None and old.batcher is not None:
            old.batcher.close()
        m = self.metrics

        def observe(rows: int, requests: int, seconds: float) -> None:
            m.batch_rows.labels(name).observe(rows)
            m.batch_requests.labels(name).observe(requests)
            m.model_seconds.labels(name).observe(seconds)

        entry.model = model
        entry.batcher = Batcher(
            model.forward,
            max_batch_size=self.settings.max_batch_size,
            max_queue_delay=self.settings.max_queue_delay_ms / 1000,
            executor=self.executor,
            observe=observe,
            enabled=self.settings.batching,
            in_flight=lambda: entry.in_flight,
        )
        entry.state = "READY"
        m.ready.labels(name, str(version)).set(1)
        log.info("model %s version %d ready (%s)", name, version, model.runtime)
        return entry

    def unload(self, name: str) -> None:
        if name not in self.entries:
            raise RequestError(404, f"model {name!r} is not loaded.")
        for entry in self.entries[name].values():
            if entry.batcher is not None:
                entry.batcher.close()
            entry.state, entry.reason, entry.model, entry.batcher = (
                "UNAVAILABLE",
                "unloaded",
                None,
                None,
            )
            self.metrics.ready.labels(name, str(entry.version)).set(0)

    def get(self, name: str, version: str | None = None) -> Entry:
        """The entry a request names (its latest loaded version when none is given).

        Raises:
            RequestError: 404 for an unknown model or version, 503 for one not ready.
        """
        versions = self.entries.get(name)
        if not versions:
            known = ", ".join(self.entries) or "none"
            raise RequestError(404, f"unknown model {name!r} (models: {known}).")
        if version is None or version == "":
            live = [v for v, e in versions.items() if e.state != "UNAVAILABLE"]
            if not live:
                raise RequestError(
                    503,
                    f"model {name} is not loaded (load it: POST /v2/repository/models/{name}/load).",
                )
            entry = versions[max(live)]
        else:
            if not version.isdigit() or int(version) not in versions:
                known = ", ".join(str(v) for v in sorted(versions))
                raise RequestError(
                    404, f"model {name} has no version {version!r} loaded (versions: {known})."
                )
            entry = versions[int(version)]
        if entry.state != "READY":
            why = f": {entry.reason}" if entry.reason else ""
            raise RequestError(
                503, f"model {name} version {entry.version} is {entry.state.lower()}{why}."
            )
        return entry


class Server:
    """The state both protocols share: the registry, metrics, settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.executor = ThreadPoolExecutor(
            max_workers=max(4, settings.threads * 2), thread_name_prefix="mlx-model"
        )
        self.registry = Registry(settings, self.metrics, self.executor)

    async def load_all(self, wanted: list[tuple[str, int]]) -> None:
        for name, version in wanted:
            self.registry.entries.setdefault(name, {})[version] = Entry(name, version)
        for name, version in wanted:
            with contextlib.suppress(ModelLoadError):  # the entry says why; the others serve
                await self.registry.load(name, version)

    async def load_request(self, name: str) -> Entry:
        """The repository extension's load: the latest version of ``name`` (again)."""
        vs = repository_versions(Path(self.settings.repository), name)
        if not vs:
            raise RequestError(404, f"the repository has no model {name!r}.")
        try:
            return await self.registry.load(name, vs[-1])
        except ModelLoadError as e:
            raise RequestError(400, str(e)) from None

    def index(self) -> list[dict[str, Any]]:
        repo = Path(self.settings.repository)
        out = []
        for name, versions in repository_models(repo).items():
            for v in versions:
                e = self.registry.entries.get(name, {}).get(v)
                item = {"name": name, "version": str(v), "state": e.state if e else "UNAVAILABLE"}
                item["reason"] = e.reason if e else "not loaded"
                out.append(item)
        return out

    def metadata(self, entry: Entry) -> dict[str, Any]:
        sig = (
            entry.model.sig
            if entry.model is not None
            else read_signature(Path(self.settings.repository) / entry.name / str(entry.version))
        )
        versions = [
            str(v)
            for v, e in sorted(self.registry.entries[entry.name].items())
            if e.state == "READY"
        ]
        return {
            "name": entry.name,
            "versions": versions,
            "platform": "onnxruntime_onnx"
            if entry.model is None or entry.model.runtime == "onnx"
            else "pytorch_libtorch",
            "inputs": [t.as_dict() for t in sig.inputs],
            "outputs": [t.as_dict() for t in sig.outputs],
            "parameters": {
                "task": sig.task,
                "class_names": list(sig.class_names) if sig.class_names else None,
                "version": str(entry.version),
                "validation": (sig.raw.get("validation") or {}).get("verdict"),
                "forced": bool(sig.raw.get("forced")),
            },
        }

    async def infer(self, entry: Entry, request: InferRequest) -> dict[str, np.ndarray]:
        """Check, preprocess, batch, run and select outputs for one decoded request."""
        model = entry.model
        assert model is not None and entry.batcher is not None
        names = list(request.outputs) or None
        if names:
            model.check_outputs(names)
        inputs, _ = model.check(
            request.inputs, nan=self.settings.nan, max_batch=self.settings.max_batch_size
        )
        x = model.encode(inputs)
        self.metrics.queue.labels(entry.name).set(entry.batcher.depth + 1)
        try:
            y = await entry.batcher.submit(x)
        finally:
            self.metrics.queue.labels(entry.name).set(entry.batcher.depth)
        return model.outputs(y, names)

    def count(self, model: str, protocol: str, status: int, seconds: float) -> None:
        if model not in self.registry.entries:
            model = "_unknown"  # a client's made-up names must not grow the metrics without end
        self.metrics.requests.labels(model, protocol, str(status)).inc()
        if status == 200:
            self.metrics.latency.labels(model, protocol).observe(seconds)


# -- REST -------------------------------------------------------------------------------------------

_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
_TENSOR_IN = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {
            "type": "string",
            "enum": [
                "BOOL",
                "UINT8",
                "UINT16",
                "UINT32",
                "UINT64",
                "INT8",
                "INT16",
                "INT32",
                "INT64",
                "FP16",
                "FP32",
                "FP64",
                "BYTES",
            ],
        },
        "parameters": {"type": "object"},
        "data": {"type": "array"},
    },
}
_INFER_REQUEST = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "inputs": {"type": "array", "items": _TENSOR_IN, "minItems": 1},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
            },
        },
    },
}
_INFER_RESPONSE = {
    "type": "object",
    "required": ["model_name", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "outputs": {"type": "array", "items": {"type": "object"}},
    },
}


class AccessLog:
    """One JSON line per request on the ``mlx.serve.access`` logger: a plain ASGI wrapper (not
    Starlette's BaseHTTPMiddleware, whose task group and streams cost more than the rest of a
    small model's request)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def sending(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            client = scope.get("client")
            access.info(
                json.dumps(
                    {
                        "time": round(time.time(), 3),
                        "client": client[0] if client else None,
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "ms": round((time.perf_counter() - start) * 1000, 3),
                    }
                )
            )


def _responses(ok: dict[str, Any], *codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses: 200 with ``ok``'s schema, and each error code with ``{"error"}``."""
    why = {
        400: "a malformed or invalid request",
        404: "an unknown model or version",
        413: "a request over the size limits",
        503: "the model or server is not ready",
    }
    out: dict[int | str, dict[str, Any]] = {
        200: {"description": "OK", "content": {"application/json": {"schema": ok}}}
    }
    for code in codes:
        out[code] = {"description": why[code], "content": {"application/json": {"schema": _ERROR}}}
    return out


def create_app(
    settings: Settings | None = None, wanted: list[tuple[str, int]] | None = None
) -> Any:
    """The FastAPI app for ``settings`` (read from ``MLX_SERVE_SETTINGS`` when None: each worker
    process of ``--workers N`` builds its own) and the versions ``wanted_versions`` chose (found
    again when None)."""
    if settings is None:
        settings = Settings(**json.loads(os.environ[SETTINGS_ENV]))
    server = Server(settings)
    if wanted is None:
        wanted = wanted_versions(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        grpc_server = None
        if settings.grpc_port is not None:
            from mlx.deploy.grpc_service import start_grpc

            grpc_server = await start_grpc(server, settings.host, settings.grpc_port)
        loading = asyncio.create_task(server.load_all(wanted))
        app.state.loading = loading
        try:
            yield
        finally:
            loading.cancel()
            if grpc_server is not None:
                await grpc_server.stop(grace=1)
            for versions in server.registry.entries.values():
                for e in versions.values():
                    if e.batcher is not None:
                        e.batcher.close()
            server.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="mlx serve",
        version=__version__,
        description="The Open Inference Protocol (v2) for the models of an mlx model repository.",
        lifespan=lifespan,
    )
    app.state.server = server

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(400, f"invalid request: {exc.errors()[:3]}")

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        return error(exc.status, exc.message)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        # a bug, not the client's: answered, logged, and the server goes on
        log.error("request %s %s failed", request.method, request.url.path, exc_info=exc)
        return error(500, "internal server error (see the server's log)")

    if settings.access_log:
        app.add_middleware(AccessLog)

    @app.get("/v2", responses=_responses({"type": "object"}))
    async def server_metadata() -> dict[str, Any]:
        return {"name": "mlx", "version": __version__, "extensions": EXTENSIONS}

    @app.get("/v2/health/live", responses=_responses({"type": "object"}))
    async def live() -> dict[str, Any]:
        return {"live": True}

    @app.get("/v2/health/ready", responses=_responses({"type": "object"}, 503))
    async def ready() -> Any:
        ok = server.registry.ready()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def model_ready(name: str, version: str | None) -> Any:
        try:
            entry = server.registry.get(name, version)
        except RequestError as e:
            if e.status == 503:
                return JSONResponse(
                    {"name": name, "ready": False, "error": e.message}, status_code=503
                )
            raise
        return {"name": name, "version": str(entry.version), "ready": True}

    @app.get("/v2/models/{name}/ready", responses=_responses({"type": "object"}, 404, 503))
    async def ready_latest(name: str) -> Any:
        return await model_ready(name, None)

    @app.get(
        "/v2/models/{name}/versions/{version}/ready",
        responses=_responses({"type": "object"}, 404, 503),
    )
    async def ready_version(name: str, version: str) -> Any:
        return await model_ready(name, version)

    @app.get("/v2/models/{name}", responses=_responses({"type": "object"}, 404, 503))
    async def metadata_latest(name: str) -> Any:
        return server.metadata(server.registry.get(name))

    @app.get(
        "/v2/models/{name}/versions/{version}", responses=_responses({"type": "object"}, 404, 503)
    )
    async def metadata_version(name: str, version: str) -> Any:
        return server.metadata(server.registry.get(name, version))

    @app.get("/v2/models/{name}/config", responses=_responses({"type": "object"}, 404, 503))
    async def config(name: str) -> Any:
        entry = server.registry.get(name)
        meta = server.metadata(entry)
        return {
            "name": name,
            "platform": meta["platform"],
            "max_batch_size": settings.max_batch_size,
            "input": meta["inputs"],
            "output": meta["outputs"],
            "dynamic_batching": {
                "max_queue_delay_microseconds": int(settings.max_queue_delay_ms * 1000)
            }
            if settings.batching
            else None,
        }

    async def infer(request: Request, name: str, version: str | None) -> Response:
        start = time.perf_counter()
        status = 200
        entry = None
        try:
            length = request.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > settings.max_request_bytes:
                raise RequestError(
                    413,
                    f"the request body is {int(length)} bytes; this server takes at most {settings.max_request_bytes} (--max-request-mb).",
                )
            entry = server.registry.get(name, version)
            entry.in_flight += 1
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > settings.max_request_bytes:
                    raise RequestError(
                        413,
                        f"the request body is over {settings.max_request_bytes} bytes (--max-request-mb).",
                    )
            raw = decompress(bytes(body), request.headers.get("content-encoding"))
            decoded = decode_rest(raw, request.headers.get(HEADER_LENGTH))
            results = await server.infer(entry, decoded)
            content, headers = encode_rest(entry.name, entry.version, decoded, results)
            return Response(content, headers=headers)
        except RequestError as e:
            status = e.status
            return error(e.status, e.message)
        finally:
            if entry is not None:
                entry.in_flight -= 1
            server.count(name, "rest", status, time.perf_counter() - start)

    infer_doc = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _INFER_REQUEST}},
        }
    }

    @app.post(
        "/v2/models/{name}/infer",
        openapi_extra=infer_doc,
        responses=_responses(_INFER_RESPONSE, 400, 404, 413, 503),
    )
    async def infer_latest(request: Request, name: str) -> Response:
        return await infer(request, name, None)

    @app.post(
        "/v2/models/{name}/versions/{version}/infer",
        openapi_extra=infer_doc,
        responses=_responses(_INFER_RESPONSE, 400, 404, 413, 503),
    )
    async def infer_version(request: Request, name: str, version: str) -> Response:
        return await infer(request, name, version)

    @app.post("/v2/repository/index", responses=_responses({"type": "array"}))
    async def index() -> Any:
        return server.index()

    @app.post(
        "/v2/repository/models/{name}/load", responses=_responses({"type": "object"}, 400, 404)
    )
    async def load(name: str) -> Any:
        entry = await server.load_request(name)
        return {"name": name, "version": str(entry.version), "state": entry.state}

    @app.post("/v2/repository/models/{name}/unload", responses=_responses({"type": "object"}, 404))
    async def unload(name: str) -> Any:
        server.registry.unload(name)
        return {"name": name, "state": "UNAVAILABLE"}

    @app.get(
        "/metrics",
        responses={
            200: {
                "description": "Prometheus metrics",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    )
    async def metrics() -> Response:
        content, media = server.metrics.render()
        return Response(content, media_type=media)

    def openapi() -> dict[str, Any]:
        """FastAPI's document, with the served models' names and versions as the path
        parameters' values and a valid request body for the first model as the example, so
        that the docs page and API fuzzers reach real models."""
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            doc = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            name, version = wanted[0]
            names = sorted({n for n, _ in wanted})
            versions = sorted({str(v) for _, v in wanted}, key=int)
            sig = read_signature(Path(settings.repository) / name / str(version))
            inputs = [
                {
                    "name": t.name,
                    "shape": [1, *t.shape[1:]],
                    "datatype": t.datatype,
                    "data": _zeros(t),
                }
                for t in sig.inputs
            ]
            for path, methods in doc["paths"].items():
                for op in methods.values():
                    for param in op.get("parameters", []):
                        if param["in"] == "path":
                            values = names if param["name"] == "name" else versions
                            param["schema"]["enum"] = values
                            param["example"] = values[0]
                    if path.endswith("/infer"):
                        content = op["requestBody"]["content"]["application/json"]
                        content["example"] = {"inputs": inputs}
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    return app


def _zeros(t: Any) -> list[Any]:
    n = 1
    for s in t.shape[1:]:
        n *= s
    return [""] * n if t.datatype == "BYTES" else [0.0] * n


def run(settings: Settings, wanted: list[tuple[str, int]]) -> None:
    """Serve ``wanted`` (checked by :func:`wanted_versions`) until interrupted (Ctrl-C or
    SIGTERM)."""
    import uvicorn

    common = {
        "host": settings.host,
        "port": settings.http_port,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": 5,
    }
    if settings.workers == 1:
        uvicorn.run(create_app(settings, wanted), **common)
        return
    import tempfile

    os.environ[SETTINGS_ENV] = json.dumps(asdict(settings))
    with tempfile.TemporaryDirectory(prefix="mlx-serve-metrics-") as folder:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
        uvicorn.run(
            "mlx.deploy.server:create_app", factory=True, workers=settings.workers, **common
        )
