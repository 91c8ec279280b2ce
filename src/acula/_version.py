"""The version, in a module of its own: the encoders record it in checkpoints without importing the package
root (whose lazy HEAR API reaches layers above them)."""

__version__ = "0.1.0"
