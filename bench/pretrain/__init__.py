"""`make pretrain-demo`: the demo ViT pretrained on generated fractals (`python -m bench.pretrain`)."""
