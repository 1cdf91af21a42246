"""Models: a timm ViT backbone, PETL modules on it, and the model surgery, features and
gradients the pruners share."""
