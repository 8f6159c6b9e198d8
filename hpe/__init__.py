"""hpe: Kazakos (2017) hand pose estimation with ConvNets on RGB-D data, reproduced in PyTorch."""

__version__ = "0.2.0"


class DataError(ValueError):
    """Bad input data: the message names the file, frame or value at fault."""
