"""`torchrun --nproc_per_node N -m fortifai_bench.collapse ARGS` = `fortifai-bench collapse ARGS` in N processes.

Every process runs the same command (see `collapse.run`); errors the processes agree on are printed once,
by rank 0.
"""

import sys
import time

from fortifai_bench import threads
from fortifai_bench.cli import apply_threads, build_parser
from fortifai_bench.distributed import is_main
from fortifai_bench.errors import FortifaiError


def main(argv: list[str] | None = None) -> int:
    threads.start()  # the thread policy, as `fortifai-bench` applies it (torchrun's N > 1 sets OMP_NUM_THREADS)
    argv = sys.argv[1:] if argv is None else argv
    sys.argv = ["fortifai-bench", "collapse", *argv]  # what the run records as its command
    args = build_parser().parse_args(["collapse", *argv])
    try:
        apply_threads(args)
        return int(args.func(args) or 0)
    except FortifaiError as exc:
        if is_main():
            print(f"fortifai-bench: error: {exc}", file=sys.stderr)
        else:  # rank 0 has the same error to print; torchrun stops everyone at the first exit, so give it time
            time.sleep(2)
        return 2


if __name__ == "__main__":
    sys.exit(main())
