import sys

from fortifai_bench.cli import main

sys.exit(main())
