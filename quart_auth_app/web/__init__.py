"""The HTTP edge: the only package that touches Quart's `request`, `g` and `current_app`.

Views read input, call one core function with plain arguments, and shape the response; domain
errors from the core become HTTP in errors.py.
"""
