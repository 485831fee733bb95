"""Red-team data: the harm-category taxonomy, the stratified train/test split, and the leakage index that
keeps test prompts out of every stage's training data. Pure functions: the data step and evaluation use them."""
