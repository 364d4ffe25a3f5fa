"""One module per speed suite (see `launch.speed`)."""
