"""Stage 6: a derivation as text, through SymPy printers and Jinja2 templates (templates/ at the top)."""
