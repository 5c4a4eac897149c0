"""voicewatch: find one voice in many audio streams at once."""

from voicewatch.bank import SpeakerBank
from voicewatch.embedder import Embedder

__all__ = ["Embedder", "SpeakerBank"]
__version__ = "0.1.0"
