"""Peak memory of a run and the analytic KV-cache size; MB means 2**20 bytes throughout.

Peak memory is what one batch-1 request needs with the model loaded:
- CUDA: `torch.cuda.max_memory_allocated` over the run (weights, activations, KV cache; the caching
  allocator's reserved-but-free blocks are not counted).
- CPU (Linux): the process's peak resident set during the run (VmHWM, reset just before it through
  /proc/self/clear_refs) minus its resident set just before the model was loaded, so weights, the
  run's activations and its KV cache, as resident pages. Pages the allocator kept from earlier work
  can be reused unseen, so this is a lower bound on a busy process and exact on a fresh one.
- CPU elsewhere: not measured; NaN.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedConfig

MIB = 2**20
PROC_STATUS = Path("/proc/self/status")
PROC_CLEAR_REFS = Path("/proc/self/clear_refs")
RESET_PEAK_RSS = "5"  # proc(5): writing 5 to clear_refs resets VmHWM to the current VmRSS


def kv_cache_mb_per_1k_tokens(text_config: PreTrainedConfig, dtype: torch.dtype) -> float:
    """Keys and values of 1000 tokens of one sequence: 2 x layers x kv heads x head dim x bytes."""
    heads = text_config.num_attention_heads
    kv_heads = getattr(text_config, "num_key_value_heads", None) or heads
    head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // heads
    bytes_per_token = 2 * text_config.num_hidden_layers * kv_heads * head_dim * dtype.itemsize
    return bytes_per_token * 1000 / MIB


def process_memory_mb(field: str) -> float:
    """A Vm* field of /proc/self/status (VmRSS: resident now, VmHWM: peak resident since reset)."""
    match = re.search(rf"^{field}:\s+(\d+) kB$", PROC_STATUS.read_text(), re.MULTILINE)
    if match is None:
        raise OSError(f"{PROC_STATUS} has no {field} line")
    return int(match.group(1)) * 1024 / MIB


def cpu_peak_memory_supported() -> bool:
    return PROC_STATUS.is_file() and PROC_CLEAR_REFS.is_file()


@dataclass(frozen=True)
class PeakMemoryMeter:
    """Start it before loading the model, then `measure` one run; see the module docstring."""

    device: torch.device
    baseline_mb: float  # resident memory before the model was loaded (CPU); 0 on CUDA

    @classmethod
    def start(cls, device: torch.device) -> PeakMemoryMeter:
        on_cpu = device.type == "cpu"
        baseline = process_memory_mb("VmRSS") if on_cpu and cpu_peak_memory_supported() else 0.0
        return cls(device=device, baseline_mb=baseline)

    def measure(self, run: Callable[[], object]) -> float:
        """Peak memory in MB while `run()` executes."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            run()
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) / MIB
        if not cpu_peak_memory_supported():
            return math.nan
        PROC_CLEAR_REFS.write_text(RESET_PEAK_RSS)
        run()
        return process_memory_mb("VmHWM") - self.baseline_mb
