"""specnet draw: the network as a picture laid out by Graphviz."""
