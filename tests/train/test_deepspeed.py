"""DeepSpeed ZeRO-2 / ZeRO-3 with two real processes (gloo on CPU), through the same entrypoint and
flags a GPU user types. Saves must hold complete tensors equal to the gathered parameters, reload to
the trained model's logits, and a two-process run must match a one-process run of the same global batch.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from llava.demo.recipes import toy_recipe
from llava.model.builder import load_pretrained_model
from llava.train.distributed import check_world_size
from tests.train.helpers import logits_of

REPO_ROOT = Path(__file__).resolve().parents[2]
DRIVER = REPO_ROOT / "tests" / "train" / "deepspeed_driver.py"
ZERO2, ZERO3 = REPO_ROOT / "scripts" / "zero2.json", REPO_ROOT / "scripts" / "zero3.json"
# Global batch 4 everywhere: 2 processes × 2, or 1 process × 4.
STEPS = {"max_steps": 3, "save_steps": 3, "save_total_limit": None, "logging_steps": 1}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(record: Path, args: list[str], *, nproc: int = 2, launcher: str = "torchrun") -> dict:
    """Run the driver under a real launcher and return rank 0's record."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "RECORD": str(record),
        # DeepSpeed JIT-compiles its CPU communication op once; keep the build between runs.
        "TORCH_EXTENSIONS_DIR": os.environ.get(
            "TORCH_EXTENSIONS_DIR", str(REPO_ROOT / ".cache" / "torch_extensions")
        ),
    }
    port = str(_free_port())
    if launcher == "torchrun":
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(nproc),
            "--master_port",
            port,
            str(DRIVER),
        ]
    else:
        command = [
            str(Path(sys.executable).parent / "deepspeed"),
            "--num_accelerators",
            str(nproc),
            "--master_port",
            port,
            str(DRIVER),
        ]
    result = subprocess.run([*command, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return torch.load(record, weights_only=False)


def assert_saved_equals_gathered(saved: dict[str, torch.Tensor], gathered: dict[str, torch.Tensor]) -> None:
    assert saved
    for name, tensor in saved.items():
        assert tensor.numel() > 0, f"{name} was saved empty"
        torch.testing.assert_close(tensor, gathered[name], rtol=0, atol=0, msg=name)


@pytest.fixture(scope="module")
def projector(toy_world, tmp_path_factory) -> Path:
    """A projector from a 2-process ZeRO-2 pretraining run (also what the LoRA runs start from)."""
    out = tmp_path_factory.mktemp("zero2-pretrain")
    record = launch(
        out / "record.pt",
        toy_recipe(
            toy_world, "pretrain", out / "run", per_device_train_batch_size=2, deepspeed=ZERO2, **STEPS
        ),
    )
    assert record["world_size"] == 2
    return out


@pytest.fixture(scope="module")
def single_process_pretrain_losses(toy_world, tmp_path_factory) -> list[float]:
    out = tmp_path_factory.mktemp("single-pretrain")
    record = launch(
        out / "record.pt",
        toy_recipe(toy_world, "pretrain", out / "run", per_device_train_batch_size=4, **STEPS),
        nproc=1,
    )
    return record["losses"]


def test_zero2_pretrain_saves_complete_projector_and_matches_single_process(
    projector, single_process_pretrain_losses, toy_world
):
    record = torch.load(projector / "record.pt", weights_only=False)
    saved = torch.load(projector / "run" / "mm_projector.bin", weights_only=True)
    assert_saved_equals_gathered(saved, record["trainable"])
    assert set(saved) == set(record["trainable"])
    torch.testing.assert_close(record["losses"], single_process_pretrain_losses, rtol=1e-4, atol=1e-4)
    _, model, _, _ = load_pretrained_model(str(projector / "run"), str(toy_world.llm_dir), "x", device="cpu")
    assert model is not None


@pytest.mark.parametrize("launcher", ["deepspeed"])
def test_zero3_pretrain_with_deepspeed_launcher(
    launcher, single_process_pretrain_losses, toy_world, tmp_path
):
    record = launch(
        tmp_path / "record.pt",
        toy_recipe(
            toy_world, "pretrain", tmp_path / "run", per_device_train_batch_size=2, deepspeed=ZERO3, **STEPS
        ),
        launcher=launcher,
    )
    assert record["world_size"] == 2
    saved = torch.load(tmp_path / "run" / "mm_projector.bin", weights_only=True)
    assert_saved_equals_gathered(saved, record["trainable"])
    torch.testing.assert_close(record["losses"], single_process_pretrain_losses, rtol=1e-4, atol=1e-4)
    checkpoint = torch.load(tmp_path / "run" / "checkpoint-3" / "mm_projector.bin", weights_only=True)
    assert_saved_equals_gathered(checkpoint, record["trainable"])


@pytest.mark.parametrize(
    ("stage", "zero_config"),
    [("lora", ZERO3), ("lora", ZERO2), ("qlora", ZERO2)],
    ids=["lora-zero3", "lora-zero2", "qlora-zero2"],
)
def test_lora_saves_reload_to_trained_logits(stage, zero_config, projector, toy_world, tmp_path):
    # Loading the pretrained projector into a (partitioned) ZeRO-3 model is part of this run.
    args = toy_recipe(
        toy_world,
        stage,
        tmp_path / "run",
        per_device_train_batch_size=2,
        deepspeed=zero_config,
        pretrain_mm_mlp_adapter=projector / "run" / "mm_projector.bin",
        lora_dropout=0.0,
        **STEPS,
    )
    record = launch(tmp_path / "record.pt", args)
    run = tmp_path / "run"
    non_lora = torch.load(run / "non_lora_trainables.bin", weights_only=True)
    assert {k for k in non_lora if "mm_projector" in k}
    assert_saved_equals_gathered(non_lora, record["trainable"])
    adapter = load_file(run / "adapter_model.safetensors")
    gathered_lora = {k.replace(".default", ""): v for k, v in record["trainable"].items() if "lora_" in k}
    assert set(adapter) == set(gathered_lora)
    assert_saved_equals_gathered(adapter, gathered_lora)
    for name in ("adapter_model.safetensors", "non_lora_trainables.bin", "config.json"):
        assert (run / "checkpoint-3" / name).is_file()

    _, model, _, _ = load_pretrained_model(
        str(run), str(toy_world.llm_dir), "x", device="cpu", load_4bit=stage == "qlora"
    )
    batch = _batch_for(model, toy_world)
    expected_tol = 1e-3 if stage == "qlora" else 1e-4
    torch.testing.assert_close(
        logits_of(model, batch), record["logits"], rtol=expected_tol, atol=expected_tol
    )


def _batch_for(model, toy_world):
    """The driver's fixed batch, rebuilt from the same dataset and collator."""
    from llava.conversation import template_for_version
    from llava.data import make_supervised_data_module
    from llava.tokenization import configure_pad_token, load_tokenizer

    tokenizer = load_tokenizer(str(toy_world.llm_dir), model_max_length=256)
    configure_pad_token(tokenizer, "v1")
    module = make_supervised_data_module(
        tokenizer,
        data_path=str(toy_world.finetune_json),
        conversation=template_for_version("v1"),
        image_folder=str(toy_world.image_folder),
        image_processor=model.get_vision_tower().image_processor,
        image_aspect_ratio="pad",
        is_multimodal=True,
        mm_use_im_start_end=False,
        model_max_length=256,
    )
    dataset = module["train_dataset"]
    return module["data_collator"]([dataset[i] for i in range(4)])


def test_world_size_disagreement_fails_loudly(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(
        RuntimeError, match="launcher started 2 processes but training sees a world size of 1"
    ):
        check_world_size(1)
