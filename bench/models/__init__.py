"""Models: a timm ViT backbone, PETL modules on it, and truncation to the first k blocks."""
