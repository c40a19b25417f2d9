"""LLaVA fine-tuning suite: upstream LLaVA-1.5's training recipes on current libraries."""

__version__ = "2.0.0.dev0"


def __getattr__(name: str):
    # Upstream re-exports the model class at package level; import lazily so that light modules
    # (constants, conversation) do not pay for importing transformers.
    if name == "LlavaLlamaForCausalLM":
        from llava.model import LlavaLlamaForCausalLM

        return LlavaLlamaForCausalLM
    raise AttributeError(f"module 'llava' has no attribute {name!r}")
