"""The ``deployment`` group's objects: where and how the run's final model is exported and served.

``conf/deployment/datacenter.yaml`` and ``embedded.yaml`` build a :class:`Deployment`; its
parts are plain settings objects. This module imports nothing heavy.
"""

from __future__ import annotations

import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Interval

from mlx.deploy.signature import NAME
from mlx.errors import ConfigError, paragraph

FORMATS = ("onnx", "torchscript")
# the packages of the embedded runtime (with what they require)
EMBEDDED_RUNTIME = ("onnxruntime", "numpy")


@dataclass
class ServerSettings:
    """How ``mlx serve`` runs the model (written into the container files).

    Args:
        max_batch_size: the most rows one model call takes (dynamic batching joins concurrent
            requests up to it; a single request over it is refused with 413).
        max_queue_delay_ms: how long a forming batch waits for more requests once others are
            queued (0: never wait); a lone request never waits.
        threads: CPU threads of one model call.
        workers: server processes (each loads every model).
    """

    max_batch_size: Annotated[int, Ge(1)] = 64
    max_queue_delay_ms: Annotated[float, Ge(0)] = 2.0
    threads: Annotated[int, Ge(1)] = 1
    workers: Annotated[int, Ge(1)] = 1

    def args(self) -> list[str]:
        return [
            "--max-batch-size", str(self.max_batch_size),
            "--max-queue-delay-ms", f"{self.max_queue_delay_ms:g}",
            "--threads", str(self.threads),
            "--workers", str(self.workers),
        ]  # fmt: skip


@dataclass
class ClusterSettings:
    """The container and Kubernetes files written beside the repository (datacenter target).

    Args:
        image: the server image the manifests run.
        replicas: pods at start.
        min_replicas: the autoscaler's floor.
        max_replicas: the autoscaler's ceiling.
        cpu_target_percent: CPU utilisation the autoscaler keeps pods at.
        cpu: CPU request (and limit) of one pod.
        memory: memory request (and limit) of one pod.
    """

    image: str = "mlx-serve:latest"
    replicas: Annotated[int, Ge(1)] = 2
    min_replicas: Annotated[int, Ge(1)] = 1
    max_replicas: Annotated[int, Ge(1)] = 8
    cpu_target_percent: Annotated[int, Interval(ge=1, le=100)] = 70
    cpu: str = "1"
    memory: str = "1Gi"


@dataclass
class Budget:
    """What an embedded device affords, checked on the exported model before it is published.

    Args:
        max_size_kb: the model file's size.
        max_latency_ms: median time of one example on one CPU thread (ONNX Runtime).
    """

    max_size_kb: Annotated[float, Gt(0)] | None = None
    max_latency_ms: Annotated[float, Gt(0)] | None = None

    def check(self, folder: Path, model: Any, example: Any, repeats: int = 50) -> dict[str, Any]:
        """The measured size and latency; raises DeployError with the numbers and a
        suggestion when the model is over budget."""
        from mlx.deploy.export import DeployError

        size_kb = (folder / model.sig.files["onnx"]).stat().st_size / 1024
        for _ in range(5):
            model.forward(example)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model.forward(example)
            times.append((time.perf_counter() - start) * 1000)
        latency = statistics.median(times)
        measured = {
            "size_kb": round(size_kb, 1),
            "latency_ms_p50": round(latency, 4),
            "max_size_kb": self.max_size_kb,
            "max_latency_ms": self.max_latency_ms,
            "runtime_installed_mb": round(installed_mb(EMBEDDED_RUNTIME), 1),
        }
        over = []
        int8 = bool(model.sig.raw.get("int8"))
        if self.max_size_kb is not None and size_kb > self.max_size_kb:
            hint = (
                "prune it harder (compression.prune.amount) or choose a smaller model"
                if int8
                else "add compression=[prune,quantize]: int8 weights take a quarter of the bytes"
            )
            over.append(
                f"its model file is {size_kb:.1f} KB, over max_size_kb={self.max_size_kb:g} ({hint})"
            )
        if self.max_latency_ms is not None and latency > self.max_latency_ms:
            over.append(
                f"one example takes {latency:.3f} ms (median of {repeats} on one thread), over "
                f"max_latency_ms={self.max_latency_ms:g} (add compression=[prune] or "
                "compression=[distill,prune] to cut the work per example, or quantize it)"
            )
        if over:
            raise DeployError(
                "the model is over the embedded budget and was not exported: "
                + "; ".join(over)
                + "."
            )
        return measured


def installed_mb(packages: tuple[str, ...]) -> float:
    """Installed size of ``packages`` and everything they require (their files on disk)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = list(packages)
    total = 0
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        for f in dist.files or []:
            located = Path(str(f.locate()))
            if located.is_file():
                total += located.stat().st_size
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return total / 2**20


class Deployment:
    """The deploy stage's settings: export the run's final model to a model repository, with
    the files its target needs.

    Args:
        target: ``datacenter`` (throughput: batching, workers, container and cluster files) or
            ``embedded`` (a size and latency budget, ONNX only, a minimal runtime).
        repository: the model repository folder (``<repository>/<name>/<version>/``).
        name: the model's name; None: ``<data>_<model>``, the run's data and model options.
        formats: ``onnx`` (always written) and ``torchscript``.
        tolerance: the largest absolute output difference allowed between an exported file
            and the network, on held-out test examples.
        force: export a model the validation gate rejected (the signature says so).
        server: the serving settings (datacenter).
        cluster: the container and cluster files' settings (datacenter); None writes none.
        budget: the embedded budget; None checks none.
    """

    def __init__(
        self,
        target: Literal["datacenter", "embedded"],
        repository: str,
        name: str | None = None,
        formats: list[str] | None = None,
        tolerance: Annotated[float, Gt(0)] = 1e-4,
        force: bool = False,
        server: ServerSettings | None = None,
        cluster: ClusterSettings | None = None,
        budget: Budget | None = None,
    ) -> None:
        formats = list(formats or ["onnx"])
        errors = []
        if target not in ("datacenter", "embedded"):
            errors.append(f"deployment.target must be datacenter or embedded, not {target!r}")
        unknown = [f for f in formats if f not in FORMATS]
        if unknown:
            errors.append(
                f"deployment.formats: unknown format(s) {', '.join(map(str, unknown))} (formats: {', '.join(FORMATS)})"
            )
        if "onnx" not in formats:
            errors.append(
                "deployment.formats must include onnx (the server's and mlx predict's runtime)"
            )
        if name is not None and not NAME.match(str(name)):
            errors.append(
                f"deployment.name {name!r} must be letters, digits, '_', '.' or '-' (it names a folder and a URL path)"
            )
        if target == "embedded" and "torchscript" in formats:
            errors.append(
                "deployment=embedded ships ONNX only (its runtime is ONNX Runtime and NumPy): set deployment.formats=[onnx]"
            )
        if target == "embedded" and (server is not None or cluster is not None):
            errors.append(
                "deployment=embedded writes no server or cluster files: leave deployment.server and deployment.cluster null"
            )
        if budget is not None and target != "embedded":
            errors.append("deployment.budget is the embedded target's: use deployment=embedded")
        if cluster is not None:
            if cluster.min_replicas > cluster.max_replicas:
                errors.append(
                    f"deployment.cluster.min_replicas ({cluster.min_replicas}) is over max_replicas ({cluster.max_replicas})"
                )
            elif not cluster.min_replicas <= cluster.replicas <= cluster.max_replicas:
                errors.append(
                    f"deployment.cluster.replicas ({cluster.replicas}) must be between min_replicas and max_replicas"
                )
            if re.search(r"\s", cluster.image) or not cluster.image:
                errors.append(
                    f"deployment.cluster.image {cluster.image!r} is not an image reference"
                )
        if errors:
            raise ConfigError(paragraph(errors) + ".")
        self.target = target
        self.repository = Path(repository)
        self.name = name
        self.formats = formats
        self.tolerance = float(tolerance)
        self.force = bool(force)
        self.server = server
        self.cluster = cluster
        self.budget = budget
