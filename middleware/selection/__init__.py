"""Best-of-N selection: choosing one reply among the safe candidates."""
