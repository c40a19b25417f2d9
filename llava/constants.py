"""Every constant shared across the suite; nothing else defines these values."""

# Label value ignored by the loss (PyTorch's CrossEntropyLoss default).
IGNORE_INDEX = -100
# Placeholder id in `input_ids` where one image's features are spliced in.
IMAGE_TOKEN_INDEX = -200

DEFAULT_IMAGE_TOKEN = "<image>"
DEFAULT_IMAGE_PATCH_TOKEN = "<im_patch>"
DEFAULT_IM_START_TOKEN = "<im_start>"
DEFAULT_IM_END_TOKEN = "<im_end>"
IMAGE_PLACEHOLDER = "<image-placeholder>"

# Serving (kept for users who import them from upstream's module).
CONTROLLER_HEART_BEAT_EXPIRATION = 30
WORKER_HEART_BEAT_INTERVAL = 15
LOGDIR = "."

# Checkpoint file names, byte-compatible with upstream's layouts.
CONFIG_FILE = "config.json"
MM_PROJECTOR_FILE = "mm_projector.bin"
NON_LORA_TRAINABLES_FILE = "non_lora_trainables.bin"
ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
ADAPTER_WEIGHTS_BIN_FILE = "adapter_model.bin"

# Parameter-name fragments that mark the multimodal modules (never LoRA targets, never quantized).
MM_PROJECTOR_KEY = "mm_projector"
VISION_TOWER_KEY = "vision_tower"
VISION_RESAMPLER_KEY = "vision_resampler"
MULTIMODAL_KEYWORDS = (MM_PROJECTOR_KEY, VISION_TOWER_KEY, VISION_RESAMPLER_KEY)

# Modules bitsandbytes must leave in full precision. transformers 5 matches a skip name from the start
# of the module path or as its suffix, so a bare "mm_projector" misses "model.mm_projector.0"; the regex
# form matches at any depth. Giving any skip list also drops transformers' default skip of `lm_head`.
QUANTIZATION_SKIP_MODULES = ["lm_head", *(rf".*{key}" for key in MULTIMODAL_KEYWORDS)]
