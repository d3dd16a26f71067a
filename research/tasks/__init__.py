"""What is learned: each task gives a loss_fn, its metrics and its image summaries."""
