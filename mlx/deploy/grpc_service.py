"""The Open Inference Protocol's gRPC service (``inference.GRPCInferenceService``), on the
server's event loop beside the REST app.

The service's messages are KServe's v2 protocol, which Triton's proto extends; the generated
stubs come from tritonclient (``tritonclient.grpc.service_pb2``), so every OIP gRPC client
(tritonclient, KServe's) speaks to it. RPCs outside the protocol and its repository extension
answer UNIMPLEMENTED.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from mlx import __version__
from mlx.deploy.protocol import EXTENSIONS, decode_grpc, encode_grpc
from mlx.deploy.runtime import RequestError

if TYPE_CHECKING:
    from mlx.deploy.server import Server

_CODES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 413: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE"}


async def start_grpc(server: Server, host: str, port: int) -> Any:
    """Start the gRPC service on ``host:port``; returns the running grpc.aio server."""
    import grpc
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc as pb_grpc

    limit = server.settings.max_request_bytes

    async def abort(context: Any, e: RequestError) -> Any:
        await context.abort(
            getattr(grpc.StatusCode, _CODES.get(e.status, "INVALID_ARGUMENT")), e.message
        )

    class Service(pb_grpc.GRPCInferenceServiceServicer):
        async def ServerLive(self, request: Any, context: Any) -> Any:
            return pb.ServerLiveResponse(live=True)

        async def ServerReady(self, request: Any, context: Any) -> Any:
            return pb.ServerReadyResponse(ready=server.registry.ready())

        async def ModelReady(self, request: Any, context: Any) -> Any:
            try:
                server.registry.get(request.name, request.version or None)
            except RequestError as e:
                if e.status == 503:
                    return pb.ModelReadyResponse(ready=False)
                await abort(context, e)
            return pb.ModelReadyResponse(ready=True)

        async def ServerMetadata(self, request: Any, context: Any) -> Any:
            return pb.ServerMetadataResponse(name="mlx", version=__version__, extensions=EXTENSIONS)

        async def ModelMetadata(self, request: Any, context: Any) -> Any:
            try:
                meta = server.metadata(server.registry.get(request.name, request.version or None))
            except RequestError as e:
                await abort(context, e)
            response = pb.ModelMetadataResponse(
                name=meta["name"], versions=meta["versions"], platform=meta["platform"]
            )
            for key, tensors in (("inputs", response.inputs), ("outputs", response.outputs)):
                for t in meta[key]:
                    tensors.add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
            return response

        async def ModelInfer(self, request: Any, context: Any) -> Any:
            start = time.perf_counter()
            status = 200
            entry = None
            try:
                entry = server.registry.get(request.model_name, request.model_version or None)
                entry.in_flight += 1
                decoded = decode_grpc(request)
                results = await server.infer(entry, decoded)
                return encode_grpc(pb, entry.name, entry.version, decoded, results)
            except RequestError as e:
                status = e.status
                await abort(context, e)
            finally:
                if entry is not None:
                    entry.in_flight -= 1
                server.count(request.model_name, "grpc", status, time.perf_counter() - start)

        async def RepositoryIndex(self, request: Any, context: Any) -> Any:
            response = pb.RepositoryIndexResponse()
            for item in server.index():
                response.models.add(**item)
            return response

        async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:
            try:
                await server.load_request(request.model_name)
            except RequestError as e:
                await abort(context, e)
            return pb.RepositoryModelLoadResponse()

        async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:
            try:
                server.registry.unload(request.model_name)
            except RequestError as e:
                await abort(context, e)
            return pb.RepositoryModelUnloadResponse()

    grpc_server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 1),
        ]
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(Service(), grpc_server)
    bound = grpc_server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        from mlx.deploy.signature import ModelLoadError

        raise ModelLoadError(
            f"the gRPC port {host}:{port} cannot be bound (in use?); choose another with --grpc-port."
        )
    await grpc_server.start()
    return grpc_server
