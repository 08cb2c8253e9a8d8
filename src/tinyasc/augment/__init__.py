"""Training-time augmentation. Everything here acts only in training mode and is the identity in eval."""
