"""The run of one message: input gate, generation, output screening, selection."""
