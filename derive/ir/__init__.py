"""What every stage speaks: the expression classes, the operator records, the cell and its names."""
