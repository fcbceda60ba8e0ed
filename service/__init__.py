"""regimen-delivery: double opt-in delivery of a free exercise regimen."""
