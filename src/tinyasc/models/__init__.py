"""Model zoo: every model maps normalised log-mel (B, 1, n_mels, frames) to logits (B, n_classes)."""

from tinyasc.models.registry import create_model, get_model_info, list_models, register_model

__all__ = ["create_model", "get_model_info", "list_models", "register_model"]
