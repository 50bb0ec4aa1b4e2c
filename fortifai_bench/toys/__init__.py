"""Collapse beyond language models: `gaussian` (Sec. 2.3, Fig. 2, Appendix C), `gmm` (Algorithm 2,
Fig. 8) and `vae` (Sec. 4.8, Fig. 9). Each module has a config dataclass, `parse_method(spec)` and
`run(config, method, seed, out_dir=...) -> results` (contract 5's `results.json`, `kind: "toy"`);
`common` holds what they share, `cli` the `fortifai-bench toy ...` commands."""
