"""`torchrun --nproc_per_node 2 -m fortifai_bench.train --text-file ...` (= `fortifai-bench train ...`)."""

import sys

from fortifai_bench.cli.train import main

sys.exit(main())
