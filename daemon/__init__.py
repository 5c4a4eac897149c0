"""voicewatch: find one voice in many audio streams at once.

`Embedder` and `SpeakerBank` are imported on first use, so light commands (`tail`, `replay`) do
not pay for importing torch.
"""

from typing import TYPE_CHECKING, Any

__all__ = ["Embedder", "SpeakerBank"]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from voicewatch.bank import SpeakerBank
    from voicewatch.embedder import Embedder


def __getattr__(name: str) -> Any:
    if name == "Embedder":
        from voicewatch.embedder import Embedder

        return Embedder
    if name == "SpeakerBank":
        from voicewatch.bank import SpeakerBank

        return SpeakerBank
    raise AttributeError(f"module 'voicewatch' has no attribute {name!r}")
