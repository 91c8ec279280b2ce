"""acula: teach medical-audio encoders clinical language (AcuLa)."""

__version__ = "0.1.0"

from .hear import get_scene_embeddings, get_timestamp_embeddings, initialize_pretrained_model, load_model

__all__ = ["get_scene_embeddings", "get_timestamp_embeddings", "initialize_pretrained_model", "load_model"]
