"""``mlx serve REPO [options]``: serve a model repository over the Open Inference Protocol."""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from typing import NoReturn

from mlx.deploy.runtime import NAN_POLICIES, RUNTIMES
from mlx.errors import UsageError

DESCRIPTION = """\
Serve the models of a model repository (REPO/<name>/<version>/, written by the deploy stage)
over the Open Inference Protocol v2: REST on --http-port (/v2/models/<name>/infer, health,
metadata, the repository extension, /metrics for Prometheus, /docs) and gRPC on --grpc-port.
Concurrent requests to one model are batched up to --max-batch-size rows; a lone request runs at
once. Each model loads its latest version unless --model NAME:VERSION pins one.

examples:
  mlx serve outputs/models
  mlx serve outputs/models --model digits_cnn:2 --http-port 9000 --grpc-port 9001
  curl -s localhost:8000/v2/models/digits_cnn
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help).")


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="mlx serve",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("repository", metavar="REPO", help="the model repository folder")
    p.add_argument(
        "--model", action="append", default=[], metavar="NAME[:VERSION]",
        help="serve only this model (repeat for several); :VERSION pins a version (default: all models, latest versions)",
    )  # fmt: skip
    p.add_argument(
        "--all-versions",
        action="store_true",
        help="load every version of each model, not only the latest",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (0.0.0.0 for every interface; default 127.0.0.1)",
    )
    p.add_argument("--http-port", type=int, default=8000, help="REST port (default 8000)")
    p.add_argument(
        "--grpc-port", type=int, default=8001, help="gRPC port (default 8001; 0 turns gRPC off)"
    )
    p.add_argument(
        "--max-batch-size",
        type=int,
        default=64,
        help="most rows of one model call and of one request (default 64)",
    )
    p.add_argument(
        "--max-queue-delay-ms", type=float, default=2.0,
        help="how long a forming batch waits for more requests once others are queued (default 2; a lone request never waits)",
    )  # fmt: skip
    p.add_argument(
        "--no-batching", action="store_true", help="run each request on its own model call"
    )
    p.add_argument(
        "--threads", type=int, default=1, help="CPU threads of one model call (default 1)"
    )
    p.add_argument(
        "--workers", type=int, default=1, help="server processes sharing the ports (default 1)"
    )
    p.add_argument(
        "--max-request-mb",
        type=float,
        default=64.0,
        help="largest request body (default 64 MB); larger ones get 413",
    )
    p.add_argument(
        "--nan", choices=NAN_POLICIES, default="reject",
        help="NaN in a numeric input: reject it with 400 (default), or impute it as training did (tables)",
    )  # fmt: skip
    p.add_argument(
        "--runtime",
        choices=RUNTIMES,
        help="which file of each version runs (default: ONNX)",
    )
    p.add_argument(
        "--no-access-log", action="store_true", help="no JSON line per request on stderr"
    )
    return p


def _check_port(host: str, port: int, what: str) -> None:
    if not 1 <= port <= 65535:
        raise UsageError(f"mlx serve: {what} {port} is not a port number (1-65535).")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise UsageError(
                f"mlx serve: cannot listen on {host}:{port} ({e.strerror}); another server holds it, or choose another {what}."
            ) from None


def main(argv: list[str]) -> int:
    """Entry point of ``mlx serve``; returns the exit status once the server stops."""
    args = parser().parse_args(argv)
    from mlx.deploy.server import Settings, run, wanted_versions

    problems = []
    if args.max_batch_size < 1:
        problems.append("--max-batch-size must be >= 1")
    if args.max_queue_delay_ms < 0:
        problems.append("--max-queue-delay-ms must be >= 0")
    if args.threads < 1 or args.workers < 1:
        problems.append("--threads and --workers must be >= 1")
    if args.max_request_mb <= 0:
        problems.append("--max-request-mb must be > 0")
    if args.grpc_port == args.http_port:
        problems.append("--grpc-port must differ from --http-port")
    if problems:
        raise UsageError("mlx serve: " + "; ".join(problems) + ".")
    settings = Settings(
        repository=args.repository,
        models=args.model,
        all_versions=args.all_versions,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port or None,
        max_batch_size=args.max_batch_size,
        max_queue_delay_ms=args.max_queue_delay_ms,
        batching=not args.no_batching,
        threads=args.threads,
        workers=args.workers,
        max_request_mb=args.max_request_mb,
        nan=args.nan,
        runtime=args.runtime,
        access_log=not args.no_access_log,
    )
    wanted = wanted_versions(settings)  # a missing or corrupt model is refused here, by name
    _check_port(args.host, args.http_port, "--http-port")
    if settings.grpc_port is not None:
        _check_port(args.host, settings.grpc_port, "--grpc-port")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("mlx.serve", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False
    logging.getLogger("mlx.serve").info(
        "mlx serve: %s on http://%s:%d%s (%s)",
        ", ".join(f"{n}:{v}" for n, v in wanted),
        args.host,
        args.http_port,
        f", gRPC {args.host}:{settings.grpc_port}" if settings.grpc_port else "",
        f"batching up to {args.max_batch_size} rows, {args.max_queue_delay_ms:g} ms"
        if settings.batching
        else "no batching",
    )
    run(settings, wanted)
    return 0
