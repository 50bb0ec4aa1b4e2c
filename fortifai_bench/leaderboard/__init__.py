"""Leaderboards: publish collapse runs as entries, show them ranked, render a static web page.

    fortifai-bench publish RUN_DIR... [--to leaderboards/<task>.json] [--replace]
    fortifai-bench leaderboard show FILE [--markdown]
    fortifai-bench leaderboard render FILE --html OUT
    fortifai-bench leaderboard suite FILE... [--markdown] [--html OUT]   # loss x regime, one board per regime

A board is one JSON file per collapse task (`leaderboards/<task>.json`). Each entry merges the runs (one
`results.json` per seed, contract 5) of one (task, loss spec and arguments, model, seed set). The board records
the *protocol* (the runs' resolved config minus what may differ between entries: loss, seed, output folder) and
refuses runs made under another protocol or task version, so every entry is comparable with every other.
Loading a board parses JSON and checks it against `leaderboards/schema.json`; nothing in it is ever executed.
Publishing holds a lock on the board for its read-modify-write, so concurrent publishers lose nothing.

The modules: `board` (format, schema, loading, self-consistency, building an entry), `ranking` (the order,
the claims against CE and the group tied with the best), `publish` (adding runs to a board), `render` (terminal, Markdown, HTML), `suite`
(several boards side by side, losses x regimes); the commands above are `fortifai_bench.cli.leaderboard`
(argument parsing only).
"""

from fortifai_bench.leaderboard.board import (BOARD_FORMAT, build_entry, canonical, check_board_consistency,
                                              leaderboards_dir, load_board, protocol_hash, stat_bounds,
                                              validate_board)
from fortifai_bench.leaderboard.publish import PublishReport, publish
from fortifai_bench.leaderboard.ranking import (BASELINE_SPECS, TIE_ALPHA, Ranked, board_test, claim_text,
                                                rank_entries, ranking, verdict)

__all__ = ["BOARD_FORMAT", "BASELINE_SPECS", "TIE_ALPHA", "PublishReport", "Ranked", "board_test", "build_entry", "canonical",
           "check_board_consistency", "claim_text", "leaderboards_dir", "load_board", "protocol_hash", "publish", "rank_entries",
           "ranking", "stat_bounds", "validate_board", "verdict"]
