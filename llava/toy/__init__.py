"""The tiny offline world: images, datasets in upstream LLaVA's formats, a tiny LLaMA and a tiny CLIP.

Everything is built locally from a seed (``python -m llava.toy build``) and saved with
``save_pretrained``, so the suite's real loading code runs without a model hub. Use
``ensure_world(out_dir, seed)`` to get a built world's paths (a ``ToyWorld``).
"""

from llava.toy.world import WORLD_VERSION, ToyWorld, WorldSpec, build_world, ensure_world, world_paths

__all__ = ["WORLD_VERSION", "ToyWorld", "WorldSpec", "build_world", "ensure_world", "world_paths"]
