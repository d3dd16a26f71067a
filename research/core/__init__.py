"""The functional core shared by every model family: state, step, loop, sharding, checkpoints."""
