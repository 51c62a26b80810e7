from ._cli import broker

__all__ = ["broker"]
