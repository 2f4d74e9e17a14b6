"""The container and cluster files written into a model repository: a Dockerfile that bakes the
repository into an ``mlx serve`` image, and Kubernetes manifests that run it (a Deployment, a
Service and a HorizontalPodAutoscaler, or a KServe InferenceService instead of the three).

The repository folder is the Docker build context::

    <repo>/Dockerfile, .dockerignore, requirements-serve.txt
    <repo>/wheels/mlx-<version>-py3-none-any.whl     (mlx_wheel)
    <repo>/<name>/<version>/...                      (the models, copied to /models)
    <repo>/k8s/deployment.yaml, service.yaml, hpa.yaml, inferenceservice.yaml

The image installs the server's requirements pinned to the versions installed here, and mlx's
own wheel without its dependencies (the server needs neither torch nor Hydra). This module
imports PyYAML and NumPy (through the repository's signature module); hatchling only inside
:func:`mlx_wheel`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from mlx.deploy.repository import models
from mlx.errors import ConfigError, paragraph
from mlx.record import write_text

log = logging.getLogger("mlx")

# the image's user: a fixed number, so that Kubernetes' runAsNonRoot can check it
UID = 10001
# the distributions the server imports, with the extras it needs (pinned in requirements-serve.txt)
SERVER_REQUIREMENTS = {
    "numpy": "",
    "onnxruntime": "",
    "fastapi": "",
    "uvicorn": "standard",
    "prometheus-client": "",
    "grpcio": "",
    "protobuf": "",
    "tritonclient": "grpc",
    "rich": "",
    # the REST codec (mlx.deploy.protocol)
    "orjson": "",
}
# the container's platform, for the environment markers of what those require
CONTAINER_MARKERS = {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix"}
# KServe names the predictor's Service "<name>-predictor"; Kubernetes names are at most 63 long
MAX_NAME = 63 - len("-predictor")
# a Service and a KServe InferenceService need a DNS-1035 label: a DNS-1123 label that starts
# with a letter
LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# a Kubernetes resource quantity (apimachinery's resource.Quantity)
QUANTITY = re.compile(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
# options of `mlx serve` that the files set from their own parameters
OWN_OPTIONS = ("--host", "--http-port", "--grpc-port")
# where pods scrape Prometheus metrics and probe health (the server's paths)
METRICS_PATH = "/metrics"
READY_PATH = "/v2/health/ready"
LIVE_PATH = "/v2/health/live"
WHEELS = "wheels"


def kubernetes_name(name: str) -> str:
    """The Kubernetes name of model ``name``: lowercase, with ``_`` and ``.`` as ``-``
    (``digits_cnn`` -> ``digits-cnn``). It may still be invalid (``_x``): see
    :func:`write_cluster_files`."""
    return name.lower().replace("_", "-").replace(".", "-")


def write_cluster_files(
    repo: Path,
    *,
    name: str,
    image: str = "mlx-serve:latest",
    http_port: int = 8000,
    grpc_port: int = 8001,
    replicas: int = 2,
    min_replicas: int = 1,
    max_replicas: int = 8,
    cpu_target_percent: int = 70,
    cpu: str = "1",
    memory: str = "1Gi",
    server_args: list[str] | None = None,
) -> list[Path]:
    """Write the Docker build files and Kubernetes manifests into model repository ``repo``.

    The Dockerfile copies every model folder of ``repo`` (and ``name``'s, which must exist by
    the time the image is built) to ``/models``; call this again after exporting another model.
    The image also needs mlx's wheel in ``repo/wheels/``: see :func:`mlx_wheel`. Apply either
    ``k8s/deployment.yaml``, ``service.yaml`` and ``hpa.yaml`` (plain Kubernetes) or
    ``k8s/inferenceservice.yaml`` (KServe), not both.

    Args:
        repo: the model repository folder (the Docker build context).
        name: the model's name; the Kubernetes objects are named after it (``digits_cnn`` ->
            ``digits-cnn``).
        image: the image reference the manifests run (build it with that tag).
        http_port: the server's REST port (Open Inference Protocol v2, health, metrics).
        grpc_port: the server's gRPC port.
        replicas: pods at start.
        min_replicas: the autoscaler's floor.
        max_replicas: the autoscaler's ceiling.
        cpu_target_percent: the CPU utilisation (of the request) the autoscaler keeps pods at.
        cpu: CPU request and limit of one pod (a Kubernetes quantity: ``1``, ``500m``).
        memory: memory request and limit of one pod (``1Gi``, ``512Mi``).
        server_args: more ``mlx serve`` options (``--max-batch-size 64 --workers 2``...).

    Returns:
        The files written: the Dockerfile, ``.dockerignore``, ``requirements-serve.txt`` and
        the four manifests.

    Raises:
        ConfigError: a bad parameter, or a server package that is not installed here (its
            version cannot be pinned); nothing is written then.
    """
    repo = Path(repo)
    args = [str(a) for a in server_args or []]
    errors = _check(
        name,
        image,
        http_port,
        grpc_port,
        replicas,
        min_replicas,
        max_replicas,
        cpu_target_percent,
        cpu,
        memory,
        args,
    )
    requirements = _requirements(errors)
    if errors or requirements is None:
        raise ConfigError(paragraph(errors) + ".")
    command = [
        "mlx",
        "serve",
        "/models",
        "--host",
        "0.0.0.0",
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
        *args,
    ]
    folders = sorted(set(models(repo)) | {name}) if repo.is_dir() else [name]
    k8s = kubernetes_name(name)
    pod = _pod(k8s, image, command, http_port, grpc_port, cpu, memory)
    files = {
        "Dockerfile": _dockerfile(folders, command, http_port, grpc_port),
        ".dockerignore": DOCKERIGNORE,
        "requirements-serve.txt": requirements,
        "k8s/deployment.yaml": _yaml(_deployment(k8s, pod, replicas), PLAIN),
        "k8s/service.yaml": _yaml(_service(k8s, http_port, grpc_port), PLAIN),
        "k8s/hpa.yaml": _yaml(_hpa(k8s, min_replicas, max_replicas, cpu_target_percent), PLAIN),
        "k8s/inferenceservice.yaml": _yaml(
            _inference_service(k8s, pod, min_replicas, max_replicas, cpu_target_percent, http_port),
            KSERVE,
        ),
    }
    written = []
    for relative, text in files.items():
        path = repo / relative
        write_text(path, text)
        written.append(path)
    return written


def _check(
    name: str,
    image: str,
    http_port: int,
    grpc_port: int,
    replicas: int,
    min_replicas: int,
    max_replicas: int,
    cpu_target_percent: int,
    cpu: str,
    memory: str,
    args: list[str],
) -> list[str]:
    errors = []
    k8s = kubernetes_name(str(name))
    if not LABEL.match(k8s) or len(k8s) > MAX_NAME:
        errors.append(
            f"the model name {name!r} cannot name Kubernetes objects: lowercased, with '_' and '.' as '-', it must "
            f"start with a letter, end with a letter or digit and be at most {MAX_NAME} characters ({k8s!r})"
        )
    for option, port in (("http_port", http_port), ("grpc_port", grpc_port)):
        if not isinstance(port, int) or not 1024 <= port <= 65535:
            errors.append(
                f"{option} {port!r} must be a port from 1024 to 65535 (the server runs as a non-root user)"
            )
    if http_port == grpc_port:
        errors.append(
            f"http_port and grpc_port are both {http_port}: give the REST and gRPC servers a port each"
        )
    if min_replicas < 1 or min_replicas > max_replicas:
        errors.append(
            f"min_replicas ({min_replicas}) must be at least 1 and at most max_replicas ({max_replicas})"
        )
    elif not min_replicas <= replicas <= max_replicas:
        errors.append(
            f"replicas ({replicas}) must be between min_replicas ({min_replicas}) and max_replicas ({max_replicas})"
        )
    if not 1 <= cpu_target_percent <= 100:
        errors.append(f"cpu_target_percent ({cpu_target_percent}) must be from 1 to 100")
    for option, value in (("cpu", cpu), ("memory", memory)):
        if not QUANTITY.match(str(value)):
            errors.append(
                f"{option} {value!r} is not a Kubernetes quantity (such as 1, 500m, 1Gi, 512Mi)"
            )
    if not image or re.search(r"\s", image):
        errors.append(
            f"image {image!r} is not an image reference (such as mlx-serve:latest or registry.example.com/team/mlx-serve:1)"
        )
    own = [a for a in args if a.split("=")[0] in OWN_OPTIONS]
    if own:
        errors.append(
            f"server_args may not set {', '.join(own)}: the container files set the host and ports themselves"
        )
    return errors


def _requirements(errors: list[str]) -> str | None:
    """requirements-serve.txt: the server's distributions and everything they require, pinned
    to the versions installed here (None, with the missing ones in ``errors``)."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.version import Version

    environment = {
        **CONTAINER_MARKERS,
        "python_version": f"{sys.version_info.major}.{sys.version_info.minor}",
    }
    pinned: dict[str, str] = {}
    todo = list(SERVER_REQUIREMENTS.items())
    seen = set()
    missing = []
    while todo:
        name, extra = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if (key, extra) in seen:
            continue
        seen.add((key, extra))
        try:
            dist = metadata.distribution(key)
        except metadata.PackageNotFoundError:
            missing.append(key)
            continue
        pinned[key] = Version(dist.version).public
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({**environment, "extra": extra}):
                todo += [(req.name, x) for x in sorted(req.extras) or [""]]
    if missing:
        errors.append(
            f"the server's packages must be installed where its container files are written (their versions "
            f"are pinned in requirements-serve.txt): {', '.join(sorted(set(missing)))} is not installed"
        )
        return None
    top = [
        f"{n}[{e}]=={pinned[n]}" if e else f"{n}=={pinned[n]}"
        for n, e in SERVER_REQUIREMENTS.items()
    ]
    rest = [f"{n}=={v}" for n, v in sorted(pinned.items()) if n not in SERVER_REQUIREMENTS]
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    return "\n".join(
        [
            "# Written by mlx: what `mlx serve` needs, pinned to the versions installed where the",
            f"# model was exported (Python {python}). The image installs mlx itself from wheels/.",
            *top,
            "# what those require, as installed there",
            *rest,
            "",
        ]
    )


def _dockerfile(folders: list[str], command: list[str], http_port: int, grpc_port: int) -> str:
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    probe = f"import urllib.request as u; u.urlopen('http://127.0.0.1:{http_port}{READY_PATH}', timeout=2)"
    copies = [f"COPY {f}/ /models/{f}/" for f in folders]
    return "\n".join(
        [
            "# Written by mlx: the mlx model server with this model repository in it. Build it here",
            "# (this folder is the build context): docker build -t mlx-serve:latest .",
            f"# Python {python}: the version requirements-serve.txt was pinned with.",
            f"FROM python:{python}-slim",
            "",
            "ENV PYTHONDONTWRITEBYTECODE=1 \\",
            "    PYTHONUNBUFFERED=1 \\",
            "    PIP_DISABLE_PIP_VERSION_CHECK=1 \\",
            "    PIP_ROOT_USER_ACTION=ignore",
            "",
            "COPY requirements-serve.txt /tmp/requirements-serve.txt",
            "RUN pip install --no-cache-dir -r /tmp/requirements-serve.txt",
            "# mlx without its dependencies: serving needs none of its training stack",
            f"COPY {WHEELS}/ /tmp/{WHEELS}/",
            f"RUN pip install --no-cache-dir --no-deps /tmp/{WHEELS}/mlx-*.whl \\",
            f"    && groupadd --system --gid {UID} mlx \\",
            f"    && useradd --system --no-log-init --uid {UID} --gid {UID} --no-create-home --shell /usr/sbin/nologin mlx",
            "",
            "# the models, owned by root and read-only to the server",
            *copies,
            "",
            f"USER {UID}:{UID}",
            f"EXPOSE {http_port} {grpc_port}",
            "# slim images have no curl: Python asks the server whether every model is ready",
            f"HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 CMD {json.dumps(['python', '-c', probe])}",
            f"ENTRYPOINT {json.dumps(command)}",
            "",
        ]
    )


DOCKERIGNORE = """\
# Written by mlx: what the image build leaves out of this folder
k8s/
wheels/README.txt
**/.export-*
**/*.tmp
**/__pycache__/
**/*.pyc
**/.cache/
**/.DS_Store
.git/
"""

PLAIN = (
    "# Written by mlx. Plain Kubernetes: kubectl apply -f k8s/deployment.yaml -f k8s/service.yaml -f k8s/hpa.yaml\n"
    "# (on a cluster with KServe, apply k8s/inferenceservice.yaml instead of these three)\n"
)
KSERVE = (
    "# Written by mlx. KServe: kubectl apply -f k8s/inferenceservice.yaml\n"
    "# (instead of deployment.yaml, service.yaml and hpa.yaml: KServe makes its own)\n"
)


def _yaml(obj: dict[str, Any], header: str) -> str:
    return header + yaml.safe_dump(obj, sort_keys=False, default_flow_style=False)


def _labels(k8s: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": k8s,
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/managed-by": "mlx",
    }


def _pod(
    k8s: str, image: str, command: list[str], http_port: int, grpc_port: int, cpu: str, memory: str
) -> dict[str, Any]:
    """The pod's parts shared by the Deployment and the InferenceService."""
    probe = {"timeoutSeconds": 2, "periodSeconds": 5, "failureThreshold": 3}
    container = {
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "ports": [
            {"name": "http", "containerPort": http_port, "protocol": "TCP"},
            {"name": "grpc", "containerPort": grpc_port, "protocol": "TCP"},
        ],
        # loading the models may take a while: liveness starts once the server answers
        "startupProbe": {
            "httpGet": {"path": LIVE_PATH, "port": "http"},
            "periodSeconds": 2,
            "failureThreshold": 60,
        },
        "readinessProbe": {"httpGet": {"path": READY_PATH, "port": "http"}, **probe},
        "livenessProbe": {
            "httpGet": {"path": LIVE_PATH, "port": "http"},
            **probe,
            "periodSeconds": 10,
        },
        "resources": {
            "requests": {"cpu": str(cpu), "memory": str(memory)},
            "limits": {"cpu": str(cpu), "memory": str(memory)},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return {
        "annotations": {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(http_port),
            "prometheus.io/path": METRICS_PATH,
        },
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": UID,
                "runAsGroup": UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            # the root filesystem is read-only; Python and the server may still want a scratch folder
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    }


def _deployment(k8s: str, pod: dict[str, Any], replicas: int) -> dict[str, Any]:
    spec = json.loads(json.dumps(pod["spec"]))
    spec["containers"][0] = {"name": "server", **spec["containers"][0]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": k8s, "labels": _labels(k8s)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": _labels(k8s)},
            # a new pod is ready before an old one goes: no request meets a missing server
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": _labels(k8s), "annotations": dict(pod["annotations"])},
                "spec": spec,
            },
        },
    }


def _service(k8s: str, http_port: int, grpc_port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": k8s, "labels": _labels(k8s)},
        "spec": {
            "type": "ClusterIP",
            "selector": _labels(k8s),
            "ports": [
                {
                    "name": "http",
                    "port": http_port,
                    "targetPort": "http",
                    "protocol": "TCP",
                    "appProtocol": "http",
                },
                {
                    "name": "grpc",
                    "port": grpc_port,
                    "targetPort": "grpc",
                    "protocol": "TCP",
                    "appProtocol": "kubernetes.io/h2c",
                },
            ],
        },
    }


def _hpa(k8s: str, min_replicas: int, max_replicas: int, cpu_target_percent: int) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": k8s, "labels": _labels(k8s)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": k8s},
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": cpu_target_percent},
                    },
                }
            ],
        },
    }


def _inference_service(
    k8s: str,
    pod: dict[str, Any],
    min_replicas: int,
    max_replicas: int,
    cpu_target_percent: int,
    http_port: int,
) -> dict[str, Any]:
    spec = json.loads(json.dumps(pod["spec"]))
    # KServe finds its container by this name, and a custom predictor's protocol in PROTOCOL
    # (its schema has no protocolVersion field: see KServe's predictor_custom.go)
    spec["containers"][0] = {
        "name": "kserve-container",
        **spec["containers"][0],
        "env": [{"name": "PROTOCOL", "value": "v2"}],
    }
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": k8s,
            "labels": _labels(k8s),
            "annotations": {
                # a Deployment, Service and HPA as above: Knative (serverless) allows one port only.
                # "RawDeployment" is the name every KServe release knows (newer ones also say "Standard")
                "serving.kserve.io/deploymentMode": "RawDeployment",
                # KServe's own scraping annotations point at Knative's queue-proxy; the pod's say where
                "serving.kserve.io/enable-prometheus-scraping": "false",
            },
        },
        "spec": {
            "predictor": {
                "minReplicas": min_replicas,
                "maxReplicas": max_replicas,
                "scaleMetric": "cpu",
                "scaleTarget": cpu_target_percent,
                "annotations": dict(pod["annotations"]),
                "labels": _labels(k8s),
                **spec,
            }
        },
    }


def mlx_wheel(dest: Path) -> Path | None:
    """Put mlx's wheel in folder ``dest`` (the image installs ``wheels/mlx-*.whl``).

    From a source checkout (a ``pyproject.toml`` of project ``mlx`` beside the ``mlx``
    package), the wheel is built with hatchling, offline, unless ``dest`` already holds one of
    the same version that is newer than every file it packs. Otherwise a wheel of this mlx
    version already in ``dest`` is kept; with none, ``dest/README.txt`` says how to put one
    there and None is returned. Other mlx wheels in ``dest`` are removed, so that the image
    installs exactly one.

    Args:
        dest: the folder for the wheel (``<repo>/wheels``).

    Returns:
        The wheel, or None when it must be built by hand.
    """
    from importlib import metadata

    import mlx

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = Path(mlx.__file__).resolve().parents[1]
    builder = _builder(root)
    version = builder.metadata.version if builder is not None else metadata.version("mlx")
    existing = sorted(dest.glob(f"mlx-{version}-*.whl"))
    if builder is not None:
        sources = [Path(f.path) for f in builder.recurse_included_files()] + [
            root / "pyproject.toml"
        ]
        newest = max(p.stat().st_mtime for p in sources)
        existing = [w for w in existing if w.stat().st_mtime >= newest]
    if existing:
        wheel = existing[-1]
    elif builder is None:
        write_text(dest / "README.txt", _readme(dest, version))
        log.warning(
            "mlx was not installed from a source checkout: put its wheel in %s by hand (see README.txt there)",
            dest,
        )
        return None
    else:
        scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=dest))
        try:
            (built,) = builder.build(directory=str(scratch), versions=["standard"])
            wheel = dest / Path(built).name
            os.replace(built, wheel)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    for other in dest.glob("mlx-*.whl"):
        if other != wheel:
            other.unlink()
    (dest / "README.txt").unlink(missing_ok=True)
    return wheel


def _builder(root: Path) -> Any:
    """hatchling's wheel builder for the source checkout at ``root``; None when mlx is not run
    from one (or hatchling is not installed)."""
    if not (root / "pyproject.toml").is_file() or not (root / "mlx" / "__init__.py").is_file():
        return None
    try:
        from hatchling.builders.wheel import WheelBuilder
    except ImportError:
        log.warning("hatchling is not installed: mlx's wheel cannot be built from %s", root)
        return None
    builder = WheelBuilder(str(root))
    return builder if builder.metadata.name == "mlx" else None


def _readme(dest: Path, version: str) -> str:
    return (
        f"mlx's wheel (version {version}) goes in this folder: the image installs {WHEELS}/mlx-*.whl,\n"
        "without its dependencies. It was not built here, because mlx was not run from a source\n"
        "checkout. In mlx's source checkout (the same version), run:\n\n"
        f"    python -m build --wheel -o {dest.resolve()}\n\n"
        "or copy the wheel mlx was installed from into this folder.\n"
    )
