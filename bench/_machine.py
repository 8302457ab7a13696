"""The machine a benchmark ran on, as the first line every bench script prints and as the
``machine`` entry of its ``--json`` output.

Figures from two CPUs are never comparable (an Intel core pays ~100 cycles per subnormal
operand, an AMD one barely notices; OpenBLAS picks different kernels per core), so each figure
carries: the CPU model (with its family/model numbers: virtual machines often say only "AMD
EPYC"), its vector extensions (AVX2, AVX-512, AMX on x86; NEON, SVE on Arm), logical CPUs and
those this process may use, and each BLAS library NumPy (and, when asked, torch) loaded, with
its version, kernels and threads.

    >>> info = describe()
    >>> sorted(info)
    ['blas', 'cores', 'cpu', 'platform', 'usable_cores', 'vector']
    >>> line(info).startswith("machine: ")
    True
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

# /proc/cpuinfo flag -> the name people use; in the order printed
X86_EXTENSIONS = {
    "avx2": "AVX2",
    "fma": "FMA",
    "avx512f": "AVX-512",
    "avx512_bf16": "AVX-512-BF16",
    "avx512_fp16": "AVX-512-FP16",
    "amx_tile": "AMX",
}
ARM_EXTENSIONS = {"asimd": "NEON", "sve": "SVE", "sve2": "SVE2", "sme": "SME"}
# named as absent when missing, so "no AVX-512" is stated rather than left to guess
HEADLINE = {"x86_64": ("AVX2", "AVX-512", "AMX"), "aarch64": ("NEON", "SVE")}
HERE = Path(__file__).resolve().parent


def _cpuinfo() -> dict[str, str]:
    """The first processor's block of /proc/cpuinfo (Linux), else {}."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for row in text.split("\n\n")[0].splitlines():
        key, _, value = row.partition(":")
        out.setdefault(key.strip(), value.strip())
    return out


def _sysctl(name: str) -> str | None:
    try:
        return subprocess.run(
            ["sysctl", "-n", name], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def cpu() -> tuple[str, list[str]]:
    """(model, vector extensions present) of this CPU."""
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower())
    arch = arch or platform.machine().lower()
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    table = X86_EXTENSIONS if arch == "x86_64" else ARM_EXTENSIONS
    model = info.get("model name") or _sysctl("machdep.cpu.brand_string") or platform.processor()
    if "cpu family" in info:  # x86: the numbers name the core generation
        model += f" (family {info['cpu family']}, model {info['model']})"
    elif "CPU part" in info:  # Arm: implementer and part number
        model = model or "Arm"
        model += f" (implementer {info.get('CPU implementer')}, part {info['CPU part']})"
    if not flags and sys.platform == "darwin" and arch == "aarch64":
        flags = {"asimd"}  # every Apple silicon core has NEON
    return model or arch or "unknown CPU", [name for f, name in table.items() if f in flags]


def blas_libraries() -> list[dict]:
    """Each BLAS library loaded in this process (NumPy's, SciPy's, ...), via threadpoolctl;
    without it, NumPy's build configuration (no thread count)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        import numpy as np

        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return [{"owner": "numpy", "library": blas["name"], "version": blas.get("version")}]
    import numpy  # noqa: F401  (loads its BLAS)

    out = []
    for lib in threadpool_info():
        if lib.get("user_api") != "blas":
            continue
        path = lib.get("filepath", "")
        owner = next((o for o in ("numpy", "scipy", "torch") if o in path), Path(path).name)
        out.append(
            {
                "owner": owner,
                "library": lib.get("internal_api"),
                "version": lib.get("version"),
                "kernels": lib.get("architecture"),
                "threads": lib.get("num_threads"),
            }
        )
    return out


def torch_facts(torch) -> dict:
    """torch's version, BLAS library (from its build configuration) and intra-op threads."""
    import re

    cfg = torch.__config__.show()
    blas = re.search(r"BLAS_INFO=(\w+)", cfg)
    mkl = re.search(r"Math Kernel Library Version ([\d.]+)", cfg)
    return {
        "version": torch.__version__,
        "library": blas.group(1) if blas else "?",
        "library_version": mkl.group(1) if mkl else None,
        "threads": torch.get_num_threads(),
    }


def torch_blas() -> dict | None:
    """``torch_facts``, read in a child process unless torch is imported already (importing it
    here would load its thread pools into the benchmark); None when torch is not installed."""
    import importlib.util

    if "torch" in sys.modules:
        return torch_facts(sys.modules["torch"])
    if importlib.util.find_spec("torch") is None:
        return None
    code = (
        f"import json, sys; sys.path.insert(0, {str(HERE)!r}); import _machine, torch; "
        "print(json.dumps(_machine.torch_facts(torch)))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout)


def describe(torch: bool = False) -> dict:
    """This machine as a dict (``torch``: add torch's BLAS, ~1-2 s in a child process)."""
    model, vector = cpu()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    blas: dict = {"numpy": [b for b in blas_libraries() if b["owner"] in ("numpy", "scipy")]}
    if torch:
        blas["torch"] = torch_blas()
    return {
        "cpu": model,
        "vector": vector,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "blas": blas,
        "platform": f"{platform.system()} {platform.machine()}, Python {platform.python_version()}",
    }


def _blas_text(b: dict) -> str:
    text = f"{b['owner']} {b['library']} {b.get('version') or ''}".rstrip()
    if b.get("kernels"):
        text += f" {b['kernels']} kernels"
    if b.get("threads") is not None:
        text += f", {b['threads']} thread{'s' * (b['threads'] != 1)} at start"
    return text


def line(info: dict) -> str:
    """One line: CPU, extensions, cores, BLAS libraries and threads."""
    arch = info["platform"].split(", ")[0].split()[-1]
    missing = [f"no {n}" for n in HEADLINE.get(arch, ()) if n not in info["vector"]]
    vector = " ".join(info["vector"]) or "no vector extensions known"
    if missing:
        vector += f" ({', '.join(missing)})"
    cores = f"{info['cores']} logical CPUs"
    if info["usable_cores"] != info["cores"]:
        cores += f" ({info['usable_cores']} usable)"
    blas = [_blas_text(b) for b in info["blas"]["numpy"]] or ["no BLAS found"]
    torch = info["blas"].get("torch")
    if torch and "error" not in torch:
        version = f" {torch['library_version']}" if torch.get("library_version") else ""
        blas.append(
            f"torch {torch['version']} {torch['library']}{version}, "
            f"{torch['threads']} threads at start"
        )
    elif torch:
        blas.append(f"torch: {torch['error']}")
    return f"machine: {info['cpu']}; {vector}; {cores}; BLAS: {'; '.join(blas)}; {info['platform']}"


def header(torch: bool = False) -> dict:
    """Print the machine line (a bench script's first line) and return the dict for --json."""
    info = describe(torch=torch)
    print(line(info), flush=True)
    return info
