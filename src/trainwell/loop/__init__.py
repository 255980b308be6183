"""The training engine: the Trainer, its state, one step, validation, precision, optimizers, schedules."""
