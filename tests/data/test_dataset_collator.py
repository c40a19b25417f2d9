"""`LazySupervisedDataset`, `DataCollatorForSupervisedDataset` and `make_supervised_data_module`."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from PIL import Image
from transformers import CLIPImageProcessor

from llava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from llava.conversation import conv_templates
from llava.data import (
    DataCollatorForSupervisedDataset,
    LazySupervisedDataset,
    SampleError,
    make_supervised_data_module,
)
from llava.mm_utils import expand2square

CROP = 16


@pytest.fixture()
def processor():
    return CLIPImageProcessor(size={"shortest_edge": CROP}, crop_size={"height": CROP, "width": CROP})


@pytest.fixture()
def data_dir(tmp_path):
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    Image.new("RGB", (40, 20), (200, 10, 10)).save(images / "wide.png")
    Image.new("L", (20, 30), 128).save(images / "sub" / "gray.png")
    Image.new("RGBA", (16, 16), (0, 255, 0, 100)).save(images / "rgba.png")
    records = [
        {"id": "img-0", "image": "wide.png", "conversations": [
            {"from": "human", "value": "What colour?\n<image>"}, {"from": "gpt", "value": "Red, mostly."}]},
        {"id": "txt-1", "conversations": [
            {"from": "human", "value": "Say hi"}, {"from": "gpt", "value": "Hi"}]},
        {"id": "img-2", "image": "sub/gray.png", "conversations": [
            {"from": "human", "value": "<image>\nShade?"}, {"from": "gpt", "value": "Gray."},
            {"from": "human", "value": "Sure?"}, {"from": "gpt", "value": "Yes, a medium gray."}]},
        {"id": "img-3", "image": "rgba.png", "conversations": [
            {"from": "human", "value": "<image> Colour?"}, {"from": "gpt", "value": "Green."}]},
    ]  # fmt: skip
    (tmp_path / "data.json").write_text(json.dumps(records))
    return tmp_path


def _dataset(data_dir, tok, processor, **kwargs):
    options = dict(
        conversation=conv_templates["v1"],
        image_folder=data_dir / "images",
        image_processor=processor,
        is_multimodal=True,
    )
    options.update(kwargs)
    return LazySupervisedDataset(data_dir / "data.json", tok, **options)


def test_items_lengths_and_images(data_dir, llama2_tok, processor):
    ds = _dataset(data_dir, llama2_tok, processor)
    assert len(ds) == 4
    assert ds.lengths == [5 + 128, 3, 8 + 128, 3 + 128]  # str.split() words (+128 with an image)
    assert ds.modality_lengths == [5, -3, 8, 3]
    item = ds[0]
    assert set(item) == {"input_ids", "labels", "image"}
    assert item["image"].shape == (3, CROP, CROP)
    assert (item["input_ids"] == IMAGE_TOKEN_INDEX).sum().item() == 1
    assert llama2_tok.decode(item["labels"][item["labels"] != IGNORE_INDEX]) == "Red, mostly.</s>"
    text_only = ds[1]
    assert torch.equal(text_only["image"], torch.zeros(3, CROP, CROP))
    assert (text_only["input_ids"] == IMAGE_TOKEN_INDEX).sum().item() == 0
    assert ds[2]["image"].shape == ds[3]["image"].shape == (3, CROP, CROP)  # L and RGBA become RGB


def test_pad_aspect_ratio_squares_on_mean_colour(data_dir, llama2_tok, processor):
    ds = _dataset(data_dir, llama2_tok, processor, image_aspect_ratio="pad")
    wide = Image.open(data_dir / "images" / "wide.png").convert("RGB")
    squared = expand2square(wide, tuple(int(x * 255) for x in processor.image_mean))
    expected = processor.preprocess(squared, return_tensors="pt")["pixel_values"][0]
    assert torch.allclose(ds[0]["image"], expected)
    plain = _dataset(data_dir, llama2_tok, processor, image_aspect_ratio="square")[0]["image"]
    assert not torch.allclose(plain, expected)


def test_missing_image_raises_naming_sample_and_path(data_dir, llama2_tok, processor):
    (data_dir / "images" / "sub" / "gray.png").unlink()
    ds = _dataset(data_dir, llama2_tok, processor)
    with pytest.raises(SampleError, match=r"Sample 'img-2'.*sub/gray\.png"):
        ds[2]


def test_skip_invalid_returns_next_valid_sample_and_counts(data_dir, llama2_tok, processor, caplog):
    (data_dir / "images" / "sub" / "gray.png").unlink()
    (data_dir / "images" / "rgba.png").write_bytes(b"not a png")
    ds = _dataset(data_dir, llama2_tok, processor, skip_invalid=True)
    with caplog.at_level(logging.WARNING):
        item = ds[2]
    assert torch.equal(item["input_ids"], ds[0]["input_ids"])  # 2 and 3 are broken: wraps to 0
    assert ds.num_skipped == 2
    assert "img-2" in caplog.text and "img-3" in caplog.text
    ds[2]
    assert ds.num_skipped == 2  # counted once per sample


def test_skip_invalid_covers_malformed_conversations(data_dir, llama2_tok, processor):
    records = json.loads((data_dir / "data.json").read_text())
    records[1]["conversations"][1]["from"] = "human"
    (data_dir / "data.json").write_text(json.dumps(records))
    ds = _dataset(data_dir, llama2_tok, processor, skip_invalid=True)
    assert torch.equal(ds[1]["input_ids"], ds[2]["input_ids"])
    assert ds.num_skipped == 1


@pytest.mark.parametrize(
    "record,match",
    [
        ("just a string", "Record 1: expected an object"),
        ({"id": "x", "conversations": []}, r"Record 1 \(id 'x'\): 'conversations'"),
        ({"conversations": [{"from": "human"}]}, "Record 1: turn 0"),
        ({"image": 3, "conversations": [{"from": "human", "value": "a"}]}, "Record 1: 'image'"),
    ],
)
def test_invalid_json_record_names_its_index(data_dir, llama2_tok, processor, record, match):
    records = json.loads((data_dir / "data.json").read_text())
    records[1] = record
    (data_dir / "data.json").write_text(json.dumps(records))
    with pytest.raises(ValueError, match=match):
        _dataset(data_dir, llama2_tok, processor)


def test_images_in_a_text_only_run_are_rejected(data_dir, llama2_tok):
    with pytest.raises(ValueError, match="not multimodal"):
        LazySupervisedDataset(data_dir / "data.json", llama2_tok, conversation=conv_templates["v1"])


def test_text_only_run_yields_no_image(tmp_path, llama2_tok):
    path = tmp_path / "text.json"
    path.write_text(json.dumps([{"id": 0, "conversations": [
        {"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]}]))  # fmt: skip
    ds = LazySupervisedDataset(path, llama2_tok, conversation=conv_templates["v1"])
    assert set(ds[0]) == {"input_ids", "labels"}


def test_collator_pads_truncates_and_masks(llama2_tok):
    collate = DataCollatorForSupervisedDataset(tokenizer=llama2_tok, model_max_length=5)
    short = torch.tensor([1, 5, 0, 7])
    long = torch.tensor([1, 9, 9, 9, 9, 9, 9])
    batch = collate(
        [
            {"input_ids": short, "labels": torch.tensor([-100, 5, 0, 7]), "image": torch.ones(3, 2, 2)},
            {
                "input_ids": long,
                "labels": torch.tensor([-100, 9, 9, 9, 9, 9, 9]),
                "image": torch.zeros(3, 2, 2),
            },
        ]
    )
    assert batch["input_ids"].tolist() == [[1, 5, 0, 7, 0], [1, 9, 9, 9, 9]]
    assert batch["labels"].tolist() == [[-100, 5, 0, 7, -100], [-100, 9, 9, 9, 9]]
    # pad = unk (id 0): a genuine <unk> is masked too, as upstream.
    assert batch["attention_mask"].tolist() == [[True, True, False, True, False], [True] * 5]
    assert batch["images"].shape == (2, 3, 2, 2)


def test_collator_keeps_images_of_different_shapes_as_a_list(llama2_tok):
    collate = DataCollatorForSupervisedDataset(tokenizer=llama2_tok)
    ids = torch.tensor([1, 2])
    batch = collate([
        {"input_ids": ids, "labels": ids, "image": torch.ones(3, 2, 2)},
        {"input_ids": ids, "labels": ids, "image": torch.ones(3, 4, 4)},
    ])  # fmt: skip
    assert isinstance(batch["images"], list) and len(batch["images"]) == 2
    assert "images" not in collate([{"input_ids": ids, "labels": ids}])


def test_collator_without_pad_token_fails(llama2_dir):
    from llava.tokenization import load_tokenizer

    collate = DataCollatorForSupervisedDataset(tokenizer=load_tokenizer(llama2_dir))
    with pytest.raises(ValueError, match="configure_pad_token"):
        collate([{"input_ids": torch.tensor([1]), "labels": torch.tensor([1])}])


def test_make_supervised_data_module_batches(data_dir, llama2_tok, processor):
    module = make_supervised_data_module(
        llama2_tok,
        data_path=data_dir / "data.json",
        conversation=conv_templates["v1"],
        image_folder=data_dir / "images",
        image_processor=processor,
        image_aspect_ratio="pad",
        is_multimodal=True,
        mm_use_im_start_end=False,
        model_max_length=2048,
    )
    assert module["eval_dataset"] is None
    loader = torch.utils.data.DataLoader(
        module["train_dataset"], batch_size=4, collate_fn=module["data_collator"]
    )
    batch = next(iter(loader))
    assert batch["images"].shape == (4, 3, CROP, CROP)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert (batch["input_ids"] == IMAGE_TOKEN_INDEX).sum().item() == 3
