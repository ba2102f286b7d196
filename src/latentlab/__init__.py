"""latentlab: learn image representations from scratch and see what they learned."""

from latentlab.checkpoint import load
from latentlab.config import Config
from latentlab.data import ImageData, load_dataset
from latentlab.errors import UserError

__version__ = "0.1.0"
__all__ = ["Config", "ImageData", "UserError", "__version__", "load", "load_dataset"]
