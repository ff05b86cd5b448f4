"""The command line: options parsed, one core function called per command, rendered."""
