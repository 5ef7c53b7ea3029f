"""One training stage on HF Trainer (DeepSpeed through its `deepspeed=` argument).

A stage writes into its own folder: Trainer checkpoints (`checkpoint-N/`, resumed from
automatically), `trainer_state.json` (the loss log), and at the end `final/`, a complete
suite checkpoint (model, tokenizer, image processor; stage 1 adds `mm_projector.safetensors`).
`final/` appears only when the stage finished, so its presence means "done".
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import torch
from peft import PeftModel
from torch.utils.data import Sampler
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint
from transformers.utils.generic import is_flash_attention_requested

from tokenpacker.checkpoints import read_state_dict
from tokenpacker.processing import TokenPackerProcessor
from training.collator import MultimodalCollator
from training.data import LlavaDataset
from training.model import add_lora, build_model, set_trained_parts
from training.projector_file import PROJECTOR_FILE, load_projector_file, save_projector_file
from training.recipe import Recipe, RecipeError, StageRecipe
from training.sampling import ModalityLengthGroupedSampler

logger = logging.getLogger(__name__)
FINAL = "final"
PACKAGED_DEEPSPEED_CONFIGS = ("zero2", "zero3")


class MultimodalTrainer(Trainer):
    """HF Trainer plus LLaVA's group_by_modality_length sampling and its projector lr (mm_projector_lr)."""

    def __init__(
        self,
        *args,
        group_by_modality_length: bool = False,
        projector_learning_rate: float | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.group_by_modality_length = group_by_modality_length
        self.projector_learning_rate = projector_learning_rate

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        """Trainer's optimizer, with the projector's parameters moved into groups of their own lr."""
        optimizer = super().create_optimizer(model)
        if self.projector_learning_rate is not None:
            split_projector_groups(optimizer, projector_parameters(self.model), self.projector_learning_rate)
        return optimizer

    def _get_train_sampler(self, train_dataset: LlavaDataset | None = None) -> Sampler | None:
        if not self.group_by_modality_length:
            return super()._get_train_sampler(train_dataset)
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        global_batch = (
            self.args.train_batch_size * self.args.world_size * self.args.gradient_accumulation_steps
        )
        return ModalityLengthGroupedSampler(dataset.lengths, dataset.has_image, global_batch, self.args.seed)


def projector_parameters(model: torch.nn.Module) -> set[int]:
    """ids of the projector's parameters, also under a PEFT wrapper."""
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    return {id(p) for p in base.projector.parameters()}


def split_projector_groups(optimizer: torch.optim.Optimizer, projector: set[int], lr: float) -> None:
    """Each group's projector parameters become a group of their own (same settings, `lr`), after the
    LLM's groups, so the Trainer logs the LLM's lr. Done before the first step, with no state yet;
    the scheduler scales every group's lr by the same factor, so the ratio holds all along."""
    moved = []
    for group in optimizer.param_groups:
        ours = [p for p in group["params"] if id(p) in projector]
        if ours:
            group["params"] = [p for p in group["params"] if id(p) not in projector]
            moved.append({**group, "params": ours, "lr": lr})
    optimizer.param_groups[:] = [g for g in optimizer.param_groups if g["params"]]
    for group in moved:
        optimizer.add_param_group(group)


def stage_collator(
    model: torch.nn.Module, processor: TokenPackerProcessor, settings: StageRecipe
) -> MultimodalCollator:
    """Packed batches take one row under flash attention, the only layout it finds samples in."""
    one_row = is_flash_attention_requested(model.language_model.config)
    return MultimodalCollator(processor.tokenizer.pad_token_id, settings.padding_free, one_row)


def deepspeed_config_path(value: str | None) -> str | None:
    """`zero2` / `zero3` name the configs shipped in training/deepspeed/; anything else is a path."""
    if value is None:
        return None
    if value in PACKAGED_DEEPSPEED_CONFIGS:
        return str(resources.files("training") / "deepspeed" / f"{value}.json")
    if not Path(value).is_file():
        raise FileNotFoundError(
            f"DeepSpeed config {value} does not exist; give a JSON path or one of {', '.join(PACKAGED_DEEPSPEED_CONFIGS)}"
        )
    return value


def training_arguments(settings: StageRecipe, output_dir: Path) -> TrainingArguments:
    """Made before the model so that, under ZeRO-3, transformers knows to partition at load time."""
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=settings.per_device_train_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        num_train_epochs=settings.num_train_epochs,
        max_steps=settings.max_steps,
        learning_rate=settings.learning_rate,
        warmup_steps=settings.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        weight_decay=settings.weight_decay,
        lr_scheduler_type=settings.lr_scheduler_type,
        max_grad_norm=settings.max_grad_norm,
        activation_checkpointing=settings.gradient_checkpointing,
        bf16=settings.bf16,
        tf32=settings.tf32,
        deepspeed=deepspeed_config_path(settings.deepspeed),
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        logging_steps=settings.logging_steps,
        dataloader_num_workers=settings.dataloader_num_workers,
        # workers rebuilt each epoch would drop the images they cached
        dataloader_persistent_workers=settings.cache_images and settings.dataloader_num_workers > 0,
        dataloader_pin_memory=torch.cuda.is_available(),
        seed=settings.seed,
        report_to=settings.report_to,
        remove_unused_columns=False,
    )


def check_stage_inputs(recipe: Recipe, stage: int, section: str | None = None) -> None:
    """What a stage reads must be there before any stage starts, not hours into the run.

    `section` names the recipe section when it is not `stage<stage>` (stage0_anneal, a stage-0 phase)."""
    name = section or f"stage{stage}"
    settings = getattr(recipe, name)
    stage_data_file(recipe, name)
    image_folder = recipe.data_location(settings.image_folder)
    if image_folder is not None and not image_folder.is_dir():
        raise FileNotFoundError(
            f"{name} image folder {image_folder} does not exist; fix image_folder or data_root"
        )
    zero3 = deepspeed_zero_stage(settings.deepspeed) == 3
    if settings.cache_images and zero3:
        raise RecipeError(
            f"{name}: cache_images lets a rank skip the tower, whose ZeRO-3 shards every rank must gather "
            "together; use deepspeed zero2 or cache_images: false"
        )
    if settings.lora_r and zero3:
        raise RecipeError(
            f"{name}: LoRA (lora_r={settings.lora_r}) cannot be merged into a ZeRO-3 partitioned model; "
            "use deepspeed zero2"
        )
    if settings.projector_learning_rate is not None and "optimizer" in deepspeed_config(settings.deepspeed):
        raise RecipeError(
            f"{name}.projector_learning_rate is set, but the DeepSpeed config {settings.deepspeed} builds its own "
            "optimizer, which would ignore it; remove the config's optimizer section or the projector lr"
        )


def stage_data_file(recipe: Recipe, name: str) -> Path:
    """The data file of recipe section `name`, which must exist."""
    settings = getattr(recipe, name)
    if not settings.data_path:
        raise RecipeError(f"{name}.data_path is not set; give --{name}.data_path PATH to a LLaVA JSON file")
    data_path = recipe.data_location(settings.data_path)
    if not data_path.is_file():
        skip = f"; or skip {name} with --{name}.data_path null" if name.startswith("stage0") else ""
        raise FileNotFoundError(
            f"{name} data file {data_path} does not exist; fix data_path or data_root{skip}"
        )
    return data_path


def deepspeed_config(value: str | None) -> dict:
    path = deepspeed_config_path(value)
    return json.loads(Path(path).read_text()) if path else {}


def deepspeed_zero_stage(value: str | None) -> int:
    return deepspeed_config(value).get("zero_optimization", {}).get("stage", 0)


def run_stage(
    recipe: Recipe,
    stage: int,
    stage_dir: Path,
    projector_file: Path | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> Path:
    """Train stage 1 (projector) or 2 (projector + LLM) into `stage_dir`; returns `stage_dir/final`.

    A finished stage is returned as is; an interrupted one resumes from its last checkpoint.
    Stage 2 starts from `projector_file` (the stage-1 hand-off).
    """
    final = stage_dir / FINAL
    if final.is_dir():
        logger.info("stage %d already finished: %s", stage, final)
        return final
    settings = recipe.stage(stage)
    check_stage_inputs(recipe, stage)
    args = training_arguments(settings, stage_dir)
    model, processor = build_model(recipe.model)
    if projector_file is not None:
        load_projector_file(model, projector_file)
    set_trained_parts(model, stage)
    tower = model.vision_tower
    tower.remember_features(settings.cache_images)
    if settings.lora_r:
        model = add_lora(model, settings.lora_r, settings.lora_alpha, settings.lora_dropout)
    dataset = LlavaDataset(
        recipe.data_location(settings.data_path),
        recipe.data_location(settings.image_folder),
        processor,
        settings.conversation_template,
        settings.model_max_length,
        cache_images=settings.cache_images,
    )
    trainer = MultimodalTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=stage_collator(model, processor, settings),
        processing_class=processor.tokenizer,
        callbacks=list(callbacks),
        group_by_modality_length=settings.group_by_modality_length,
        projector_learning_rate=settings.projector_learning_rate,
    )
    last_checkpoint = get_last_checkpoint(str(stage_dir)) if stage_dir.is_dir() else None
    if last_checkpoint:
        logger.info("stage %d resumes from %s", stage, last_checkpoint)
    try:
        trainer.train(resume_from_checkpoint=last_checkpoint)
    finally:
        tower.remember_features(False)  # the model outlives the stage; its memo need not
    trainer.save_state()
    save_final(trainer, processor, settings.conversation_template, stage, final)
    return final


def save_final(
    trainer: Trainer, processor: TokenPackerProcessor, template: str, stage: int, final: Path
) -> None:
    """Write the stage's suite checkpoint to `final.partial/`, then rename it into place."""
    partial = final.with_name(final.name + ".partial")
    if trainer.is_world_process_zero():
        shutil.rmtree(partial, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    model = trainer.model
    if isinstance(model, PeftModel):  # fold the adapters in, so the folder is a plain suite model
        model = model.merge_and_unload()
        model.config.conversation_template = template
        if trainer.is_world_process_zero():
            model.save_pretrained(partial)
    else:
        model.config.conversation_template = template
        trainer.save_model(str(partial))  # gathers ZeRO-3 shards where needed
    if trainer.is_world_process_zero():
        processor.tokenizer.save_pretrained(partial)
        processor.image_processor.save_pretrained(partial)
        if stage == 1:
            save_projector_file(read_state_dict(partial), model.config, partial / PROJECTOR_FILE)
        partial.rename(final)
    trainer.accelerator.wait_for_everyone()
