"""The author's numbers: events readers cause and the statistics built from them."""
