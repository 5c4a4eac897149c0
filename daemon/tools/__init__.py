"""Tools beside the product: the demo, the benchmark and the peer model."""
