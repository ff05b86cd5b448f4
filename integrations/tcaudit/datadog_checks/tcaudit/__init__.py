from .__about__ import __version__
from .check import TcauditCheck

__all__ = ["TcauditCheck", "__version__"]
