"""Vision encoders (towers) feeding the projector."""
