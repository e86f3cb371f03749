"""Only what pyproject.toml cannot say: a built wheel carries the suites (``benchmarks/*.yaml``)
and the papers' reported numbers (``benchmarks/reported/*.yaml``) inside the package, as
``dfbench/_shipped/benchmarks``, so an installed dfbench runs ``dfbench bench smoke`` without a
checkout (dfbench.api.locations). An editable install reads them from the checkout itself."""

from pathlib import Path
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildWithSuites(build_py):
    def run(self):
        super().run()
        target = Path(self.build_lib) / "dfbench" / "_shipped" / "benchmarks"
        for source in sorted((HERE / "benchmarks").rglob("*.yaml")):
            dest = target / source.relative_to(HERE / "benchmarks")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest)


setup(cmdclass={"build_py": BuildWithSuites})
