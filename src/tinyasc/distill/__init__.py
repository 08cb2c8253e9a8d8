"""Knowledge distillation: teacher ensembles and their logits stored by file name."""
