"""The `aural` command line: `aural serve` and `aural say`."""
