"""Audio encoders behind one interface (`AudioEncoder`) and one factory (`create`)."""

from .base import AudioEncoder, InputContract
from .registry import create, list_encoders, register

__all__ = ["AudioEncoder", "InputContract", "create", "list_encoders", "register"]
