"""Data, the ground floor: datasets by name (datasets.py) from official releases
(official.py) or image folders (folders.py), held in memory as ImageData (image_data.py);
which images train, validate and test a run (splits.py), JPEG twins (twins.py), mixtures of
two images (mixtures.py) and balanced pairs (pairs.py)."""

from latentlab.data.datasets import describe_datasets, load_dataset
from latentlab.data.image_data import ImageData

__all__ = ["ImageData", "describe_datasets", "load_dataset"]
