"""The case modules share helpers (cases_slurm's Cluster, cases_slurm_crjob's
mpirun script, ...): load(NAME) gives tests/NAME.py, loaded once."""
import importlib.util
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))


def load(name):
    mod = sys.modules.get(name)
    if mod is None:
        spec = importlib.util.spec_from_file_location(name, os.path.join(_here, f"{name}.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules[name] = mod
    return mod
