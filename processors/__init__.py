"""Ready coffea processors for the hepnn_coffea use cases (thin: the logic is in the library)."""
