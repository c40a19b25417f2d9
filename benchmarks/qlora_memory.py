"""Language-model weight memory and training-step peak memory for 16-bit LoRA, 8-bit and 4-bit QLoRA.

    python benchmarks/qlora_memory.py [--model toy|medium|all] [--out benchmarks/RESULTS.md]

Each mode is built through the real training path (`parse_arguments` + `build_model_and_tokenizer` on
`llava.demo.recipes.toy_recipe` flags, bf16 compute) in a fresh subprocess, which then:

- adds up the bytes of every tensor the model holds (parameters, buffers and bitsandbytes' quantization
  state: 4-bit absmax, nested absmax, code tables and offset; 8-bit SCB), split into the language model
  (LM), its LoRA adapters, the vision tower and the projector; for the LM's linear layers (those QLoRA
  quantizes: every decoder linear, not `lm_head`) it reports storage bits per logical weight;
- runs one HF Trainer step (forward + backward + AdamW on the first collated batch of 4 from the toy
  fine-tuning data) and records resident memory: RSS after the build, RSS just before the step and the
  peak RSS during the step.

Memory is read from /proc (Linux). Peaks are the kernel's high-water mark (VmHWM), reset through
/proc/self/clear_refs before the step. `getrusage(RUSAGE_SELF).ru_maxrss` is not used: Linux folds the
parent's peak into a child's `ru_maxrss` across fork + exec (a fresh subprocess of this script, which
builds the medium base, started at ~1.1 GiB), and a reset does not clear that part. CPU RSS includes
the Python / torch / transformers runtime and the data pipeline, not only tensors.

Models: the toy world's LM (tiny; its embeddings dominate), and a randomly initialised "medium"
LLaMA-architecture base built on the fly (see MEDIUM_CONFIG), with the toy world's tokenizer and CLIP
tower, so that the linear layers dominate as in real models.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
import transformers
from results_file import machine_line, update_results
from transformers import LlamaConfig, LlamaForCausalLM, TrainerCallback

REPO_ROOT = Path(__file__).resolve().parents[1]
MIB = 1024**2
SECTION_TITLE = "## QLoRA memory ({model} LM)"
SEED = 0


@dataclasses.dataclass(frozen=True)
class Mode:
    """One way of holding the language model during LoRA training."""

    name: str
    stage: str
    flags: dict
    expected_bits: str


# bf16 compute in every mode, as upstream's GPU scripts; on a CPU, HF's bf16 needs `use_cpu`.
COMMON_FLAGS = {"bf16": True, "use_cpu": True, "max_steps": 1, "save_strategy": "no", "logging_steps": 1}
MODES = (
    Mode("16-bit LoRA (bf16)", "lora", {}, "16"),
    Mode("8-bit (int8)", "qlora", {"bits": 8}, "8 + 32/in_features (SCB)"),
    Mode(
        "4-bit nf4 + double quant",
        "qlora",
        {"bits": 4, "double_quant": True, "quant_type": "nf4"},
        "4 + 8/64 + 32/(64*256) = 4.127",
    ),
)

# The medium base: LLaMA-architecture, random weights. 2816 is a multiple of 64 (bitsandbytes' CPU
# 4-bit kernels need it), close to LLaMA's 8/3 * hidden ratio.
MEDIUM_CONFIG = {
    "hidden_size": 1024,
    "num_hidden_layers": 8,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "intermediate_size": 2816,
    "vocab_size": 32000,
    "max_position_embeddings": 1024,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False,
}
TOKENIZER_FILES = ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json")


# ---- memory readings (Linux) ------------------------------------------------------------------------
def current_rss() -> int:
    """Resident set size of this process now, in bytes."""
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def ru_maxrss() -> int:
    """`getrusage(RUSAGE_SELF).ru_maxrss` in bytes (reported only to show what it inherits)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def peak_rss_since_reset() -> int:
    """The kernel's peak-RSS mark of this process (VmHWM), in bytes: since exec or the last reset."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no VmHWM line: cannot read the peak RSS.")


def page_in(model) -> None:
    """Read every parameter and buffer once.

    A 16-bit model whose checkpoint dtype matches is memory-mapped from its safetensors file by
    transformers: its weights only count in RSS once touched. Touching them here makes "RSS after build"
    comparable across modes (the first forward would touch them anyway).
    """
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.detach().reshape(-1)[:: max(1, 4096 // tensor.element_size())].sum()


def reset_peak_rss() -> None:
    """Set the peak-RSS mark to the current RSS (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


# ---- tensor accounting ------------------------------------------------------------------------------
# Roles of the tensors behind a weight: the (possibly packed) values, the per-block / per-row scales
# (4-bit absmax, nested absmax and offset; 8-bit SCB) and the lookup tables (4-bit code tables).
ROLES = ("values", "scales", "tables")


def _state_tensors(state):
    """(role, tensor) held by a bitsandbytes state (QuantState, its nested QuantState, MatmulLtState)."""
    for key, value in vars(state).items():
        if isinstance(value, torch.Tensor):
            yield ("tables" if key == "code" else "values" if key == "CB" else "scales"), value
        elif hasattr(value, "absmax"):  # the nested QuantState of double quantization
            yield from _state_tensors(value)


def module_tensors(module):
    """(role, tensor) for every tensor a module holds itself: parameters, buffers, bitsandbytes state."""
    for tensor in [*module._parameters.values(), *module._buffers.values()]:
        if tensor is None:
            continue
        yield "values", tensor
        quant_state = getattr(tensor, "quant_state", None)  # Params4bit
        if quant_state is not None:
            yield from _state_tensors(quant_state)
        if isinstance(getattr(tensor, "SCB", None), torch.Tensor):  # Int8Params (CB is the data itself)
            yield "scales", tensor.SCB
    matmul_state = getattr(module, "state", None)  # Linear8bitLt's MatmulLtState
    if matmul_state is not None and hasattr(matmul_state, "SCB"):
        yield from _state_tensors(matmul_state)


def _part_of(name: str) -> str:
    if "vision_tower" in name:
        return "vision_tower"
    if "mm_projector" in name:
        return "projector"
    if "lora_" in name:
        return "lora"
    return "lm"


def _is_lm_linear(name: str, module) -> bool:
    """The linears QLoRA quantizes: decoder linears (LoRA's base layers), not lm_head or adapters."""
    return isinstance(module, torch.nn.Linear) and _part_of(name) == "lm" and not name.endswith("lm_head")


def weight_memory(model) -> dict:
    """Bytes per part of the model, each tensor counted once, and bits per weight of the LM's linears."""
    seen: set[int] = set()
    bytes_by = {"lm": 0, "lm_linears": 0, "lm_embeddings": 0, "lora": 0, "vision_tower": 0, "projector": 0}
    linear_bytes_by_role = dict.fromkeys(ROLES, 0)
    logical_linear_weights = 0
    linear_types: set[str] = set()
    dtypes: dict[str, set[str]] = {part: set() for part in ("lm", "lora", "vision_tower", "projector")}
    for name, module in model.named_modules():
        own = dict.fromkeys(ROLES, 0)
        for role, tensor in module_tensors(module):
            if tensor.data_ptr() in seen or tensor.numel() == 0:
                continue
            seen.add(tensor.data_ptr())
            own[role] += tensor.numel() * tensor.element_size()
        part = _part_of(name)
        bytes_by[part] += sum(own.values())
        dtypes[part].update(str(p.dtype).removeprefix("torch.") for p in module.parameters(recurse=False))
        if _is_lm_linear(name, module):
            bytes_by["lm_linears"] += sum(own.values())
            for role in ROLES:
                linear_bytes_by_role[role] += own[role]
            logical_linear_weights += module.in_features * module.out_features
            linear_types.add(type(module).__name__)
        elif part == "lm" and (name.endswith("lm_head") or isinstance(module, torch.nn.Embedding)):
            bytes_by["lm_embeddings"] += sum(own.values())
    if not logical_linear_weights:
        raise RuntimeError("No language-model linear layers found: the accounting does not match the model.")
    return {
        **bytes_by,
        "lm_linear_weights": logical_linear_weights,
        "lm_linear_bits_per_weight": 8 * bytes_by["lm_linears"] / logical_linear_weights,
        "lm_linear_bits_by_role": {
            role: 8 * linear_bytes_by_role[role] / logical_linear_weights for role in ROLES
        },
        "lm_linear_types": sorted(linear_types),
        "parameter_dtypes": {part: sorted(names) for part, names in dtypes.items()},
    }


# ---- one mode, in a fresh process -------------------------------------------------------------------
def measure(mode: Mode, llm_dir: str, world_dir: str) -> dict:
    """Build the model for `mode` through the real path, account its weights, run one training step."""
    from llava.demo.recipes import toy_recipe
    from llava.toy import ensure_world
    from llava.train.llava_trainer import LLaVATrainer
    from llava.train.train import (
        build_model_and_tokenizer,
        data_module_from_args,
        parse_arguments,
        save_mode_for,
    )

    inherited_ru_maxrss = ru_maxrss()
    rss_runtime = current_rss()
    world = ensure_world(world_dir)
    output_dir = tempfile.mkdtemp(prefix="qlora_memory_")
    flags = {**COMMON_FLAGS, **mode.flags, "model_name_or_path": llm_dir}
    model_args, data_args, training_args = parse_arguments(toy_recipe(world, mode.stage, output_dir, **flags))
    transformers.set_seed(training_args.seed)
    model, tokenizer, image_processor = build_model_and_tokenizer(model_args, data_args, training_args)
    weights = weight_memory(model)
    page_in(model)
    peak_build, rss_built = peak_rss_since_reset(), current_rss()

    data_module = data_module_from_args(tokenizer, image_processor, model_args, data_args, training_args)
    step = StepMemory()
    trainer = LLaVATrainer(
        model=model,
        processing_class=tokenizer,
        args=training_args,
        save_mode=save_mode_for(model_args, training_args),
        callbacks=[step],
        **data_module,
    )
    batch_shapes: dict[str, list[int]] = {}
    model.register_forward_pre_hook(partial(_record_batch_shapes, batch_shapes), with_kwargs=True)
    trainer.train()
    shutil.rmtree(output_dir)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {
        "mode": mode.name,
        "expected_bits": mode.expected_bits,
        "weights": weights,
        "inherited_ru_maxrss": inherited_ru_maxrss,
        "rss_runtime": rss_runtime,
        "rss_built": rss_built,
        "peak_build": peak_build,
        "rss_before_step": step.rss_before,
        "peak_step": step.peak,
        "step_seconds": step.seconds,
        "loss": losses[0],
        "batch_input_ids": batch_shapes["input_ids"],
        "batch_images": batch_shapes["images"],
        "threads": torch.get_num_threads(),
    }


def _record_batch_shapes(shapes: dict, module, args, kwargs) -> None:
    """Forward pre-hook: keep the shapes of the first batch the model sees (the step's batch)."""
    for key in ("input_ids", "images"):
        if key not in shapes and kwargs.get(key) is not None:
            shapes[key] = list(kwargs[key].shape)


class StepMemory(TrainerCallback):
    """Resets the peak-RSS mark when the step begins and reads it after the optimizer step."""

    def __init__(self):
        self.rss_before = self.peak = 0
        self.seconds = 0.0
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        reset_peak_rss()
        self.rss_before = current_rss()
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds = time.perf_counter() - self._start
        self.peak = peak_rss_since_reset()


def measuring_env(threads: int) -> dict[str, str]:
    """Environment of the measuring processes.

    glibc raises its mmap threshold as large blocks are freed, after which big tensors come from the
    heap, whose freed space is kept: peak RSS of the same step then varied by ~200 MiB between runs. A
    fixed threshold gives every block of 64 KiB or more its own mapping, returned on free, so RSS
    follows live memory and repeats to within a MiB.
    """
    return {
        "OMP_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "MALLOC_MMAP_THRESHOLD_": "65536",
    }


def run_in_subprocess(mode: Mode, llm_dir: Path, world_dir: Path, threads: int) -> dict:
    """`measure` in a fresh Python process (so RSS readings start clean); returns its result."""
    with tempfile.TemporaryDirectory() as tmp:
        result_file = Path(tmp) / "result.json"
        command = [
            sys.executable,
            __file__,
            "--measure", mode.name,
            "--llm-dir", str(llm_dir),
            "--world", str(world_dir),
            "--result-file", str(result_file),
        ]  # fmt: skip
        env = {**os.environ, **measuring_env(threads)}
        completed = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
        if completed.returncode != 0:
            raise RuntimeError(
                f"Measuring {mode.name!r} on {llm_dir} failed (exit {completed.returncode}):\n"
                f"{completed.stderr[-4000:]}"
            )
        return json.loads(result_file.read_text())


# ---- the medium base --------------------------------------------------------------------------------
def build_medium_base(out_dir: Path, tokenizer_dir: Path) -> Path:
    """A random LLaMA-architecture base in bf16 with the toy tokenizer, saved with `save_pretrained`."""
    toy_config = LlamaConfig.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        **MEDIUM_CONFIG,
        bos_token_id=toy_config.bos_token_id,
        eos_token_id=toy_config.eos_token_id,
        pad_token_id=toy_config.pad_token_id,
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out_dir)
    for name in TOKENIZER_FILES:
        source = tokenizer_dir / name
        if source.exists():
            shutil.copy(source, out_dir / name)
    if not (out_dir / "tokenizer.model").exists():
        raise FileNotFoundError(f"{tokenizer_dir} has no tokenizer.model to copy beside the medium base.")
    return out_dir


# ---- report -----------------------------------------------------------------------------------------
def _mib(n: int) -> str:
    return f"{n / MIB:.1f}"


def describe_lm(llm_dir: Path) -> str:
    config = json.loads((llm_dir / "config.json").read_text())
    return (
        f"hidden {config['hidden_size']}, {config['num_hidden_layers']} layers, "
        f"{config['num_attention_heads']} heads, intermediate {config['intermediate_size']}, "
        f"vocab {config['vocab_size']}, stored as {config.get('dtype') or config.get('torch_dtype')}"
    )


def weights_table(results: list[dict]) -> list[str]:
    # The toy LM weighs about a MiB: show KiB there.
    unit, scale = ("KiB", 1024) if max(r["weights"]["lm"] for r in results) < 16 * MIB else ("MiB", MIB)
    lines = [
        f"| mode | LM weights ({unit}) | LM linears ({unit}) | embeddings + lm_head ({unit}) | linears: "
        f"bits/weight = values + scales + code tables | expected | LoRA ({unit}) | "
        f"vision tower / projector ({unit}) |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in results:
        w = r["weights"]
        roles = " + ".join(f"{w['lm_linear_bits_by_role'][role]:.3f}" for role in ROLES)
        lines.append(
            f"| {r['mode']} | {w['lm'] / scale:.1f} | {w['lm_linears'] / scale:.1f} | "
            f"{w['lm_embeddings'] / scale:.1f} | **{w['lm_linear_bits_per_weight']:.3f}** = {roles} | "
            f"{r['expected_bits']} | {w['lora'] / scale:.1f} | "
            f"{w['vision_tower'] / scale:.1f} / {w['projector'] / scale:.1f} |"
        )
    return lines


def dtype_lines(results: list[dict]) -> list[str]:
    lines = []
    for r in results:
        parts = r["weights"]["parameter_dtypes"]
        described = "; ".join(f"{part}: {', '.join(parts[part])}" for part in parts)
        lines.append(f"- {r['mode']}: LM linears {'/'.join(r['weights']['lm_linear_types'])}; {described}")
    return lines


def rss_table(results: list[dict]) -> list[str]:
    lines = [
        "| mode | RSS after imports (MiB) | RSS after build (MiB) | peak RSS while building (MiB) | "
        "RSS before step (MiB) | peak RSS in step (MiB) | step delta (MiB) | step time (s) | loss |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['mode']} | {_mib(r['rss_runtime'])} | {_mib(r['rss_built'])} | {_mib(r['peak_build'])} | "
            f"{_mib(r['rss_before_step'])} | {_mib(r['peak_step'])} | "
            f"{_mib(r['peak_step'] - r['rss_before_step'])} | {r['step_seconds']:.1f} | {r['loss']:.3f} |"
        )
    return lines


def summary(results: list[dict]) -> str:
    """What the numbers show, from the numbers."""
    by_bits = {r["mode"].split()[0]: r for r in results}
    r16, r8, r4 = (by_bits[k] for k in ("16-bit", "8-bit", "4-bit"))
    w16, w8, w4 = (r["weights"] for r in (r16, r8, r4))
    return (
        f"The LM weights take {_mib(w16['lm'])} MiB in bf16, {_mib(w8['lm'])} MiB in 8-bit "
        f"({w16['lm'] / w8['lm']:.2f}x smaller) and {_mib(w4['lm'])} MiB in 4-bit "
        f"({w16['lm'] / w4['lm']:.2f}x): the quantized linears store {w8['lm_linear_bits_per_weight']:.3f} "
        f"and {w4['lm_linear_bits_per_weight']:.3f} bits per weight (4-bit: "
        f"{w4['lm_linear_bits_by_role']['tables']:.3f} of it the per-layer code tables, which only small "
        f"layers notice), while the embeddings and lm_head stay in bf16 ({_mib(w4['lm_embeddings'])} MiB, "
        f"{100 * w4['lm_embeddings'] / w4['lm']:.0f}% of the 4-bit LM). The step's peak RSS is "
        f"{_mib(r16['peak_step'])} / {_mib(r8['peak_step'])} / {_mib(r4['peak_step'])} MiB (16 / 8 / 4-bit): "
        f"4-bit's is {(r4['peak_step'] - r16['peak_step']) / MIB:+.1f} MiB from 16-bit's, for "
        f"{_mib(w16['lm'] + w16['lora'] - w4['lm'] - w4['lora'])} MiB less LM + LoRA weight; the rest is "
        f"the runtime, activations and logits, which quantization does not shrink."
    )


def render_section(model_name: str, llm_dir: Path, results: list[dict], command: str, threads: int) -> str:
    first = results[0]
    batch = "x".join(map(str, first["batch_input_ids"]))
    images = "x".join(map(str, first["batch_images"]))
    lines = [
        SECTION_TITLE.format(model=model_name),
        "",
        f"- Date: {datetime.date.today().isoformat()}",
        f"- Machine: {machine_line()}; OMP_NUM_THREADS={threads}",
        f"- Command: `{command}`",
        f"- Language model: {describe_lm(llm_dir)}; vision tower: the toy CLIP; projector mlp2x_gelu.",
        f"- Each mode built by `parse_arguments` + `build_model_and_tokenizer` (`toy_recipe` flags, "
        f"`--bf16 True --use_cpu True`, LoRA r=16 on every decoder linear) in a fresh process; one "
        f"Trainer step (forward + backward + AdamW) on the first batch of the toy fine-tuning data: "
        f"input_ids {batch}, images {images}.",
        "",
        "Weights (every tensor the model holds, counted once; bitsandbytes state included):",
        "",
        *weights_table(results),
        "",
        "Parameter dtypes per part:",
        "",
        *dtype_lines(results),
        "",
        "Process memory. CPU RSS includes the Python / torch / transformers runtime (the first column), the "
        "data pipeline and the Trainer, not only tensors. Peaks are the kernel's high-water mark (VmHWM), "
        "reset before the step; `ru_maxrss` is not used because a fresh subprocess inherits its parent's "
        f"peak across exec (here it read {_mib(first['inherited_ru_maxrss'])} MiB in the measuring process "
        f"right after its imports, when its RSS was {_mib(first['rss_runtime'])} MiB). The memory-mapped "
        "bf16 checkpoint of the 16-bit mode is paged in before 'RSS after build'. The delta is the step's "
        "peak minus the RSS just before the step. The measuring processes "
        "run with `MALLOC_MMAP_THRESHOLD_=65536` (see `measuring_env`), without which the same step's peak "
        "varied by ~200 MiB between runs.",
        "",
        *rss_table(results),
        "",
        summary(results),
        "",
    ]
    return "\n".join(lines)


# ---- entry point ------------------------------------------------------------------------------------
def benchmark_model(model_name: str, world_dir: Path, threads: int, command: str) -> str:
    from llava.toy import ensure_world

    world = ensure_world(world_dir)
    with tempfile.TemporaryDirectory(prefix="qlora_memory_base_") as tmp:
        if model_name == "toy":
            llm_dir = Path(world.llm_dir)
        else:
            start = time.perf_counter()
            llm_dir = build_medium_base(Path(tmp) / "medium", Path(world.llm_dir))
            print(f"[qlora_memory] built the medium base in {time.perf_counter() - start:.0f}s", flush=True)
        results = []
        for mode in MODES:
            start = time.perf_counter()
            results.append(run_in_subprocess(mode, llm_dir, Path(world.root), threads))
            elapsed = time.perf_counter() - start
            print(f"[qlora_memory] {model_name} / {mode.name}: {elapsed:.0f}s", flush=True)
        section = render_section(model_name, llm_dir, results, command, threads)
    print("\n" + section)
    return section


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("toy", "medium", "all"), default="all", help="LM(s) to measure.")
    parser.add_argument("--out", type=Path, default=None, help="Results file to update (e.g. RESULTS.md).")
    parser.add_argument("--world", type=Path, default=REPO_ROOT / "playground" / "toy", help="Toy world.")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the measuring processes.")
    # Internal: the measuring subprocess.
    parser.add_argument("--measure", choices=[m.name for m in MODES], help=argparse.SUPPRESS)
    parser.add_argument("--llm-dir", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.measure:
        mode = next(m for m in MODES if m.name == args.measure)
        args.result_file.write_text(json.dumps(measure(mode, args.llm_dir, str(args.world))))
        return
    command = "python benchmarks/qlora_memory.py " + " ".join(sys.argv[1:] if argv is None else argv)
    models = ("toy", "medium") if args.model == "all" else (args.model,)
    for model_name in models:
        section = benchmark_model(model_name, args.world, args.threads, command.strip())
        if args.out is not None:
            update_results(args.out, SECTION_TITLE.format(model=model_name), section)


if __name__ == "__main__":
    # Run as `python benchmarks/qlora_memory.py` from a checkout: make `llava` importable.
    sys.path.insert(0, str(REPO_ROOT))
    main()
