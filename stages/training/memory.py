"""Peak memory of a block: CUDA max allocated, or on CPU the peak RSS above the start RSS."""

from __future__ import annotations

import resource
from pathlib import Path

import torch


def _read_status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """Peak memory of a block: CUDA max allocated, or on CPU the peak RSS above the start RSS."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        self._hwm_reset = False
        try:  # "5" resets the kernel's peak-RSS counter (VmHWM) of this process
            Path("/proc/self/clear_refs").write_text("5")
            self._hwm_reset = True
        except OSError:
            pass
        rss = _read_status_kb("VmRSS")
        self._start_kb = rss if rss is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = int(torch.cuda.max_memory_allocated(self.device))
            return
        hwm = _read_status_kb("VmHWM") if self._hwm_reset else None
        if hwm is None:
            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.peak = max(0, hwm - self._start_kb) * 1024
