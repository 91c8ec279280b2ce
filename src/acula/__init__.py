"""acula: teach medical-audio encoders clinical language (AcuLa)."""

__version__ = "0.1.0"
