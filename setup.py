"""Everything about the package is in setup.cfg; this file only adds one file to the wheel.

`fortifai_bench-lm_eval.pth` goes to the root of the wheel, hence into site-packages, so that
`lm_eval --tasks kr_facts ...` finds our tasks with no `--include_path` after a plain `pip install .`
(lm-eval 0.4.x has no plugin hook for tasks; see fortifai_bench/_lm_eval_hook.py for what the line
does and when it steps aside). setup.cfg cannot add a file outside a package to a wheel, and
`data_files` would land in the environment's prefix, not in site-packages.
"""

import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH_NAME = "fortifai_bench-lm_eval.pth"
PTH_LINE = "import fortifai_bench._lm_eval_hook as _fb_hook; _fb_hook.install()\n"


class BuildPyWithPth(build_py):
    def run(self):
        super().run()
        target = os.path.join(self.build_lib, PTH_NAME)
        self.mkpath(self.build_lib)
        with open(target, "w", encoding="utf-8") as f:
            f.write(PTH_LINE)

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, PTH_NAME)]


setup(cmdclass={"build_py": BuildPyWithPth})
