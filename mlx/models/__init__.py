"""Plain ``nn.Module`` networks. Each takes the data's ``input_shape`` and ``num_outputs``.

The final linear layer is the head: ``num_outputs`` logits for classification, one value for
regression. Which loss and metrics apply is the engine's business, not the network's.
"""

from mlx.models.cnn import CNN
from mlx.models.mlp import MLP
from mlx.models.resnet import ResNet

__all__ = ["CNN", "MLP", "ResNet"]
