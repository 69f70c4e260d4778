import sys

from adamtune.cli import main

sys.exit(main())
