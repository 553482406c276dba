"""Models built from the cell library, and loading them from safetensors files."""
