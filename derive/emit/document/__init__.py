"""The documents: the .tex/.md context, the unrolled graph, the HTML page and the notebook display."""
