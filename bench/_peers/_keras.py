"""The notebook's model and ``model.fit`` in Keras 3, for any backend (set before import)."""

from __future__ import annotations

import os
import time

import common


def run(backend: str, requires: tuple[str, ...], steps_per_execution: int = 1) -> None:
    args = common.parse_args(f"notebook recipe in Keras 3 + {backend}")
    common.require(*requires)
    os.environ["KERAS_BACKEND"] = backend  # must precede the first `import keras`
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    t0 = time.perf_counter()
    import keras

    import_s = time.perf_counter() - t0
    d = common.load(args.data)
    keras.utils.set_random_seed(d["seed"])

    model = keras.Sequential(
        [keras.Input((784,))]
        + [keras.layers.Dense(k.shape[1], activation="relu") for k in d["kernels"][:-1]]
        + [keras.layers.Dense(10, activation="softmax")]
    )
    model.set_weights([w for pair in zip(d["kernels"], d["biases"]) for w in pair])
    # Keras 3 dropped SGD(decay=...); InverseTimeDecay(decay_steps=1) is the same lr/(1+decay*t).
    lr = keras.optimizers.schedules.InverseTimeDecay(0.01, decay_steps=1, decay_rate=1e-6)
    model.compile(
        loss="categorical_crossentropy",
        optimizer=keras.optimizers.SGD(learning_rate=lr, momentum=0.9, nesterov=True),
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )

    clock = common.EpochClock()
    timer = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda e, logs: clock.begin(), on_epoch_end=lambda e, logs: clock.end()
    )
    x_all = d["x_all"]
    y_all = keras.utils.to_categorical(d["y_all"], 10)
    split = d["validation_split"]  # 0.3: Keras takes the LAST 30 % as validation
    # As the notebook writes it (verbose=0 so printing is not timed).
    hist = model.fit(
        x_all,
        y_all,
        batch_size=32,
        epochs=args.epochs,
        verbose=0,
        validation_split=split,
        callbacks=[timer],
    )
    _, test_acc = model.evaluate(
        d["x_test"], keras.utils.to_categorical(d["y_test"], 10), verbose=0, batch_size=1000
    )
    common.write(
        args.out,
        epoch_seconds=clock.seconds,
        test_accuracy=float(test_acc),
        val_accuracy=float(hist.history["val_accuracy"][-1]),
        import_seconds=import_s,
        n_train=d["n_train"],
        versions={"keras": keras.__version__, backend: _version(backend)},
        threads=None,
        note=f"steps_per_execution={steps_per_execution}",
    )


def _version(module: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(module)
