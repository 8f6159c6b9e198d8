import sys

from hpe.cli import main

sys.exit(main())
