"""Audio sources for the voicewatch core, each registered by name (see registry.py)."""
