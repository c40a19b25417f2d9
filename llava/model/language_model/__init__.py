"""One LLaVA language-model family per module."""
