"""PCA as an input transform: the inputs (tabular rows or flattened images) are projected on
their leading principal components, fitted on the training split only, and a fresh network of
the run's model config trains on the projection. The compressed model is the fixed projection
followed by that network, so it takes the same raw inputs as before.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any

from annotated_types import Ge, Interval

from mlx.compression.base import CompressionError, StageInput, Tools

if TYPE_CHECKING:
    from torch import nn


def projection_layer(mean: Any, components: Any) -> nn.Module:
    """``x -> (x - mean) @ components.T`` as a frozen ``Flatten -> Linear``; ``components`` is
    ``(k, D)``."""
    import torch
    from torch import nn

    comps = torch.as_tensor(components, dtype=torch.float32)  # (k, D)
    mu = torch.as_tensor(mean, dtype=torch.float32)  # (D,)
    linear = nn.Linear(comps.shape[1], comps.shape[0])
    with torch.no_grad():
        linear.weight.copy_(comps)
        linear.bias.copy_(-(comps @ mu))
    linear.requires_grad_(False)
    return nn.Sequential(nn.Flatten(), linear)


class PCA:
    """Reduce the inputs to principal components, then retrain the run's network on them.

    Give exactly one of ``n_components`` or ``variance``.

    Args:
        n_components: keep this many components.
        variance: keep the fewest components whose explained variance reaches this share.
        epochs: epochs the network trains on the projected inputs.
        whiten: scale the components to unit variance.
    """

    name = "pca"

    def __init__(
        self,
        n_components: Annotated[int, Ge(1)] | None = None,
        variance: Annotated[float, Interval(gt=0, le=1)] | None = 0.95,
        epochs: Annotated[int, Ge(1)] = 20,
        whiten: bool = False,
    ) -> None:
        self.n_components = n_components
        self.variance = variance
        self.epochs = epochs
        self.whiten = whiten
        self._details: dict[str, Any] = {}

    def check(self, given: StageInput) -> None:
        if given.before:
            raise CompressionError(
                f"pca replaces the network with one trained on projected inputs, which would undo {', '.join(given.before)}: list pca first (compression=[pca,...])."
            )
        if (self.n_components is None) == (self.variance is None):
            raise CompressionError(
                "pca needs exactly one of compression.pca.n_components or compression.pca.variance (set the other to null)."
            )
        features = math.prod(given.input_shape)
        if self.n_components is not None and self.n_components > features:
            raise CompressionError(
                f"compression.pca.n_components={self.n_components} is more than the {features} input features of {tuple(given.input_shape)}; choose at most {features}."
            )
        if given.rebuild is not None:
            try:
                given.rebuild((features,))
            except (TypeError, ValueError) as e:
                raise CompressionError(
                    f"pca hands the network {features} flat features, which the run's model cannot take: {e}"
                ) from e

    def check_rebuild(self, tools: Tools) -> None:
        if tools.rebuild is None:
            raise CompressionError(
                "pca needs to rebuild the network: the pipeline lends no builder here."
            )

    def apply(self, net: nn.Module, tools: Tools) -> nn.Module:
        import numpy as np
        from sklearn.decomposition import PCA as SkPCA
        from torch import nn

        self.check_rebuild(tools)
        x = np.concatenate(
            [xb.reshape(xb.shape[0], -1).numpy() for xb, _ in tools.train_batches()]
        )  # (N_train, D)
        k = self.n_components if self.n_components is not None else self.variance
        if isinstance(k, int) and k > min(x.shape):
            raise CompressionError(
                f"compression.pca.n_components={k} is more than min(train examples, features) = {min(x.shape)}."
            )
        pca = SkPCA(n_components=k, whiten=self.whiten, svd_solver="full").fit(x)
        comps = pca.components_  # (k, D)
        if self.whiten:
            comps = comps / np.sqrt(pca.explained_variance_)[:, None]
        projection = projection_layer(pca.mean_, comps)
        kept = int(pca.n_components_)
        assert tools.rebuild is not None
        try:
            head = tools.rebuild((kept,))
        except (TypeError, ValueError) as e:
            raise CompressionError(
                f"pca hands the network {kept} flat features, which the run's model cannot take ({e}); use a model on flat inputs (model=mlp)."
            ) from e
        tools.log(
            f"pca: {x.shape[1]} features -> {kept} components ({pca.explained_variance_ratio_.sum():.3f} of the variance), training {type(head).__name__} {self.epochs} epochs"
        )
        model = nn.Sequential()
        model.add_module("pca", projection)
        model.add_module("net", head)
        model = tools.fine_tune(model, self.epochs)
        self._details = {
            "features": int(x.shape[1]),
            "components": kept,
            "explained_variance": float(pca.explained_variance_ratio_.sum()),
            "fitted_on": f"train split ({x.shape[0]} examples)",
        }
        return model

    def details(self) -> dict[str, Any]:
        return dict(self._details)
