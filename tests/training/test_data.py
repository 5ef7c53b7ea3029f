"""LLaVA JSON loading, label masking token by token, lengths, truncation and bad data."""

from __future__ import annotations

import logging

import pytest
import torch

from tokenpacker.conversation import VICUNA_SYSTEM, get_template
from tokenpacker.hd import visual_token_count
from tokenpacker.modeling import IGNORE_INDEX, IMAGE_TOKEN_ID
from tokenpacker.processing import TokenPackerProcessor
from tokenpacker.tiny import build_tiny_model, build_tiny_tokenizer, tiny_config, tiny_image_processor
from training.collator import MultimodalCollator
from training.data import DataError, LlavaDataset, encode_conversation, read_llava_json

TOKENS_S4 = 36  # (24 / 4) ** 2 visual tokens per image


@pytest.fixture(scope="module")
def processor() -> TokenPackerProcessor:
    return TokenPackerProcessor(build_tiny_tokenizer(), tiny_image_processor(), tiny_config("tokenpacker", 4))


def encode(processor: TokenPackerProcessor, text: str) -> list[int]:
    return processor.tokenizer.encode(text, add_special_tokens=False)


def test_plain_template_masks_everything_but_the_caption(processor, llava):
    dataset = LlavaDataset(llava.stage1, llava.image_folder, processor, "plain", 2048)
    item = dataset[0]  # "Describe the image briefly.\n<image>" -> "a red square"
    caption = encode(processor, "a red square\n")
    bos = processor.tokenizer.bos_token_id
    # plain keeps only the image of the human turn, then the caption and "\n" (DESIGN 2).
    assert item["input_ids"].tolist() == [bos] + [IMAGE_TOKEN_ID] * TOKENS_S4 + caption
    assert item["labels"].tolist() == [IGNORE_INDEX] * (1 + TOKENS_S4) + caption
    assert item["pixel_values"].shape == (1, 3, 48, 48)


def test_vicuna_template_masks_system_user_turns_and_image(processor, llava):
    dataset = LlavaDataset(llava.stage2, llava.image_folder, processor, "vicuna_v1", 2048)
    item = dataset[0]  # two turns about red_square.png
    ids, labels = item["input_ids"].tolist(), item["labels"].tolist()
    image = processor.preprocess_image(dataset.open_image("red_square.png"))
    # LLaVA's v1 format written out by hand; each answer and its "</s>" carry loss, nothing else.
    first = VICUNA_SYSTEM + " USER: <image>\nWhat is the colour of the shape? ASSISTANT:"
    second = first + " red</s>USER: What shape is it? ASSISTANT:"
    assert ids == processor.tokenize(second + " square</s>", [image])
    expected = [IGNORE_INDEX] * len(ids)
    for prompt, answer in ((first, " red</s>"), (second, " square</s>")):
        start, end = (
            len(processor.tokenize(prompt, [image])),
            len(processor.tokenize(prompt + answer, [image])),
        )
        expected[start:end] = ids[start:end]
    assert labels == expected
    assert labels.count(processor.tokenizer.eos_token_id) == 2  # the model learns to end each answer
    assert ids.count(IMAGE_TOKEN_ID) == TOKENS_S4


def test_training_tokens_start_with_the_inference_prompt(processor, llava):
    """The prompt inference builds (template.prompt + processor) is exactly the start of the
    training sequence, so the model is trained on the tokens it will be given."""
    dataset = LlavaDataset(llava.stage2, llava.image_folder, processor, "vicuna_v1", 2048)
    image = processor.preprocess_image(dataset.open_image("red_square.png"))
    prompt = processor.tokenize(
        get_template("vicuna_v1").prompt("<image>\nWhat is the colour of the shape?"), [image]
    )
    assert dataset[0]["input_ids"].tolist()[: len(prompt)] == prompt


def test_text_only_sample_has_no_pixels(processor, llava):
    dataset = LlavaDataset(llava.stage2, llava.image_folder, processor, "vicuna_v1", 2048)
    index = dataset.has_image.index(False)
    item = dataset[index]
    assert item["pixel_values"] is None
    assert IMAGE_TOKEN_ID not in item["input_ids"].tolist()
    assert processor.tokenizer.decode(item["labels"][item["labels"] != IGNORE_INDEX]) == " yes</s>"


def test_hd_image_ids_are_all_ignored(llava):
    config = tiny_config("tokenpacker", 4, patch_num=9)
    processor = TokenPackerProcessor(build_tiny_tokenizer(), tiny_image_processor(), config)
    dataset = LlavaDataset(llava.stage2, llava.image_folder, processor, "vicuna_v1", 4096)
    item = dataset[1]  # red_circle.png is 64 x 40
    image_ids = processor.preprocess_image(dataset.open_image("red_circle.png")).token_ids
    assert len(image_ids) == visual_token_count(40, 64, 9, 4, cell_size=48)
    ids, labels = item["input_ids"].tolist(), item["labels"].tolist()
    start = ids.index(IMAGE_TOKEN_ID)
    assert ids[start : start + len(image_ids)] == image_ids
    assert labels[start : start + len(image_ids)] == [IGNORE_INDEX] * len(image_ids)


@pytest.mark.parametrize("patch_num", [None, 9])
def test_measured_lengths_equal_encoded_lengths(llava, patch_num):
    config = tiny_config("tokenpacker", 4, patch_num=patch_num)
    processor = TokenPackerProcessor(build_tiny_tokenizer(), tiny_image_processor(), config)
    dataset = LlavaDataset(llava.stage2, llava.image_folder, processor, "vicuna_v1", 4096)
    assert dataset.lengths == [len(dataset[i]["input_ids"]) for i in range(len(dataset))]


def test_overlong_samples_are_truncated_and_counted(processor, llava, caplog):
    full = LlavaDataset(llava.stage2, llava.image_folder, processor, "vicuna_v1", 4096)
    limit = min(full.lengths) + 5
    with caplog.at_level(logging.WARNING, logger="training.data"):
        dataset = LlavaDataset(llava.stage2, llava.image_folder, processor, "vicuna_v1", limit)
    too_long = sum(length > limit for length in full.lengths)
    assert too_long > 0
    assert f"{too_long} of {len(dataset)} samples" in caplog.text
    for index in range(len(dataset)):
        item = dataset[index]
        ids = item["input_ids"].tolist()
        assert len(ids) <= limit and (len(ids) == full.lengths[index] or full.lengths[index] > limit)
        assert ids == full[index]["input_ids"].tolist()[: len(ids)]
        assert ids.count(IMAGE_TOKEN_ID) in (0, TOKENS_S4)  # an image is kept whole or dropped


def test_truncation_never_splits_an_image(processor, llava):
    """An image whose ids would be cut is dropped with what follows, so ids and pixels agree."""
    full = LlavaDataset(llava.stage2, llava.image_folder, processor, "vicuna_v1", 4096)[0][
        "input_ids"
    ].tolist()
    start = full.index(IMAGE_TOKEN_ID)
    cut = LlavaDataset(llava.stage2, llava.image_folder, processor, "vicuna_v1", start + TOKENS_S4 - 1)[0]
    assert cut["input_ids"].tolist() == full[:start]
    assert cut["pixel_values"] is None
    fits = LlavaDataset(llava.stage2, llava.image_folder, processor, "vicuna_v1", start + TOKENS_S4 + 1)[0]
    assert fits["input_ids"].tolist() == full[: start + TOKENS_S4 + 1]
    assert fits["pixel_values"].shape[0] == 1


def test_collator_pads_right_and_keeps_crop_order(processor, llava):
    dataset = LlavaDataset(llava.stage2, llava.image_folder, processor, "vicuna_v1", 2048)
    text_index = dataset.has_image.index(False)
    items = [dataset[text_index], dataset[0], dataset[1]]
    batch = MultimodalCollator(processor.tokenizer.pad_token_id)(items)
    for row, item in enumerate(items):
        length = len(item["input_ids"])
        assert batch["input_ids"][row, :length].tolist() == item["input_ids"].tolist()
        assert batch["attention_mask"][row].tolist() == [1] * length + [0] * (
            batch["input_ids"].shape[1] - length
        )
        assert (batch["labels"][row, length:] == IGNORE_INDEX).all()
    assert torch.equal(batch["pixel_values"], torch.cat([items[1]["pixel_values"], items[2]["pixel_values"]]))
    text_batch = MultimodalCollator(processor.tokenizer.pad_token_id)([dataset[text_index]])
    assert "pixel_values" not in text_batch


def test_missing_image_file_is_an_error(processor, llava):
    (llava.image_folder / "blue_circle.png").unlink()
    with pytest.raises(DataError, match=r"1 image file\(s\).*blue_circle.png"):
        LlavaDataset(llava.stage1, llava.image_folder, processor, "plain", 2048)


def test_image_sample_without_placeholder_is_an_error(llava):
    samples = llava.captions()
    samples[3]["conversations"][0]["value"] = "Describe the image briefly."
    with pytest.raises(
        DataError, match=r"sample 3 \(id 'cap-green_circle.png'\) has 1 image\(s\) but 0 <image>"
    ):
        read_llava_json(llava.write("bad.json", samples))


def test_placeholder_without_image_is_an_error(llava):
    samples = [
        {
            "id": "x",
            "conversations": [{"from": "human", "value": "<image>\nHi"}, {"from": "gpt", "value": "Hi"}],
        }
    ]
    with pytest.raises(DataError, match="has 0 image"):
        read_llava_json(llava.write("bad.json", samples))


def test_malformed_json_is_an_error(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[{"id": "a", "conversations": [}')
    with pytest.raises(DataError, match="bad.json is not valid JSON"):
        read_llava_json(path)


def test_empty_data_set_is_an_error(llava):
    with pytest.raises(DataError, match="holds no samples"):
        read_llava_json(llava.write("empty.json", []))


def test_wrong_shape_of_data_is_an_error(llava):
    with pytest.raises(DataError, match="expected a list"):
        read_llava_json(llava.write("bad.json", {"conversations": []}))
    with pytest.raises(DataError, match="sample 0 has no 'conversations' list"):
        read_llava_json(llava.write("bad.json", [{"image": "a.png"}]))


def test_missing_data_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_llava_json(tmp_path / "nope.json")


def test_turn_order_error_names_the_sample(processor, llava):
    samples = llava.instructions()
    samples[0]["conversations"].reverse()
    data = llava.write("bad.json", samples)
    with pytest.raises(DataError, match="sample id 'vqa-red_square.png'.*turn 0 is from 'gpt'"):
        LlavaDataset(data, llava.image_folder, processor, "vicuna_v1", 2048)


def test_encode_conversation_matches_template_segments(processor):
    """Every token belongs to one segment; only trainable segments keep their ids as labels."""
    template = get_template("vicuna_v1")
    turns = [("human", "Hello?"), ("gpt", "Hi there"), ("human", "Bye"), ("gpt", "Bye")]
    encoded = encode_conversation(processor, template, turns, [])
    trainable = [i for i, label in enumerate(encoded.labels) if label != IGNORE_INDEX]
    assert processor.tokenizer.decode([encoded.input_ids[i] for i in trainable]) == " Hi there</s> Bye</s>"
    assert len(encoded.input_ids) == len(encoded.labels)


def test_hd_batch_trains_through_the_model(llava):
    """Collated HD samples (several crops per image, "," and "\\n" ids between them) fit the model."""
    config = tiny_config("tokenpacker", 4, patch_num=9)
    processor = TokenPackerProcessor(build_tiny_tokenizer(), tiny_image_processor(), config)
    dataset = LlavaDataset(llava.stage2, llava.image_folder, processor, "vicuna_v1", 4096)
    batch = MultimodalCollator(processor.tokenizer.pad_token_id)([dataset[1], dataset[2]])
    assert batch["pixel_values"].shape[0] > 2  # more than one crop per image
    loss = build_tiny_model(config).train()(**batch).loss
    loss.backward()
    assert torch.isfinite(loss)


def test_max_length_without_room_for_one_image_is_refused(tmp_path):
    from tokenpacker.processing import TokenPackerProcessor
    from tokenpacker.tiny import build_tiny_tokenizer, tiny_config, tiny_image_processor
    from training.data import DataError, check_room_for_an_image

    processor = TokenPackerProcessor(
        build_tiny_tokenizer(), tiny_image_processor(), tiny_config("mlp2x_gelu", 1)
    )
    with pytest.raises(DataError, match=r"model_max_length=512 cannot hold one image.*576 visual tokens"):
        check_room_for_an_image(processor, 512, has_images=True)
    check_room_for_an_image(processor, 512, has_images=False)
    check_room_for_an_image(processor, 1024, has_images=True)


def test_cached_images_are_opened_once_and_give_the_same_items(processor, llava, monkeypatch):
    cached = LlavaDataset(llava.stage1, llava.image_folder, processor, "plain", 2048, cache_images=True)
    plain = LlavaDataset(llava.stage1, llava.image_folder, processor, "plain", 2048)
    opened = []
    monkeypatch.setattr(cached, "open_image", lambda name: opened.append(name) or plain.open_image(name))
    for _ in range(2):
        for index in range(len(cached)):
            assert torch.equal(cached[index]["pixel_values"], plain[index]["pixel_values"])
    assert sorted(opened) == sorted(name for sample in cached.samples for name in sample.images)
