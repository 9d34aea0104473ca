"""Build hook for the optional C extensions; everything else is in pyproject.toml.

``arena._loops`` holds the loops of arena.ratings that numpy cannot vectorise (online Elo,
TrueSkill, the bootstrap's table Poisson draws); ``arena._scan`` the JSON-lines vote scanner of
arena.io. Both are optional: where no C compiler is found the build goes on without them and the
arena uses its Python and numpy code, which gives the same results more slowly.
"""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension(f"arena.{name}", [f"arena/{name}.c"], optional=True, extra_compile_args=["-O2"])
    for name in ("_loops", "_scan")
])
