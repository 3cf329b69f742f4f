"""Independent references (numpy forward pass, tokenizers BPE, tiny GGUF writer) for the CLI tests."""
