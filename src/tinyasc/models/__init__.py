"""Model zoo: every model maps normalised log-mel (B, 1, n_mels, frames) to logits (B, n_classes).

Importing the package registers every family (each module registers its variants when imported), so
any import of ``tinyasc.models...`` sees the whole registry.
"""

from tinyasc.models import baseline, bcresnet, cpmobile, cpresnet, inception, mobilenet, resnet, separable  # noqa: F401
from tinyasc.models.registry import create_model, get_model_info, list_models, register_model

__all__ = ["create_model", "get_model_info", "list_models", "register_model"]
