"""Using a trained run: read a person's image (``imagefile``), prepare it as MNIST's digits were
made (``imageprep``), ``predict``, and ``export`` to ONNX.
"""
