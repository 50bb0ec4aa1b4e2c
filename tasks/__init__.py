"""lm-eval task YAMLs (kr_*) and collapse task YAMLs (collapse/*.yaml), shipped with the package.

Point lm-eval at this folder with `--include_path "$(fortifai-bench tasks-path)"`, or rely on the
automatic registration described in README.md.
"""
