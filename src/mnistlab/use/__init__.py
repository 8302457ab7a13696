"""Using a trained run: read a person's image (``imagefile``), prepare it as MNIST's digits were
made (``imageprep``), ``predict``, and ``export`` to ONNX; ``nondigits`` draws things that are not
digits and measures how well a run's "not a digit I know" check catches them.
"""
