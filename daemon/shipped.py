"""Files shipped inside the package (licences in assets/LICENSES.md)."""

from pathlib import Path

ASSETS = Path(__file__).parent / "assets"
DEFAULT_MODEL = ASSETS / "default_model.safetensors"
DEMO_BANK = ASSETS / "demo_bank.safetensors"
DEMO_RECORDING = ASSETS / "demo.flac"
DEMO_TRUTH = ASSETS / "demo_truth.json"
DEMO_ENROLL = ASSETS / "enroll"
