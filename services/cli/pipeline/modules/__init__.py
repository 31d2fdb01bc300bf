"""Data directory shipped with the package (an __init__ makes setuptools include it in wheels)."""
