"""A trained run put to use: evaluate, load_model, predict, preprocess new inputs, export."""
