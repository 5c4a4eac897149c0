"""Waveforms → normalised log-MEL matrices, batched, on the pipeline's device.

Every window of every stream goes through here in one call per sample rate and tick: resample to
the model rate with a cached kernel, MelSpectrogram with 128 mels, log, then the window's mean (over
every band and frame) subtracted so that a level change does not move the embedding. The shape of the
spectrum stays: a net that should not see a channel's fixed colouring (a telephone band, a codec)
subtracts each band's mean itself (`Architecture.centre_bands`, cepstral-mean style) — which also
removes the voice's average spectrum, so a model may run members of both kinds side by side.
"""

from __future__ import annotations

import dataclasses
import logging

import torch
import torchaudio

from voicewatch.resample import make_resampler

_LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FeatureSettings:
    """Front-end parameters; stored in every model checkpoint so a model always gets its own features."""

    sample_rate: int = 22050
    """Model sample rate in Hz; input at any other rate is resampled to it."""
    n_fft: int = 1024
    hop_length: int = 441
    """20 ms: a whole number of frames per second, so overlapping windows can share frames."""
    n_mels: int = 128
    f_min: float = 20.0
    f_max: float = 11025.0
    log_floor: float = 1e-6
    """Added before the log so digital silence stays finite."""

    def frames(self, samples: int) -> int:
        """Number of MEL frames for `samples` samples at the model rate (no centre padding)."""
        return (samples - self.n_fft) // self.hop_length + 1


def pick_device(name: str = "auto") -> torch.device:
    """`auto` takes CUDA when the host has it, the CPU otherwise."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    return device


class FeatureExtractor(torch.nn.Module):
    """Batched resample + log-MEL; resampling kernels are built once per input rate."""

    def __init__(self, settings: FeatureSettings = FeatureSettings()) -> None:
        super().__init__()
        self.settings = settings
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=settings.sample_rate,
            n_fft=settings.n_fft,
            hop_length=settings.hop_length,
            n_mels=settings.n_mels,
            f_min=settings.f_min,
            f_max=settings.f_max,
            power=2.0,
            center=False,  # frames depend only on the samples they cover, as in a stream
        )
        self._resamplers = torch.nn.ModuleDict()

    def _resampler(self, rate: int) -> torch.nn.Module:
        key = str(rate)
        if key not in self._resamplers:
            resampler = make_resampler(rate, self.settings.sample_rate)
            self._resamplers[key] = resampler.to(self.mel.spectrogram.window.device)
        return self._resamplers[key]

    def resample(self, waves: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """[B, T] at `sample_rate` → [B, T'] at the model rate."""
        if sample_rate == self.settings.sample_rate:
            return waves
        return self._resampler(sample_rate)(waves)

    def log_mel(self, waves: torch.Tensor) -> torch.Tensor:
        """[B, T] at the model rate → [B, n_mels, frames], less the window's mean."""
        return self.normalise(self.raw_log_mel(waves))

    def raw_log_mel(self, waves: torch.Tensor) -> torch.Tensor:
        """[B, T] at the model rate → [B, n_mels, frames] log power, each frame from its own samples only."""
        return torch.log(self.mel(waves) + self.settings.log_floor)

    @staticmethod
    def normalise(raw: torch.Tensor) -> torch.Tensor:
        """The window's mean over every band and frame subtracted: gain cancels, the spectrum's shape stays (a
        net that wants a channel's colouring cancelled too centres each band itself: `Architecture.centre_bands`)."""
        return raw - raw.mean(dim=(-2, -1), keepdim=True)

    def forward(self, waves: torch.Tensor, sample_rate: int) -> torch.Tensor:
        device = self.mel.spectrogram.window.device
        waves = waves.to(device=device, dtype=torch.float32)
        return self.log_mel(self.resample(waves, sample_rate))
