import sys

from loopmon.cli import main

sys.exit(main())
