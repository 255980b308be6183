"""Several processes under torchrun: the launch environment, the session and its collectives."""
