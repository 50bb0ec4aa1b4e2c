"""Everything about the package is in setup.cfg; this file only adds one file to the wheel.

`fortifai_bench-lm_eval.pth` goes to the root of the wheel, hence into site-packages, so that
`lm_eval --tasks kr_facts ...` finds our tasks with no `--include_path` after `pip install .` and
after `pip install -e .` alike (lm-eval 0.4.x has no plugin hook for tasks; see
fortifai_bench/_lm_eval_hook.py for what the line does and when it steps aside). setup.cfg cannot
add a file outside a package to a wheel, and `data_files` would land in the environment's prefix,
not in site-packages.

Regular wheel: `build_py` writes the file into `build_lib`, the wheel's root. Editable wheel
(PEP 660): setuptools runs `build_py` with `editable_mode` set and ignores `build_lib` (the modules
stay in the checkout), but copies everything in the unpacked wheel folder, which is the `install`
command's `install_lib` (setuptools' editable_wheel._configure_build), so the file goes there.
The line imports `fortifai_bench._lm_eval_hook`, which the editable finder resolves: its own
`__editable__.*.pth` sorts, and so runs, before ours.
"""

import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH_NAME = "fortifai_bench-lm_eval.pth"
PTH_LINE = "import fortifai_bench._lm_eval_hook as _fb_hook; _fb_hook.install()\n"


class BuildPyWithPth(build_py):
    def _pth_target(self) -> str:
        if getattr(self, "editable_mode", False):
            return os.path.join(self.get_finalized_command("install").install_lib, PTH_NAME)
        return os.path.join(self.build_lib, PTH_NAME)

    def run(self):
        super().run()
        target = self._pth_target()
        self.mkpath(os.path.dirname(target))
        with open(target, "w", encoding="utf-8") as f:
            f.write(PTH_LINE)

    def get_outputs(self, include_bytecode=True):
        outputs = super().get_outputs(include_bytecode)
        if getattr(self, "editable_mode", False):  # written into the wheel directly, not a build output
            return outputs
        return outputs + [os.path.join(self.build_lib, PTH_NAME)]


setup(cmdclass={"build_py": BuildPyWithPth})
