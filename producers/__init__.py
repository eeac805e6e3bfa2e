"""Clients that publish prediction requests and feedback to irisflow's topics."""
