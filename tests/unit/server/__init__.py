"""Pure tests of the broker's modules."""
