"""Images in: the offline synthetic datasets (shapes, junctions), loaders for real images,
and the one rule for sampling evaluation images."""

from vitlens.data.datasets import (
    DATASETS,
    HELDOUT_SIZE,
    VERIFY_SIZE,
    SyntheticDataset,
    dataset_config,
    heldout,
    render_dataset,
)
from vitlens.data.junctions import (
    JUNCTION_CLASSES,
    JUNCTION_PARTS,
    JunctionsConfig,
    render_junctions,
)
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
from vitlens.data.sources import NAMED_DATASETS, data_root, load_images

__all__ = [
    "DATASETS",
    "HELDOUT_SIZE",
    "IMAGENETTE_URL",
    "JUNCTION_CLASSES",
    "JUNCTION_PARTS",
    "NAMED_DATASETS",
    "SHAPES_MEAN",
    "SHAPES_STD",
    "SHAPE_CLASSES",
    "SPLITS",
    "VERIFY_SIZE",
    "JunctionsConfig",
    "ShapesBatch",
    "ShapesConfig",
    "ShapesDataset",
    "SyntheticDataset",
    "cifar10",
    "data_root",
    "dataset_config",
    "heldout",
    "image_folder",
    "imagenette",
    "load_images",
    "model_transform",
    "normalize_shapes",
    "render_dataset",
    "render_junctions",
    "render_shapes",
]
