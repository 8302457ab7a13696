"""Peer: Keras 3 + JAX with ``steps_per_execution=32`` (32 steps per compiled call)."""

REQUIRES = ("keras", "jax")

if __name__ == "__main__":
    import _keras

    _keras.run("jax", REQUIRES, steps_per_execution=32)
