"""Tiny models built from configs in seconds on a CPU, with a tokenizer trained locally.

The tiny CLIP sees 48 px images with 2 px patches, so its patch grid is 24 x 24 like the
real 336 px / 14 px tower, and scale_factor 2/3/4 give the paper's 144/64/36 tokens.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import CLIPImageProcessor, PreTrainedTokenizerFast

from tokenpacker.modeling import TokenPackerConfig, TokenPackerForCausalLM

TINY_IMAGE_SIZE = 48
TINY_PATCH_SIZE = 2  # a 24x24 grid, like the real tower; 4 gives a 12x12 grid (a quarter of the tokens)
TINY_VOCAB_SIZE = 768  # the corpus below yields about 660 tokens; the rest stay unused
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Text the tiny tokenizer's merges are learnt from: chat templates and the words of
# simple visual questions. Byte-level BPE still encodes any other text.
TOKENIZER_CORPUS = """\
A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.
USER: ASSISTANT: <image>
What is the colour of the shape? What color is the object? What shape is it? How many objects are there?
Is there a red circle in the image? Is the square left of the triangle? Answer the question using a single word or phrase.
Answer with the option's letter from the given choices directly. What does the text say? What is written in the image?
Please answer yes or no. Yes No yes no A B C D Options:
red green blue yellow purple orange white black gray cyan magenta brown pink
circle square triangle star cross diamond ring bar line shape shapes object objects
left right above below top bottom middle center corner next to of the a an is are there in on at with and or
small large big tiny medium size number letter word text digit
0 1 2 3 4 5 6 7 8 9 10 11 12 zero one two three four five six seven eight nine ten
a b c d e f g h i j k l m n o p q r s t u v w x y z
A B C D E F G H I J K L M N O P Q R S T U V W X Y Z
The image shows a picture containing of with , . ? ! : ; ' " ( ) - + = \n
"""


def build_tiny_tokenizer(vocab_size: int = TINY_VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """Byte-level BPE learnt from TOKENIZER_CORPUS; deterministic, offline, survives save/load."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(TOKENIZER_CORPUS.splitlines() * 4, trainer=trainer)
    bos = tokenizer.token_to_id("<s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        model_max_length=2048,
    )


def tiny_image_processor() -> CLIPImageProcessor:
    return CLIPImageProcessor(
        size={"shortest_edge": TINY_IMAGE_SIZE},
        crop_size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE},
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    )


def tiny_config(
    projector_type: str = "tokenpacker",
    scale_factor: int = 2,
    patch_num: int | None = None,
    vocab_size: int = TINY_VOCAB_SIZE,
    patch_size: int = TINY_PATCH_SIZE,
    multi_level_layers: Sequence[int] = (2, 3, 4, 5),
    **overrides,
) -> TokenPackerConfig:
    """A complete tiny LLaVA: 6-layer CLIP (width 64; a 24x24 grid at patch_size 2) and a 4-layer LLaMA (width 128).

    patch_size 4 (a 12x12 grid) makes every step about four times cheaper for the MLP and
    TokenPacker-HD, which is what lets the tiny sweep train long enough to learn on 2 CPU cores.
    """
    if patch_size <= 0 or TINY_IMAGE_SIZE % patch_size:  # the patches must tile the image
        raise ValueError(
            f"tiny patch_size {patch_size} does not divide the {TINY_IMAGE_SIZE} px image; use 2, 3, 4, 6 or 8"
        )
    vision_config = {
        "model_type": "clip_vision_model",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 6,
        "num_attention_heads": 4,
        "image_size": TINY_IMAGE_SIZE,
        "patch_size": patch_size,
        "projection_dim": 64,
    }
    text_config = {
        "model_type": "llama",
        "hidden_size": 128,
        "intermediate_size": 384,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "vocab_size": vocab_size,
        "max_position_embeddings": 2048,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 3,
        "tie_word_embeddings": False,
    }
    return TokenPackerConfig(
        vision_config=vision_config,
        text_config=text_config,
        projector_type=projector_type,
        scale_factor=scale_factor,
        image_aspect_ratio="slice" if patch_num is not None else "pad",
        patch_num=patch_num,
        vision_select_layer=-2,
        multi_level_layers=list(multi_level_layers),
        # DESIGN's std 0.02 is about 1/sqrt(3 * 1024), PyTorch's scale at the released width; at the
        # tiny width 64 it shrank the signal at every layer and the tiny TokenPacker lost the colour of
        # a shape. Scaled by fan-in, stage 1 (150 steps of 16, lr 3e-3) names 0.81 of caption colours
        # instead of 0.47.
        projector_init_std=None,
        **overrides,
    )


def build_tiny_model(config: TokenPackerConfig | None = None, seed: int = 0) -> TokenPackerForCausalLM:
    """Weights depend only on the seed, so two builds with one seed are identical."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return TokenPackerForCausalLM(config or tiny_config())


def save_tiny_checkpoint(directory: Path, config: TokenPackerConfig | None = None, seed: int = 0) -> Path:
    """A complete checkpoint folder (model, tokenizer, image processor) loadable with from_pretrained."""
    directory = Path(directory)
    build_tiny_model(config, seed).save_pretrained(directory)
    build_tiny_tokenizer().save_pretrained(directory)
    tiny_image_processor().save_pretrained(directory)
    return directory


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`tokenpacker tiny`: a random tiny checkpoint, e.g. to try `tokenpacker eval` in seconds."""
    parser.add_argument("--out", type=Path, required=True, help="folder to write the checkpoint into")
    parser.add_argument("--projector", default="tokenpacker", help="projector type (default: %(default)s)")
    parser.add_argument("--scale-factor", type=int, default=2, help="default: %(default)s")
    parser.add_argument(
        "--patch-num", type=int, default=None, help="TokenPacker-HD crops (9, 16 or 25); default: no HD"
    )
    parser.add_argument(
        "--patch-size",
        type=int,
        default=TINY_PATCH_SIZE,
        help="CLIP patch side in px: 2 (24x24 grid) or 4 (12x12)",
    )
    parser.add_argument("--seed", type=int, default=0, help="default: %(default)s")


def run(args: argparse.Namespace) -> int:
    config = tiny_config(args.projector, args.scale_factor, args.patch_num, patch_size=args.patch_size)
    if args.out.exists() and any(args.out.iterdir()):
        raise FileExistsError(f"{args.out} is not empty; choose a new --out folder")
    save_tiny_checkpoint(args.out, config, args.seed)
    print(
        f"tiny {args.projector} checkpoint ({config.tokens_per_crop()} visual tokens per crop) written to {args.out}"
    )
    return 0
