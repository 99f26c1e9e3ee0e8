"""Images in: the offline synthetic datasets and loaders for real images."""

from vitlens.data.real import IMAGENETTE_URL, cifar10, image_folder, imagenette, model_transform
from vitlens.data.shapes import (
    SHAPE_CLASSES,
    SHAPES_MEAN,
    SHAPES_STD,
    SPLITS,
    ShapesBatch,
    ShapesConfig,
    ShapesDataset,
    normalize_shapes,
    render_shapes,
)

__all__ = [
    "IMAGENETTE_URL",
    "SHAPES_MEAN",
    "SHAPES_STD",
    "SHAPE_CLASSES",
    "SPLITS",
    "ShapesBatch",
    "ShapesConfig",
    "ShapesDataset",
    "cifar10",
    "image_folder",
    "imagenette",
    "model_transform",
    "normalize_shapes",
    "render_shapes",
]
