"""mlx: declarative experiment-as-code for ML research."""

__version__ = "0.1.0"
