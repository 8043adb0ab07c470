"""bptt flow: how the gradient flows back in time, measured exactly (complex step) and plotted."""
