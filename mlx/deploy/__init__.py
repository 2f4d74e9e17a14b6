"""Deployment: export to a versioned model repository, serving over the Open Inference Protocol
(``mlx serve``), batch inference (``mlx predict``), and container and cluster files (the run's
``deploy`` stage).

Serving imports NumPy and ONNX Runtime, never torch, for ONNX models; the export (which runs the
network) imports torch inside its functions.
"""

from mlx.deploy.config import Budget, ClusterSettings, Deployment, ServerSettings

__all__ = ["Budget", "ClusterSettings", "Deployment", "ServerSettings"]
