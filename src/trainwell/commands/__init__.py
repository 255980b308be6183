"""The subcommands of ``trainwell``, one module each (see ``trainwell.cli``)."""
