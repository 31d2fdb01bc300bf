"""The review console: web pages where an accountable person sees exactly what they approve (README: Review console)."""
