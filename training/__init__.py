"""Training and judging: the losses, the EMD-CNN and encoder training loops, the exact-EMD
evaluation of a trained encoder and the loss comparison."""
